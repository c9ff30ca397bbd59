"""SIGTERM as an interrupt that cannot be lost, and cannot cut bookkeeping in half.

`kill`, scancel and a time limit outside submitit send SIGTERM. The handler raises `Terminated` in
whatever Python code runs at that moment, with two exceptions:
- inside a garbage-collection callback (jax registers one) Python drops the exception, so the handler
  also sets a flag that the training loop checks after every chunk (`raise_if_terminated`); such a
  dropped `Terminated` is not printed (sys.unraisablehook), since it is raised again;
- inside a `deferred()` block (taking or releasing a claim, writing a record) it only sets the flag,
  and the block raises when it ends: an interrupt between "claim file created" and "claim held" left
  a claim behind that the next run had to wait out (seen in tests/test_faults.py).
"""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Any, Iterator

_requested = False
_deferring = 0


class Terminated(BaseException):
    """SIGTERM (`kill`, SLURM's scancel and time limit outside submitit) seen as an interrupt."""


def _on_sigterm(signum: int, frame: object) -> None:
    global _requested
    _requested = True
    if not _deferring:
        raise Terminated()


def _quiet_unraisable(default: Any):
    def hook(args: Any) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, Terminated):
            return  # dropped where Python cannot raise; the flag raises it again
        default(args)

    hook.sweep_quiet = True  # type: ignore[attr-defined]
    return hook


def install() -> None:
    """Route SIGTERM to `Terminated` (the CLI's main thread only)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if not getattr(sys.unraisablehook, "sweep_quiet", False):
        sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)


@contextmanager
def deferred() -> Iterator[None]:
    """A SIGTERM inside the block waits for its end (then `Terminated` is raised there)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring:
        raise_if_terminated()


def raise_if_terminated() -> None:
    """Raise `Terminated` when a SIGTERM arrived, even if its first raise was swallowed."""
    if _requested:
        raise Terminated()
