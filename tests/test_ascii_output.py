"""Output falls back to ASCII when the terminal cannot encode it (issue 10, item 9): μP prints as muP."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from record_factory import realistic_sweep

from sweep.cli import ensure_encodable_output


def test_status_under_an_ascii_terminal(tmp_path: Path) -> None:
    sweep = tmp_path / "mu"
    realistic_sweep(sweep, lr_exponents=range(0, 3), warmup_exponents=(0, 4), steps=20)
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    out = subprocess.run([sys.executable, "-m", "sweep.cli", "status", str(sweep)], capture_output=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    text = out.stdout.decode("ascii")  # every byte is ASCII
    assert "[muP]" in text and "[SP]" in text and "Traceback" not in out.stderr.decode("ascii")
    utf8 = subprocess.run([sys.executable, "-m", "sweep.cli", "status", str(sweep)], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=120)
    assert "[μP]" in utf8.stdout.decode("utf-8")  # a terminal that can print it gets the real letter


def test_transliteration(monkeypatch) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    ensure_encodable_output()
    print("μP λ₀=2.5 η×β — ✓", file=stream)
    stream.flush()
    assert raw.getvalue().decode("ascii") == "muP lambda0=2.5 etaxbeta - ?\n"
    assert stream.errors == "sweep-ascii"
