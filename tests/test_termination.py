"""SIGTERM is never lost: when its Terminated is raised inside a garbage-collection callback (where
Python prints and drops exceptions; jax registers one), the training loop's per-chunk check raises
it again."""
from __future__ import annotations

import subprocess
import sys

CODE = r"""
import gc, os, signal, time
from sweep import termination

termination.install()
fired = []

def callback(phase, info):
    if phase == "start" and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs here, inside the callback: its exception is dropped
        for _ in range(1000):
            pass

gc.callbacks.append(callback)
gc.collect()
gc.callbacks.remove(callback)
print("survived the swallowed raise", flush=True)
try:
    termination.raise_if_terminated()
except termination.Terminated:
    print("raised again", flush=True)
"""


def test_a_swallowed_sigterm_is_raised_again() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["survived the swallowed raise", "raised again"], (out.stdout, out.stderr)
    assert "Terminated" in out.stderr  # Python's "Exception ignored in: ... gc callback" note


def test_no_sigterm_no_raise() -> None:
    from sweep import termination

    termination.raise_if_terminated()  # nothing happened: returns
