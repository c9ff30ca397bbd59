"""Train one cohort and say how it went: the one executor path under every command.

`sweep run` and `sweep figures` call it for each cohort in this process; a `sweep submit` array
task (SweepTask: on a SLURM node, in submitit's local executor, or in this process for
`cluster=local`) calls it for each cohort of its manifest. The differences are arguments, not
copies: a checkpointer (array tasks can be preempted), a progress callback (a terminal), and what
a user error does (a terminal stops on it with one line; an unattended task records it so `sweep
status` shows it). Growing lr lines until divergence is the one loop grid.until_divergence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from sweep.errors import UserError
from sweep.grid import Cohort


@dataclass
class CohortOutcome:
    records: list[dict] = field(default_factory=list)  # records written by this call
    errors: int = 0  # runs left with an error record (or none, when even that could not be written)
    message: Optional[str] = None  # one line when the cohort failed

    @property
    def outcomes(self) -> list[str]:
        return [r["outcome"] for r in self.records]


def execute_cohort(cohort: Cohort, sweep: Path, *, force: bool, claims: Any,
                   progress: Optional[Callable[[int, int], None]] = None, checkpointer: Any = None,
                   unattended: bool = False) -> CohortOutcome:
    """Train the runs of `cohort` this process can claim and write their records.

    A failure inside training becomes error records (a re-run or resubmit retries them) and a one-line
    `message`; it never stops the caller's other cohorts. A user error (config, data set) is raised
    for the terminal to print, unless `unattended` (array tasks): then it is recorded for every run,
    so `sweep status` shows it."""
    from sweep.runner import run_cohort, write_error_records

    try:
        return CohortOutcome(run_cohort(cohort, sweep, force=force, progress=progress,
                                        checkpointer=checkpointer, claims=claims))
    except Exception as exc:  # noqa: BLE001 - error records are written; the caller goes on
        if isinstance(exc, UserError) and not unattended:
            raise
        written = getattr(exc, "error_records_written", None)
        if written is None:  # raised before training (a data set defect): nothing recorded yet
            written = write_error_records(cohort.runs, sweep, exc)
        return CohortOutcome(errors=len(cohort.runs), message=_failed(cohort, exc, written))


def _failed(cohort: Cohort, exc: BaseException, written: int) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    saved = (f"{written} error records written; a re-run retries them" if written
             else "no error record could be written; a re-run retries these runs")
    return f"cohort {cohort.key} failed: {exc.__class__.__name__}: {first} ({saved})"
