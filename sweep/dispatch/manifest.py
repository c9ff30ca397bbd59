"""The manifest of one submission: which array task trains which cohorts, with every run's fully
resolved config, so a task on a node never recomposes configs (the code or conf/ may have changed
since). One manifest per submission, under <sweep>/submissions/<id>/manifest.json; written
atomically, first before the jobs are queued (a task may start at once) and again with job ids.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Any, Optional, Sequence



from sweep import store
from sweep.config import from_dict
from sweep.grid import Cohort, RunSpec

VERSION = 1
SUBMISSIONS = "submissions"
MANIFEST = "manifest.json"


def group_tasks(cohorts: Sequence[Cohort], per_task: int, max_tasks: Optional[int] = None) -> list[list[Cohort]]:
    """Consecutive cohorts, `per_task` to a task; with `max_tasks`, fewer, larger tasks instead."""
    per_task = max(1, int(per_task))
    if max_tasks and max_tasks > 0:
        per_task = max(per_task, -(-len(cohorts) // int(max_tasks)))
    return [list(cohorts[i:i + per_task]) for i in range(0, len(cohorts), per_task)]


def new_submission_dir(sweep: Path) -> Path:
    """<sweep>/submissions/<UTC time>-<random>: sortable by time, unique across hosts."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(sweep) / SUBMISSIONS / f"{stamp}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def _run_entry(spec: RunSpec) -> dict:
    return {"run_id": spec.run_id, "grid": spec.grid, "config": spec.config_dict()}


def build(sweep: Path, tasks: Sequence[Sequence[Cohort]], *, overrides: Sequence[str], cluster: dict,
          force: bool, submission: str) -> dict:
    return {
        "version": VERSION,
        "submission": submission,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "created_unix": dt.datetime.now(dt.timezone.utc).timestamp(),
        "sweep_dir": str(Path(sweep).resolve()),
        "sweep_name": Path(sweep).name,
        "overrides": list(overrides),
        "cluster": cluster,
        "force": bool(force),
        "job_id": None,
        "tasks": [
            {"index": i, "job_id": None,
             "cohorts": [{"key": c.key, "runs": [_run_entry(r) for r in c.runs]} for c in cohorts]}
            for i, cohorts in enumerate(tasks)
        ],
    }


def write(path: Path, manifest: dict) -> None:
    store.atomic_write_json(Path(path), manifest)


def read(path: str | os.PathLike) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: manifest version {data.get('version')}, this sweep reads {VERSION}")
    return data


def task_cohorts(manifest: dict, index: int) -> list[Cohort]:
    """The cohorts of array task `index`, with configs rebuilt from the stored dicts."""
    task = manifest["tasks"][index]
    return [Cohort(c["key"], [RunSpec(r["run_id"], from_dict(r["config"]), r["grid"]) for r in c["runs"]])
            for c in task["cohorts"]]


def run_ids(task: dict) -> list[str]:
    return [r["run_id"] for c in task["cohorts"] for r in c["runs"]]


def all_manifests(sweep: Path) -> list[Path]:
    """Every submission's manifest, oldest first."""
    root = Path(sweep) / SUBMISSIONS
    return sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def latest(sweep: Path) -> Optional[Path]:
    found = all_manifests(sweep)
    return found[-1] if found else None


def runs_of(manifest: dict) -> dict[str, dict[str, Any]]:
    """run_id -> {task index, job id, grid, config} for every run of a submission."""
    out = {}
    for task in manifest["tasks"]:
        for c in task["cohorts"]:
            for r in c["runs"]:
                out[r["run_id"]] = {"task": task["index"], "job_id": task.get("job_id"),
                                    "grid": r["grid"], "config": r["config"]}
    return out
