"""`hydra/sweeper=sweep_grid`: the sweeper of `python -m sweep.train -m ...` (sweep/train.py).

It expands a grid exactly as `sweep run` does (sweep.grid.expand: the experiment's `grid:` block,
command-line sweeps, pow2, glob, range) and hands one job per unfinished run to the configured
Hydra launcher (basic, submitit_local, submitit_slurm, ...). Each job's overrides set every swept
key to the run's value, plus `hydra.sweeper.run_id` / `hydra.sweeper.grid_keys`, which the job
(sweep.hydra_compat.run_job) uses to check its run id and to record the same `grid` as `sweep run`.

Hydra imports every module under hydra_plugins when any Hydra app starts: this one imports only
Hydra at module level. (No `from __future__ import annotations`: Hydra's plugin scan executes the
module outside sys.modules, where string annotations break @dataclass.)
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class SweepGridSweeperConf:
    _target_: str = "hydra_plugins.sweep_grid_sweeper.sweep_grid_sweeper.SweepGridSweeper"
    max_batch_size: Optional[int] = None  # jobs handed to the launcher at once (None: all)
    # Set by the sweeper on each job's overrides (read by the job); not for users.
    run_id: Optional[str] = None
    grid_keys: List[str] = field(default_factory=list)
    grid_block: Optional[str] = None  # JSON: the grid the job belongs to, for its record's `grid` block


ConfigStore.instance().store(group="hydra/sweeper", name="sweep_grid", node=SweepGridSweeperConf, provider="sweep")


class SweepGridError(CompactHydraException):
    """Printed by Hydra as one line (no traceback)."""


class SweepGridSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None, run_id: Optional[str] = None,
                 grid_keys: Sequence[str] = (), grid_block: Optional[str] = None) -> None:
        super().__init__()
        if max_batch_size is not None and max_batch_size < 1:
            raise SweepGridError(f"hydra.sweeper.max_batch_size={max_batch_size}: must be >= 1 (or null: all jobs)")
        self.max_batch_size = max_batch_size
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _expand(self, arguments: List[str]) -> tuple[list, list[list[str]]]:
        """sweep.grid.expand composes through Hydra's compose API, which resets the global Hydra
        instance: keep this app's."""
        from hydra.core.global_hydra import GlobalHydra

        from sweep.errors import UserError, format_user_error
        from sweep.hydra_compat import grid_jobs

        saved = GlobalHydra.instance().hydra
        try:
            return grid_jobs(arguments)
        except UserError as exc:
            raise SweepGridError(f"error: {format_user_error(exc)}") from None
        finally:
            GlobalHydra.instance().hydra = saved

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        from sweep import store

        runs, jobs = self._expand(list(arguments))
        cfg0 = runs[0].cfg
        sweep = store.sweep_dir(str(cfg0.results_dir), str(cfg0.sweep_name))
        force = bool(cfg0.force)
        todo = [(r, j) for r, j in zip(runs, jobs) if force or not store.is_finished(sweep, r.run_id)]
        log.info(f"sweep '{cfg0.sweep_name}': {len(runs)} runs, {len(runs) - len(todo)} already finished, "
                 f"{len(todo)} to run as Hydra jobs -> {sweep}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if not todo:
            return []
        size = self.max_batch_size or len(todo)
        returns: list[Sequence[JobReturn]] = []
        failed: list[tuple[str, BaseException]] = []
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            results = self.launcher.launch([j for _, j in batch], initial_job_idx=start)
            for (run, _), r in zip(batch, results):
                if r.status == JobStatus.FAILED:
                    failed.append((run.run_id, r._return_value))
            returns.append(results)
        if failed:
            rid, exc = failed[0]
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise SweepGridError(f"error: {len(failed)} of {len(todo)} jobs failed (first: run {rid}: "
                                 f"{exc.__class__.__name__}: {first}); the same command re-runs only what is not "
                                 f"finished (sweep status {sweep})")
        return returns
