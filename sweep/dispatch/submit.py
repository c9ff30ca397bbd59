"""grid -> pending runs -> cohorts -> tasks -> manifest -> ONE job array; returns once queued.

Resubmitting the same grid finishes what is missing: runs with a terminal record (converged,
diverged, failed) are never submitted again, error records are retried, and runs that a live job
of an earlier submission is still working on are left to it.
"""
from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

from sweep import store
from sweep.dispatch import backends, jobs
from sweep.dispatch import manifest as mf
from sweep.dispatch.task import SweepTask
from sweep.grid import RunSpec, expand, make_cohorts, until_divergence


@dataclass
class Submission:
    sweep: Path
    executor: str
    total_runs: int
    finished: int = 0
    active_elsewhere: int = 0
    submitted: int = 0
    tasks: int = 0
    cohorts: int = 0
    job_id: Optional[str] = None
    manifest: Optional[Path] = None
    task_results: list = field(default_factory=list)  # executor=local only


def active_runs(sweep: Path) -> set[str]:
    """Run ids that live jobs of earlier submissions will still train (so not to submit twice)."""
    busy: set[str] = set()
    for path in mf.all_manifests(sweep):
        try:
            data = mf.read(path)
        except (OSError, ValueError):
            continue
        ids = [t.get("job_id") for t in data["tasks"] if t.get("job_id")]
        try:
            states = (backends.get(data["cluster"].get("executor", "slurm")).job_states(ids) or {}) if ids else {}
        except Exception:  # noqa: BLE001 - unknown states: assume nothing is running
            states = {}
        for task in data["tasks"]:
            if states.get(str(task.get("job_id")), "") in jobs.ACTIVE | {"RUNNING"}:
                busy.update(mf.run_ids(task))
    return busy


def plan(runs: Sequence[RunSpec], sweep: Path, force: bool, executor: Any) -> tuple[list[RunSpec], int, int]:
    """(runs to submit, already finished, busy in earlier jobs). `executor`: a backend or its name."""
    backend = backends.get(executor)
    finished = 0 if force else sum(store.is_finished(sweep, r.run_id) for r in runs)
    busy = active_runs(sweep) if not backend.in_process else set()
    todo = [r for r in runs if (force or not store.is_finished(sweep, r.run_id)) and r.run_id not in busy]
    return todo, finished, len([r for r in runs if r.run_id in busy])


def with_extensions(runs: Sequence[RunSpec], sweep: Path) -> list[RunSpec]:
    """`extend.until_divergence=true`: add the next lr of every line whose runs all have records.
    A job array cannot wait for outcomes, so each `sweep submit` grows the lines by what the
    records so far allow; resubmit after the array finished to go on."""
    return until_divergence(runs, sweep, train=lambda batch: None)


def submit(overrides: Sequence[str], dry_run: bool = False) -> Submission:
    runs = expand(overrides)  # GridError on zero runs or more than cluster.max_runs
    cfg0 = runs[0].cfg
    cluster = cfg0.cluster
    backend = backends.get(cluster)  # ConfigError for an unknown cluster.executor
    sweep = store.sweep_dir(cfg0.results_dir, cfg0.sweep_name).resolve()
    force = bool(cfg0.force)
    runs = with_extensions(runs, sweep)
    if not dry_run:
        store.check_writable(sweep)
    if not dry_run:
        backend.check_reachable()
    todo, finished, busy = plan(runs, sweep, force, backend)
    result = Submission(sweep, backend.name, len(runs), finished=finished, active_elsewhere=busy)
    if not todo:
        return result
    cohorts = make_cohorts(todo)
    tasks = mf.group_tasks(cohorts, int(cluster.cohorts_per_task), max_tasks=backend.max_tasks(cluster))
    result.submitted, result.cohorts, result.tasks = len(todo), len(cohorts), len(tasks)
    if dry_run:
        return result

    sub_dir = mf.new_submission_dir(sweep)
    path = sub_dir / mf.MANIFEST
    cluster_dict = OmegaConf.to_container(cluster, resolve=True)
    manifest = mf.build(sweep, tasks, overrides=overrides, cluster=cluster_dict, force=force, submission=sub_dir.name)
    mf.write(path, manifest)
    result.manifest = path
    task_fn = SweepTask(path)
    executor = backend.executor(cluster, sub_dir / "logs", job_name=f"sweep-{cfg0.sweep_name}")
    if executor is None:  # cluster=local: the same tasks, here and now
        result.task_results = [task_fn(i) for i in range(len(tasks))]
        return result
    noise = io.StringIO()  # submitit echoes sbatch's stderr on failure; we say it in one line
    try:
        with contextlib.redirect_stderr(noise):
            submitted = executor.map_array(task_fn, list(range(len(tasks))))
    except Exception as exc:  # noqa: BLE001 - sbatch's refusal, condensed to one line
        shutil.rmtree(sub_dir, ignore_errors=True)
        raise backend.explain_refusal(exc, cluster) from None
    for task, job in zip(manifest["tasks"], submitted):
        task["job_id"] = str(job.job_id)
    manifest["job_id"] = str(submitted[0].job_id).split("_")[0]
    mf.write(path, manifest)
    result.job_id = manifest["job_id"]
    return result
