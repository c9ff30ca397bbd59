"""submitit executors from the `cluster` config group (conf/cluster/*.yaml)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from sweep.config import ConfigError

EXECUTORS = ("local", "submitit_local", "slurm")


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


def make_executor(cluster: Any, folder: Path, job_name: str) -> Optional[Any]:
    """A submitit executor, or None for `local` (tasks run in this process)."""
    kind = str(cluster.executor)
    if kind not in EXECUTORS:
        raise ConfigError(f"cluster.executor={kind}: allowed {', '.join(EXECUTORS)}")
    if kind == "local":
        return None
    import submitit

    python = cluster.get("python") or None
    if kind == "submitit_local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=int(cluster.max_num_timeout), python=python)
        executor.update_parameters(timeout_min=int(cluster.timeout_min), gpus_per_node=int(cluster.gpus_per_node),
                                   signal_delay_s=int(cluster.signal_delay_s), setup=list(cluster.setup or []))
        return executor
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(cluster.max_num_timeout), python=python)
    executor.update_parameters(**slurm_parameters(cluster, job_name))
    return executor
