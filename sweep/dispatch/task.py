"""What one array task does on its node: train its cohorts from the manifest, one after another.

An exception in one cohort becomes error records (the runner writes them) and the task moves on.
Preemption or a coming time limit (SLURM sends USR2 `signal_delay_s` before it) is handled by
submitit's Checkpointable protocol: submitit calls `checkpoint()`, requeues the job and exits.
Left alone it would do so in the middle of a chunk, so we hold the signal back until the current
chunk ends, save the cohort's state there, then hand over (PreemptionGuard). The requeued task
calls us again with the same arguments; finished cohorts are skipped (their records exist) and
the interrupted one resumes from its checkpoint.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

import submitit

from sweep import store
from sweep.checkpoint import cohort_checkpoint_dir
from sweep.dispatch import manifest as mf
from sweep.grid import Cohort, RunSpec

log = logging.getLogger(__name__)


def checkpoint_dir(sweep: Path, cohort: Cohort) -> Path:
    """One directory per (cohort, exact member list)."""
    return cohort_checkpoint_dir(sweep, cohort.key, [r.run_id for r in cohort.runs])


def runs_to_do(cohort: Cohort, sweep: Path, manifest: dict) -> list[RunSpec]:
    """Runs without a terminal record. With force=true, a record counts only when this
    submission wrote it (so a requeued forced task does not redo what it already finished)."""
    if not manifest.get("force"):
        return [r for r in cohort.runs if not store.is_finished(sweep, r.run_id)]
    since = float(manifest["created_unix"])
    todo = []
    for r in cohort.runs:
        path = store.run_dir(sweep, r.run_id) / store.RECORD
        fresh = path.exists() and path.stat().st_mtime >= since and store.is_finished(sweep, r.run_id)
        if not fresh:
            todo.append(r)
    return todo


class PreemptionGuard:
    """Defers submitit's USR2 handler (checkpoint, requeue, exit) to the end of the current chunk.

    Inactive outside submitit jobs. If no chunk ends within `grace_s` after the signal (a slow
    chunk, or the final evaluation), it hands over anyway; the last periodic checkpoint is used."""

    def __init__(self, grace_s: float):
        self.grace_s = max(5, int(grace_s))
        self.requested = False
        self.checkpointer: Any = None
        self._previous: Optional[Callable] = None
        self._signum: Optional[int] = None

    def install(self) -> "PreemptionGuard":
        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
        signum = getattr(signal, f"SIG{name}", None)
        previous = signal.getsignal(signum) if signum else None
        if callable(previous) and "submitit" in getattr(previous, "__module__", ""):
            self._previous, self._signum = previous, signum
            signal.signal(signum, self._on_signal)
        return self

    @property
    def active(self) -> bool:
        return self._previous is not None

    def _on_signal(self, signum: int, frame: Any) -> None:
        print(f"sweep task: got signal {signum}; checkpointing at the end of the current chunk", flush=True)
        self.requested = True
        if self.checkpointer is not None:
            self.checkpointer.request()
        signal.signal(signal.SIGALRM, lambda *_: self.hand_over())
        signal.alarm(self.grace_s)

    def hand_over(self) -> None:
        """Let submitit checkpoint (our `checkpoint()`), requeue and exit. Does not return."""
        signal.alarm(0)
        print("sweep task: state saved; handing over to submitit for requeue", flush=True)
        assert self._previous is not None
        self._previous(self._signum, None)

    def between_cohorts(self) -> None:
        if self.requested and self.active:
            self.hand_over()


class SweepTask(submitit.helpers.Checkpointable):
    """The callable submitted as a job array: `SweepTask(manifest_path)(task_index)`.

    Stateless apart from the manifest path, so the default `checkpoint()` (resubmit self with the
    same index) is all a requeue needs: progress lives in records and cohort checkpoints."""

    def __init__(self, manifest_path: str | os.PathLike):
        self.manifest_path = str(manifest_path)

    def __call__(self, index: int) -> dict[str, int]:
        from sweep.claims import Claims

        manifest = mf.read(self.manifest_path)
        sweep = Path(manifest["sweep_dir"])
        cluster = manifest["cluster"]
        guard = PreemptionGuard(float(cluster.get("signal_delay_s", 120)) - 30).install()
        counts: Counter = Counter()
        cohorts = mf.task_cohorts(manifest, index)
        with Claims(sweep) as claims:
            for n, cohort in enumerate(cohorts):
                guard.between_cohorts()
                self._cohort(index, n, len(cohorts), cohort, sweep, manifest, cluster, guard, claims, counts)
        guard.between_cohorts()
        if claims.busy:
            print(f"sweep task {index}: {len(claims.busy)} runs left to other processes that hold them: "
                  f"{'; '.join(sorted(set(claims.busy.values()))[:3])}", flush=True)
        print(f"sweep task {index}: done {dict(counts)}", flush=True)
        return dict(counts)

    def _cohort(self, index: int, n: int, n_cohorts: int, cohort: Cohort, sweep: Path, manifest: dict,
                cluster: dict, guard: PreemptionGuard, claims: Any, counts: Counter) -> None:
        """Claim what is left of one cohort and train it (checkpointed, preemption-safe)."""
        from sweep.checkpoint import Checkpointer
        from sweep.execute import execute_cohort

        todo = [r for r in runs_to_do(cohort, sweep, manifest) if claims.claim(r.run_id)]
        skipped = len(cohort.runs) - len(todo)
        if skipped:
            counts["skipped"] += skipped
        if not todo:
            return
        part = Cohort(cohort.key, todo)
        def resumed(step: int, index: int = index) -> None:  # when it happens, not after the cohort's records
            print(f"sweep task {index}: cohort resumed from its checkpoint at step {step}", flush=True)

        ckpt = Checkpointer(checkpoint_dir(sweep, part), every_s=float(cluster.get("checkpoint_every_s", 600)),
                            after_requested_save=guard.hand_over if guard.active else None, on_restore=resumed)
        guard.checkpointer = ckpt
        if guard.requested:
            ckpt.request()
        print(f"sweep task {index}: cohort {n + 1}/{n_cohorts} ({len(todo)} runs)", flush=True)
        try:
            result = execute_cohort(part, sweep, force=bool(manifest.get("force")), claims=claims,
                                    checkpointer=ckpt, unattended=True)
        finally:
            claims.release([r.run_id for r in todo])
        if result.message:  # error records are written; next cohort
            counts["error"] += result.errors
            print(f"sweep task {index}: {result.message}", file=sys.stderr, flush=True)
            return
        counts.update(result.outcomes)
