"""`python -m sweep.train [overrides]`: the stock @hydra.main entry point, one config per call.

For users of Hydra's own multirun and launchers, e.g.
    python -m sweep.train -m hydra/launcher=submitit_local lr=0.1,0.2
Each job trains its single run through the same `runner.run_cohort` as `sweep run`/`sweep submit`
(same run id, same record). Hydra's launchers start one job per run, so cohorts of one: for
vmapped cohorts, submit-and-return and requeue, use `sweep submit`.
"""
from __future__ import annotations

from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sweep.config import EXECUTION_KEYS, register_configs, validate

register_configs()  # the structured schema must be in the ConfigStore before @hydra.main composes

GROUPS = ("model", "param", "optimizer", "data")


def swept_keys(task_overrides: list[str]) -> list[str]:
    """This job's override keys as record grid keys (`param=mup` -> `param.name`). A Hydra job
    cannot tell its swept keys from fixed overrides, so every non-execution override counts."""
    keys = []
    for o in task_overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0] in EXECUTION_KEYS or key.startswith("hydra"):
            continue
        keys.append(f"{key}.name" if key in GROUPS else key)
    return keys


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    """Train one run; returns its best test accuracy (for Hydra sweepers that optimize)."""
    from hydra.utils import to_absolute_path

    from sweep import store
    from sweep.grid import Cohort, RunSpec
    from sweep.identity import cohort_key, run_id
    from sweep.runner import run_cohort

    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, False)
    validate(cfg)
    overrides = list(HydraConfig.get().overrides.task)
    grid = {k: OmegaConf.select(cfg, k) for k in swept_keys(overrides)}
    grid = {k: (v.value if hasattr(v, "value") else v) for k, v in grid.items()}
    spec = RunSpec(run_id(cfg), cfg, grid)
    sweep = store.sweep_dir(to_absolute_path(str(cfg.results_dir)), str(cfg.sweep_name))
    records = run_cohort(Cohort(cohort_key(cfg), [spec]), sweep, force=bool(cfg.force))
    record = records[0] if records else store.read_record(sweep, spec.run_id)
    print(f"{spec.run_id} {record['outcome']} -> {store.run_dir(sweep, spec.run_id)}")
    return (record.get("summary") or {}).get("best_test_acc")


if __name__ == "__main__":
    main()
