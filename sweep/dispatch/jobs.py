"""Talking to SLURM: is it reachable, what did sbatch object to, and what state are our jobs in.

Job states come from `sacct` (accounting), which also knows finished, cancelled and timed-out
jobs; where accounting is off we fall back to `squeue`, which only knows live jobs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Iterable, Optional

from sweep.errors import SlurmError

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
CHECK_HINT = "check with `sinfo` (and `scontrol ping`)"


def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_slurm() -> None:
    """Raise a one-line SlurmError unless sbatch exists and slurmctld answers."""
    if shutil.which("sbatch") is None:
        raise SlurmError(f"SLURM is not reachable: `sbatch` is not on PATH (not a SLURM login node?); {CHECK_HINT}")
    try:
        res = _run(["sinfo", "-h", "-o", "%P"], timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"SLURM is not reachable: `sinfo` failed ({exc.__class__.__name__}); {CHECK_HINT}") from None
    if res.returncode != 0:
        raise SlurmError(f"SLURM is not reachable: slurmctld does not answer ({condense(res.stderr)}); {CHECK_HINT}")


def partitions() -> list[str]:
    try:
        res = _run(["sinfo", "-h", "-o", "%P"])
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [p.strip().rstrip("*") for p in res.stdout.split() if p.strip()]


def condense(text: str) -> str:
    """sbatch/submitit errors are multi-line tracebacks; keep the most specific 'error:' line."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln.lower()]
    line = errors[-1] if errors else (lines[-1] if lines else "no message")
    line = re.sub(r"^.*?(s?batch|sinfo|squeue|sacct)?:?\s*error:\s*", "", line, flags=re.I)
    line = re.sub(r"^Batch job submission failed:\s*", "", line)
    return line[:300]


def explain_submission_error(exc: BaseException, cluster) -> SlurmError:
    """sbatch refused the array: say why on one line, with the keys that are probably at fault."""
    text = condense(getattr(exc, "stderr", None) or str(exc))
    hint = ""
    if "partition" in text.lower():
        hint = (f" (cluster.partition={cluster.partition}; partitions here: "
                f"{', '.join(partitions()) or '?'}; list them with `sinfo`)")
    elif "account" in text.lower() or "qos" in text.lower() or "association" in text.lower():
        hint = f" (cluster.account={cluster.account}, cluster.qos={cluster.qos}; see `sacctmgr show assoc user=$USER`)"
    elif "time limit" in text.lower():
        hint = f" (cluster.timeout_min={cluster.timeout_min}; limits per partition: `sinfo -o '%P %l'`)"
    return SlurmError(f"sbatch refused the job array: {text}{hint}")


def _base_ids(job_ids: Iterable[str]) -> list[str]:
    return sorted({str(j).split("_")[0] for j in job_ids if j})


def _squeue_states() -> Optional[dict[str, str]]:
    """Live jobs of this user, one line per array element; None when squeue fails."""
    import getpass

    try:
        res = _run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    states = {}
    for line in res.stdout.splitlines():
        if "|" in line:
            jid, state = line.split("|", 1)
            states[jid.strip()] = state.strip()
    return states


def _sacct_states(ids: list[str]) -> tuple[Optional[dict[str, str]], str]:
    """(job id -> state, "") from accounting, or (None, why) when sacct fails (no slurmdbd)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    try:
        res = _run(["sacct", "-X", "-o", "JobID,State", "--parsable2", "-j", ",".join(ids)])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, exc.__class__.__name__
    if res.returncode != 0:
        return None, condense(res.stderr)
    info = SlurmInfoWatcher().read_info(res.stdout)
    return {jid: stats["State"].split()[0] for jid, stats in info.items() if stats.get("State")}, ""


def slurm_states(job_ids: Iterable[str]) -> dict[str, str]:
    """job id ('123_4' or '123') -> SLURM state ('RUNNING', 'CANCELLED', ...).

    squeue is authoritative for live jobs (accounting may lag), sacct for ended ones. A job known
    to neither was never started and is no longer queued: an array element cancelled while
    pending never reaches the accounting database, so it is reported as VANISHED (cancelled).
    Without accounting, ended jobs are only known as ENDED. Raises SlurmError when neither answers."""
    wanted = [str(j) for j in job_ids if j]
    if not wanted:
        return {}
    live = _squeue_states()
    history, why = _sacct_states(_base_ids(wanted))
    if live is None and history is None:
        raise SlurmError(f"cannot read job states (squeue and sacct failed: {why}); {CHECK_HINT}")
    out = {}
    for jid in wanted:
        if live and jid in live:
            out[jid] = live[jid]
        elif history and jid in history:
            out[jid] = history[jid]
        elif live is not None:
            out[jid] = "VANISHED" if history is not None else "ENDED"
    return out


def local_states(job_ids: Iterable[str]) -> dict[str, str]:
    """submitit_local jobs: the id is the controller's pid on this machine."""
    out = {}
    for jid in job_ids:
        if jid:
            alive = os.path.exists(f"/proc/{jid}") and "zombie" not in _proc_state(jid)
            out[jid] = "RUNNING" if alive else "ENDED"
    return out


def _proc_state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((ln for ln in f if ln.startswith("State:")), "").lower()
    except OSError:
        return ""
