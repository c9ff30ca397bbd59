"""One object per execution backend (`cluster.executor`): how to build its submitit executor, whether it
is reachable, what state its jobs are in, how many tasks an array may have, which job this process
is, and how to say in one line why a submission was refused. Why: submit, status, the claims'
liveness check and the executor factory ask these questions; answered here, no backend name is
compared anywhere else. A new backend is one class registered below (plus its test).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Iterable, Optional

from sweep.errors import registered


class Backend:
    """Tasks run in this process, now (`local`): nothing to submit, reach or follow."""

    name: ClassVar[str] = "local"
    display: ClassVar[str] = "local"
    in_process: ClassVar[bool] = True

    def executor(self, cluster: Any, folder: Path, job_name: str) -> Optional[Any]:
        """The submitit executor of an array, or None when the tasks run here."""
        return None

    def check_reachable(self) -> None:
        """Raise a one-line error when jobs cannot be submitted now."""

    def job_states(self, job_ids: Iterable[str]) -> Optional[dict[str, str]]:
        """job id -> state (SLURM's names: RUNNING, PENDING, CANCELLED, ...), or None: nothing to ask."""
        return None

    def max_tasks(self, cluster: Any) -> Optional[int]:
        """The most tasks one array may have (None: one per cohort group)."""
        return None

    def current_job(self) -> Optional[str]:
        """This process's job id under this backend (what a claim records), or None."""
        return None

    def explain_refusal(self, exc: BaseException, cluster: Any) -> BaseException:
        """The error to raise when the submission was refused."""
        return exc


class SubmititLocal(Backend):
    """submitit's LocalExecutor: each task a process on this machine; its job id is the controller's pid."""

    name, display, in_process = "submitit_local", "submitit-local", False

    def executor(self, cluster: Any, folder: Path, job_name: str) -> Any:
        import submitit

        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=int(cluster.max_num_timeout),
                                    python=cluster.get("python") or None)
        ex.update_parameters(timeout_min=int(cluster.timeout_min), gpus_per_node=int(cluster.gpus_per_node),
                             signal_delay_s=int(cluster.signal_delay_s), setup=list(cluster.setup or []))
        return ex

    def job_states(self, job_ids: Iterable[str]) -> dict[str, str]:
        from sweep.dispatch.jobs import local_states

        return local_states(job_ids)

    def max_tasks(self, cluster: Any) -> Optional[int]:
        return int(cluster.array_parallelism)  # every task is a process here: at most this many


class Slurm(Backend):
    """submitit's SlurmExecutor: one job array per submission, states from squeue / sacct."""

    name, display, in_process = "slurm", "SLURM", False

    def executor(self, cluster: Any, folder: Path, job_name: str) -> Any:
        import submitit

        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(cluster.max_num_timeout),
                                    python=cluster.get("python") or None)
        ex.update_parameters(**slurm_parameters(cluster, job_name))
        return ex

    def check_reachable(self) -> None:
        from sweep.dispatch.jobs import check_slurm

        check_slurm()

    def job_states(self, job_ids: Iterable[str]) -> dict[str, str]:
        from sweep.dispatch.jobs import slurm_states

        return slurm_states(job_ids)

    def current_job(self) -> Optional[str]:
        """The job as sacct names it ('123_4' for array tasks)."""
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        if array and task:
            return f"{array}_{task}"
        return os.environ.get("SLURM_JOB_ID") or None

    def explain_refusal(self, exc: BaseException, cluster: Any) -> BaseException:
        from sweep.dispatch.jobs import explain_submission_error

        return explain_submission_error(exc, cluster)


BACKENDS: dict[str, Backend] = {b.name: b for b in (Backend(), SubmititLocal(), Slurm())}


def get(name: Any) -> Backend:
    """The backend of `cluster.executor` (a name, a cluster config node, or a backend)."""
    return name if isinstance(name, Backend) else registered(BACKENDS, str(getattr(name, "executor", name)),
                                                             "cluster.executor")


def current_job() -> tuple[Optional[str], Optional[str]]:
    """(backend name, job id) of the scheduler job this process runs in, or (None, None)."""
    for backend in BACKENDS.values():
        job = backend.current_job()
        if job:
            return backend.name, job
    return None, None


def slurm_parameters(cluster: Any, job_name: str) -> dict[str, Any]:
    """SlurmExecutor parameters (sbatch options) from the cluster config; unset keys are omitted
    so the site's defaults apply."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": int(cluster.timeout_min),
        "cpus_per_task": int(cluster.cpus_per_task),
        "array_parallelism": int(cluster.array_parallelism),
        "signal_delay_s": int(cluster.signal_delay_s),
        "setup": list(cluster.setup or []),
    }
    for key in ("partition", "account", "qos"):
        if cluster.get(key):
            params[key] = str(cluster[key])
    if int(cluster.gpus_per_node) > 0:
        params["gpus_per_node"] = int(cluster.gpus_per_node)
    if cluster.get("mem_gb"):
        params["mem"] = f"{int(cluster.mem_gb)}GB"
    extra = dict(cluster.get("additional_parameters") or {})
    if extra:
        params["additional_parameters"] = extra
    return params
