"""SIGTERM as an interrupt that cannot be lost, and cannot cut bookkeeping in half.

`kill`, scancel and a time limit outside submitit send SIGTERM. The handler raises `Terminated` in
whatever Python code runs at that moment, with two exceptions:
- inside a garbage-collection callback (jax registers one) Python drops the exception, so the handler
  also sets a flag that the training loop checks after every chunk (`raise_if_terminated`); such a
  dropped `Terminated` is not printed (sys.unraisablehook), since it is raised again;
- a compiled XLA call (a chunk of steps, a probe, a compile) cannot be interrupted, and Python runs
  signal handlers only between bytecodes: `interruptible()` runs such a call in a worker thread while
  the main thread waits in short slices, so SIGTERM and Ctrl-C act within a fraction of a second (a
  WRN-16-1 chunk answered SIGTERM after 1092 s before); the CLI then exits with the call still
  running (`abandoned_compute()`), since nothing can stop XLA midway;
- inside a `deferred()` block (taking or releasing a claim, writing a record) it only sets the flag,
  and the block raises when it ends: an interrupt between "claim file created" and "claim held" left
  a claim behind that the next run had to wait out (seen in tests/test_faults.py).
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

_requested = False
_deferring = 0
_installed = False
_abandoned: list[threading.Event] = []  # "finished" flags of compute threads left running by an interrupt
T = TypeVar("T")


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
    global _installed
    signal.signal(signal.SIGTERM, _on_sigterm)
    _installed = True
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


def interruptible(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args), run so that SIGTERM / Ctrl-C act at once in the main thread (see the module
    docstring). Elsewhere (a worker thread, no handler installed) it is a plain call."""
    if not _installed or threading.current_thread() is not threading.main_thread():
        return fn(*args)
    box: dict = {}
    finished = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=target, name="sweep-compute", daemon=True)
    worker.start()
    try:
        while not finished.wait(0.25):  # (not Thread.join: interrupted, it marks the thread stopped)
            pass
    except BaseException:
        if not finished.is_set():
            _abandoned.append(finished)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def abandoned_compute() -> bool:
    """Whether an interrupt left a compiled call running (the process must then end with os._exit:
    jax's shutdown would wait for it)."""
    return any(not finished.is_set() for finished in _abandoned)
