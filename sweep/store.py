"""Run records on disk: atomic, idempotent, resumable.

results/<sweep>/runs/<run_id>/record.json   fully resolved config, outcome, summary, provenance
results/<sweep>/runs/<run_id>/trace.parquet one row per probe step
The trace is written first and the record last, each through a temp file + os.replace, so a
record.json that exists always describes a complete run; an interrupted write leaves at most a
stray temp file, never a half record.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

TERMINAL_OUTCOMES = ("converged", "diverged", "failed")
_UMASK = os.umask(0)
os.umask(_UMASK)
RECORD = "record.json"
TRACE = "trace.parquet"


def sweep_dir(results_dir: str | Path, sweep_name: str) -> Path:
    return Path(results_dir) / sweep_name


def run_dir(sweep: Path, run_id: str) -> Path:
    return Path(sweep) / "runs" / run_id


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Run `write(tmp_path)` on a temp file beside `path`, then rename it into place: readers see
    the old file or the new one, never half of one. The file gets the usual umask permissions
    (mkstemp's 0600 would hide results from collaborators on a shared cluster)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_synced(tmp: str, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: _write_synced(tmp, data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode())


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def read_record(sweep: Path, run_id: str) -> Optional[dict]:
    path = run_dir(sweep, run_id) / RECORD
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_finished(sweep: Path, run_id: str) -> bool:
    """Finished = a record with a terminal outcome. Error records are retried."""
    rec = read_record(sweep, run_id)
    return bool(rec) and rec.get("outcome") in TERMINAL_OUTCOMES


def write_run(sweep: Path, run_id: str, record: dict, trace: Optional[pd.DataFrame]) -> Path:
    d = run_dir(sweep, run_id)
    if trace is not None:
        atomic_write_parquet(d / TRACE, trace)
    atomic_write_json(d / RECORD, record)
    return d


def provenance() -> dict:
    """Package versions, git commit and device: enough to say what produced a number."""
    import importlib.metadata as md

    import jax

    versions = {}
    for pkg in ("sweep", "jax", "jaxlib", "flax", "optax", "numpy", "hydra-core", "pandas"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    dev = jax.devices()[0]
    return {
        "versions": versions,
        "git_commit": commit,
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "host": platform.node(),
    }
