"""Resumable snapshots of one cohort's training: the jax carry (orbax) plus the probe rows so far.

A SLURM task can be preempted or hit its time limit in the middle of a cohort; without this the
requeued task would start that cohort again from step 0. `CohortTrainer.run(on_chunk=...)` hands
us the state after every chunk; we write it only every `every_s` seconds (or `every_chunks`
chunks), because a checkpoint of K models is not free, and at once when preemption was signalled
(`request()`). orbax writes each step to a temporary directory and renames it on success, so a
kill during a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 2  # 2: the carry holds each member's catapult-warmup state (sweep/catapult.py)


def rows_to_arrays(rows: list) -> dict[str, np.ndarray]:
    """Engine rows [(step, {column: (K,) array})] -> {"step": (R,), column: (R, K)}, dtypes kept."""
    out = {"step": np.asarray([step for step, _ in rows], np.int64)}
    for key in rows[0][1]:
        out[key] = np.stack([np.asarray(vals[key]) for _, vals in rows])
    return out


def arrays_to_rows(arrays: dict[str, Any]) -> list:
    """Inverse of `rows_to_arrays`."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    steps = arrays.pop("step")
    return [(int(s), {k: v[r] for k, v in arrays.items()}) for r, s in enumerate(steps)]


def cohort_checkpoint_dir(sweep: str | Path, cohort_key: str, run_ids: list[str]) -> Path:
    """One directory per (cohort, exact member list): a requeued task finds the state of the
    members it trains again, and never another member list's."""
    ids = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:12]
    return Path(sweep) / "checkpoints" / f"{cohort_key}-{ids}"


class Checkpointer:
    """Save/restore hooks for `runner.run_cohort(checkpointer=...)`, one directory per cohort."""

    def __init__(self, directory: str | Path, every_s: float = 300.0, every_chunks: int = 0,
                 after_requested_save: Optional[Callable[[], None]] = None,
                 on_restore: Optional[Callable[[int], None]] = None):
        self.directory = Path(directory)
        self.on_restore = on_restore  # called with the step as soon as a restore succeeds (task logs)
        self.every_s = float(every_s)
        self.every_chunks = int(every_chunks)
        self.after_requested_save = after_requested_save
        self.fingerprint: Optional[str] = None
        self.requested = False
        self.saves = 0
        self._last_save = time.monotonic()
        self._chunks = 0

    def retarget(self, directory: str | Path) -> None:
        """Save to and restore from another directory from now on (the next part of a cohort that
        trains in parts); a pending preemption request is kept."""
        self.directory = Path(directory)
        self.fingerprint = None
        self._last_save, self._chunks = time.monotonic(), 0

    # ---------------------------------------------------------------- orbax plumbing
    def _manager(self):
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False, create=True)
        return ocp.CheckpointManager(self.directory.resolve(), options=options)

    def exists(self) -> bool:
        return self.directory.is_dir() and any(p.name.isdigit() for p in self.directory.iterdir())

    # ---------------------------------------------------------------- API used by the runner
    def restore(self, fingerprint: str, template: Callable[[], Any]) -> Optional[dict]:
        """The saved state as `CohortTrainer.run` kwargs (carry, start, rows), or None to start fresh.

        `fingerprint` (`CohortTrainer.layout_fingerprint()`) is what a checkpoint must match to be
        resumed; `template()` builds a carry of the right tree, shapes and dtypes to restore into
        (`CohortTrainer.initial_state`), called only when a checkpoint exists."""
        import orbax.checkpoint as ocp

        self.fingerprint = fingerprint
        self._last_save, self._chunks = time.monotonic(), 0
        if not self.exists():
            return None
        template = template()
        mgr = self._manager()
        try:
            step = mgr.latest_step()
            meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            if meta.get("format") != FORMAT or meta.get("fingerprint") != self.fingerprint:
                log.warning("checkpoint %s belongs to another cohort layout; starting fresh", self.directory)
                self.clear()
                return None
            state = mgr.restore(step, args=ocp.args.Composite(
                carry=ocp.args.StandardRestore(template), rows=ocp.args.StandardRestore()))
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint only costs recomputation
            log.warning("cannot restore checkpoint %s (%s); starting fresh", self.directory, exc)
            self.clear()
            return None
        finally:
            mgr.close()
        start = int(meta["start"])
        log.info("resuming %s at step %d", self.directory, start)
        if self.on_restore is not None:
            self.on_restore(start)
        return {"carry": state.carry, "start": start, "rows": arrays_to_rows(state.rows)}

    def save(self, carry: Any, next_start: int, rows: list) -> bool:
        """Called after every chunk; writes when due or requested. Returns whether it wrote.

        Synchronous on purpose: the engine donates `carry` to the next chunk, so it must be read
        before this returns."""
        self._chunks += 1
        due = (time.monotonic() - self._last_save >= self.every_s
               or (self.every_chunks > 0 and self._chunks >= self.every_chunks))
        if not (due or self.requested) or not rows:
            return False
        self.write(carry, next_start, rows)
        if self.requested and self.after_requested_save is not None:
            self.after_requested_save()
        return True

    def write(self, carry: Any, next_start: int, rows: list) -> None:
        import orbax.checkpoint as ocp

        meta = {"format": FORMAT, "fingerprint": self.fingerprint, "start": int(next_start),
                "rows": len(rows), "time": time.time()}
        mgr = self._manager()
        try:
            mgr.save(int(next_start), args=ocp.args.Composite(
                carry=ocp.args.StandardSave(carry), rows=ocp.args.StandardSave(rows_to_arrays(rows)),
                meta=ocp.args.JsonSave(meta)), force=True)
            mgr.wait_until_finished()
        finally:
            mgr.close()
        self.saves += 1
        self._last_save, self._chunks = time.monotonic(), 0

    def request(self) -> None:
        """Save at the end of the current chunk (preemption or timeout was signalled)."""
        self.requested = True

    def clear(self) -> None:
        """The cohort finished (records written): its checkpoint is no longer needed."""
        shutil.rmtree(self.directory, ignore_errors=True)
