"""SIGTERM as an interrupt that cannot be lost.

`kill`, scancel and a time limit outside submitit send SIGTERM. The handler raises `Terminated` in
whatever Python code runs at that moment; when that is a garbage-collection callback (jax registers
one), Python prints the exception and drops it, and training went on to the end (seen in
tests/test_faults.py). So the handler also sets a flag that the training loop checks after every
chunk (`raise_if_terminated`): the process stops at the latest one chunk later.
"""
from __future__ import annotations

import signal

_requested = False


class Terminated(BaseException):
    """SIGTERM (`kill`, SLURM's scancel and time limit outside submitit) seen as an interrupt."""


def _on_sigterm(signum: int, frame: object) -> None:
    global _requested
    _requested = True
    raise Terminated()


def install() -> None:
    """Route SIGTERM to `Terminated` (the CLI's main thread only)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def raise_if_terminated() -> None:
    """Raise `Terminated` when a SIGTERM arrived, even if its first raise was swallowed."""
    if _requested:
        raise Terminated()
