"""Where a sweep stands: every run's state from its record or, without a terminal record, from
the SLURM state of the task that owns it in the newest submission that contains it. The runs of the
last local `sweep run` that have no record count too (pending): its overrides, kept in last_run.json,
expand again to the same run ids, so a sweep killed halfway shows what is left."""
from __future__ import annotations

import functools
import json
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from sweep import store
from sweep.config import ConfigError
from sweep.dispatch import backends
from sweep.dispatch import manifest as mf

STATES = ("converged", "diverged", "failed", "error", "pending", "running", "preempted", "timeout",
          "cancelled", "lost", "corrupt", "unknown")
NEEDS_RESUBMIT = ("error", "preempted", "timeout", "cancelled", "lost", "corrupt")
JOB_TO_RUN = {
    "PENDING": "pending", "REQUEUED": "pending", "REQUEUE_HOLD": "pending", "REQUEUE_FED": "pending",
    "CONFIGURING": "pending", "RESV_DEL_HOLD": "pending",
    "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running", "SIGNALING": "running",
    "STAGE_OUT": "running", "RESIZING": "running",
    "PREEMPTED": "preempted", "TIMEOUT": "timeout", "DEADLINE": "timeout", "CANCELLED": "cancelled",
    "VANISHED": "cancelled",  # cancelled while pending: never reaches accounting (jobs.slurm_states)
    # the job ended but left no record for this run: crashed, killed, out of memory...
    "COMPLETED": "lost", "FAILED": "lost", "NODE_FAIL": "lost", "OUT_OF_MEMORY": "lost", "BOOT_FAIL": "lost",
    "ENDED": "lost",
}


@dataclass
class SweepStatus:
    sweep: Path
    states: dict[str, str]  # run_id -> state
    records: dict[str, dict]
    pending_configs: dict[str, dict]  # run_id -> {"grid", "config"} of runs without a record
    latest: Optional[dict] = None  # the newest manifest
    job_error: Optional[str] = None  # why job states are unknown
    counts: Counter = field(default_factory=Counter)
    corrupt: dict[str, str] = field(default_factory=dict)  # run_id -> which file is unusable and why
    progress: list[dict] = field(default_factory=list)  # live cohorts: runs, step, total, owner, log
    failed_tasks: list[dict] = field(default_factory=list)  # array tasks that ended badly: index, job, state, log
    last_local: Optional[dict] = None  # the last `sweep run` of this sweep: its overrides
    not_started: list[str] = field(default_factory=list)  # pending runs no live process or job will train


def _records(sweep: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """(run_id -> record of finished and error runs, run_id -> why for corrupt runs). A folder
    without a record is a run in progress (or never started): neither."""
    out, corrupt = {}, {}
    runs = sweep / "runs"
    if runs.is_dir():
        for d in sorted(runs.iterdir()):
            if not d.is_dir():
                continue
            state, why = store.run_state(sweep, d.name)
            if state == "corrupt":
                corrupt[d.name] = why or "unusable"
            elif state in ("finished", "error"):
                rec = store.read_record(sweep, d.name)
                if rec is not None:
                    out[d.name] = rec
    return out, corrupt


def sweep_status(sweep: str | Path) -> SweepStatus:
    sweep = Path(sweep)
    if not (sweep / "runs").is_dir() and not (sweep / mf.SUBMISSIONS).is_dir():
        raise ConfigError(f"{sweep}: not a sweep directory (no runs/ or submissions/); pass results/<sweep_name>")
    records, corrupt = _records(sweep)
    owner: dict[str, tuple[dict, dict]] = {}  # run_id -> (manifest, run entry) of the newest submission
    manifests = []
    for path in mf.all_manifests(sweep):
        try:
            data = mf.read(path)
        except (OSError, ValueError):
            continue
        manifests.append(data)
        for rid, entry in mf.runs_of(data).items():
            owner[rid] = (data, entry)
    job_states: dict[str, str] = {}
    job_error = None
    wanted: dict[str, set] = {}
    for rid, (data, entry) in owner.items():
        if records.get(rid, {}).get("outcome") not in store.TERMINAL_OUTCOMES and entry["job_id"]:
            wanted.setdefault(data["cluster"].get("executor", "slurm"), set()).add(entry["job_id"])
    for executor, ids in wanted.items():
        try:
            job_states.update(backends.get(executor).job_states(ids) or {})
        except Exception as exc:  # noqa: BLE001 - shown, not fatal: records still count
            job_error = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    from sweep.claims import live_progress

    progress = live_progress(sweep)
    training = {rid for p in progress for rid in p["runs"]}
    last_local = _last_local(sweep, manifests)
    local = _local_grid(last_local)
    states, pending = {}, {}
    for rid in sorted(set(records) | set(owner) | set(corrupt) | training | set(local)):
        outcome = records.get(rid, {}).get("outcome")
        entry = owner.get(rid, (None, None))[1]
        job_state = job_states.get(str(entry["job_id"])) if entry and entry["job_id"] else None
        run_state = JOB_TO_RUN.get(job_state or "", None)
        if outcome in store.TERMINAL_OUTCOMES:
            states[rid] = outcome
        elif rid in training:  # a live process is training it (local run or array task)
            states[rid] = "running"
        elif rid in corrupt and run_state not in ("pending", "running"):
            states[rid] = "corrupt"
        elif run_state in ("pending", "running"):  # (re)tried right now, even if an error record exists
            states[rid] = run_state
        elif outcome == "error":
            states[rid] = "error"
        elif entry is None and rid in local:  # in the grid of the last `sweep run`, never finished
            states[rid] = "pending"
        elif entry is None:
            states[rid] = "unknown"
        elif entry["job_id"] is None:  # an in-process submission that never wrote this record
            states[rid] = "lost"
        else:
            states[rid] = run_state or ("unknown" if job_error else "pending")
        if rid not in records and (entry is not None or rid in local):
            pending[rid] = {"grid": entry["grid"], "config": entry["config"]} if entry else local[rid]
    # with no live process, the local grid's pending runs wait for a re-run (a kill -9, a lost shell)
    not_started = [] if progress else [rid for rid in local if states[rid] == "pending" and rid not in owner]
    return SweepStatus(sweep, states, records, pending, manifests[-1] if manifests else None, job_error,
                       Counter(states.values()), corrupt, progress, _failed_tasks(manifests, job_states),
                       last_local, not_started)


LOCAL_COMMAND = "last_run.json"
BAD_TASK_STATES = ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "TIMEOUT", "CANCELLED", "PREEMPTED", "BOOT_FAIL",
                   "DEADLINE", "VANISHED")


def _task_log(manifest_dir: Path, job_id: str) -> Optional[str]:
    """submitit's stdout log of one array task (<submission>/logs/<job>_<rank>_log.out)."""
    logs = Path(manifest_dir) / "logs"
    found = sorted(logs.glob(f"{job_id}_*log.out")) or sorted(logs.glob(f"{job_id}_log.out"))
    return str(found[0]) if found else None


def _failed_tasks(manifests: list[dict], job_states: dict[str, str]) -> list[dict]:
    """Array tasks of the newest submission whose job ended badly, with their logs."""
    if not manifests:
        return []
    m = manifests[-1]
    where = Path(m["sweep_dir"]) / mf.SUBMISSIONS / m["submission"]
    out = []
    for task in m["tasks"]:
        state = job_states.get(str(task.get("job_id")))
        if state in BAD_TASK_STATES:
            out.append({"index": task["index"], "job": task["job_id"], "state": state,
                        "log": _task_log(where, str(task["job_id"]))})
    return out


def _last_local(sweep: Path, manifests: list[dict]) -> Optional[dict]:
    """The last `sweep run` of this sweep, if it came after the newest submission."""
    try:
        data = json.loads((sweep / LOCAL_COMMAND).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("overrides"), list):
        return None
    if manifests and float(manifests[-1].get("created_unix", 0)) > float(data.get("time", 0)):
        return None
    return data


def _local_grid(last_local: Optional[dict]) -> dict[str, dict]:
    """run_id -> {"grid", "config"} of every run the last `sweep run` expanded its overrides to (run
    ids hash config content, so expanding them again finds the same ids); {} without a local run, or
    when its overrides no longer expand (a renamed experiment): status then counts records only."""
    if last_local is None:
        return {}
    try:
        return _expanded(tuple(last_local["overrides"]))
    except Exception:  # noqa: BLE001 - status must show what it can
        return {}


@functools.lru_cache(maxsize=4)
def _expanded(overrides: tuple[str, ...]) -> dict[str, dict]:
    """Cached: `sweep status --watch` asks again every few seconds."""
    from sweep.grid import expand

    return {r.run_id: {"grid": r.grid, "config": r.config_dict()} for r in expand(list(overrides))}


def record_local_command(sweep: Path, overrides: list[str]) -> None:
    """Remember how a sweep was last run locally, so status can say how to finish it."""
    import time

    store.atomic_write_json(Path(sweep) / LOCAL_COMMAND, {"overrides": list(overrides), "time": time.time()})


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def progress_lines(status: SweepStatus) -> list[str]:
    """One line per live cohort: who trains it, the step reached, an ETA and its log."""
    import time

    from sweep.claims import describe_owner

    lines = []
    for p in status.progress:
        step, total = int(p.get("step", 0)), max(1, int(p.get("total", 1)))
        elapsed = float(p.get("updated", 0)) - float(p.get("started", 0))
        eta = f", ETA {_duration(elapsed / step * (total - step))}" if 0 < step < total else ""
        who = describe_owner(p)
        age = time.time() - float(p.get("updated", 0))
        line = (f"  running: {_plural(len(p['runs']), 'run')} on {who}: step {step}/{total} "
                f"({100 * step // total}%){eta}, reported {_duration(age)} ago")
        if p.get("log"):
            line += f"; log {p['log']}"
        lines.append(line)
    return lines


def error_lines(status: SweepStatus, limit: int = 5) -> list[str]:
    """The first line of each error run's message (and its log), then failed array tasks' logs."""
    lines = []
    errors = [rid for rid, state in status.states.items() if state == "error"]
    for rid in errors[:limit]:
        err = (status.records.get(rid) or {}).get("error") or {}
        first = str(err.get("message") or "").strip().splitlines()
        line = f"  error {rid}: {err.get('type', '?')}: {first[0][:200] if first else ''}"
        if err.get("log"):
            line += f"; log {err['log']}"
        lines.append(line)
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more error runs")
    for t in status.failed_tasks[:limit]:
        lines.append(f"  task {t['index']} (job {t['job']}) {t['state']}: log {t['log'] or '(none written)'}")
    if len(status.failed_tasks) > limit:
        lines.append(f"  ... and {len(status.failed_tasks) - limit} more failed tasks")
    return lines


def summary_frame(status: SweepStatus) -> pd.DataFrame:
    """One row per run for the text phase diagram; runs without a record carry their state as
    outcome (drawn as '?')."""
    from sweep.aggregate import summary_row

    rows = []
    for rid, state in status.states.items():
        rec = status.records.get(rid)
        if rec is None or state not in store.TERMINAL_OUTCOMES + ("error",):
            src = status.pending_configs.get(rid) or (
                {"grid": rec.get("grid", {}), "config": rec.get("config", {})} if rec else None)
            if src is None:  # corrupt, never submitted: no config to place it in the diagram
                continue
            rec = {"run_id": rid, "outcome": state, "status": state, "summary": {}, **src}
        try:
            row = summary_row(rec)
        except (KeyError, TypeError, AttributeError):
            continue
        rows.append(row)
    return pd.DataFrame(rows)


def format_status(status: SweepStatus) -> str:
    lines = []
    n = sum(status.counts.values())
    head = f"sweep {status.sweep.name}: {n} runs"
    if status.latest:
        m = status.latest
        ex = m["cluster"].get("executor")
        job = f", job {m['job_id']}" if m.get("job_id") else ""
        head += f" (latest submission {m['submission']}: {ex}{job}, {len(m['tasks'])} tasks)"
    lines.append(head)
    lines.append("  " + "  ".join(f"{s} {status.counts.get(s, 0)}" for s in STATES
                                  if status.counts.get(s, 0) or s in STATES[:6]))
    if status.job_error:
        lines.append(f"  job states unavailable: {status.job_error}")
    lines += progress_lines(status)
    lines += error_lines(status)
    bad = [rid for rid, state in status.states.items() if state == "corrupt"]
    for rid in bad[:5]:
        lines.append(f"  corrupt: {status.corrupt[rid]}")
    if len(bad) > 5:
        lines.append(f"  ... and {len(bad) - 5} more corrupt runs")
    if bad:
        lines.append("  (a re-run or resubmit trains corrupt runs again; their files are moved aside, not deleted)")
    lines += finish_lines(status)
    return "\n".join(lines)


def finish_lines(status: SweepStatus) -> list[str]:
    """How many runs need a re-run or resubmit, why, and the command (for the folder status read)."""
    redo = sum(status.counts.get(s, 0) for s in NEEDS_RESUBMIT) + len(status.not_started)
    if not redo:
        return []
    why = [f"{status.counts[s]} {s}" for s in NEEDS_RESUBMIT if status.counts.get(s)]
    why += [f"{len(status.not_started)} pending"] if status.not_started else []
    if status.last_local is not None:
        again = "re-run: " + shlex.join(["sweep", "run", *in_folder(status.last_local["overrides"], status.sweep)])
    elif status.latest:
        again = "resubmit: " + shlex.join(["sweep", "submit", *in_folder(status.latest["overrides"], status.sweep)])
    else:
        again = "re-run the same `sweep run` command"
    return [f"  {_plural(redo, 'run')} to finish ({', '.join(why)}); {again}"]


def in_folder(overrides: list[str], sweep: Path) -> list[str]:
    """The overrides, writing into `sweep`, the folder status was pointed at. A copied or moved sweep
    keeps the original's overrides (and an experiment names its own sweep_name): a hint that kept
    them would train into the original folder, not this one."""
    from sweep.config import Config

    folder = sweep if sweep.name else sweep.resolve()
    where = {"sweep_name": f"sweep_name={folder.name}",
             "results_dir": None if folder.parent == Path(Config.results_dir) else f"results_dir={folder.parent}"}
    out, placed = [], set()
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key not in where:
            out.append(o)
            continue
        if key not in placed and where[key]:  # in its place; a repeated one is dropped
            out.append(where[key])
        placed.add(key)
    return out + [o for key, o in where.items() if o and key not in placed]
