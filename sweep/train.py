"""`python -m sweep.train [-m] [overrides]`: the stock @hydra.main entry point.

    python -m sweep.train -m experiment=demo                                  # the whole grid, basic launcher
    python -m sweep.train -m hydra/launcher=submitit_local lr='pow2(0,3)' warmup=1,64
    python -m sweep.train -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu experiment=demo
    python -m sweep.train lr=0.1 warmup=8      # one run, no -m: its overrides are its record's grid keys

With -m the `sweep_grid` sweeper (hydra_plugins/sweep_grid_sweeper) expands the grid as `sweep run`
does (experiment `grid:` block, command-line sweeps, pow2) and gives Hydra's launcher one job per
unfinished run; each job trains its run as a one-run cohort through runner.run_cohort, so run ids
and records are those of `sweep run`. The working directory never changes (hydra.job.chdir=false);
Hydra's own outputs (.hydra/, logs, multirun.yaml) go to results/<sweep>/hydra/<time>/, not ./outputs.
Cohorts of one run: `sweep run` / `sweep submit` (vmapped cohorts, submit-and-return) are faster.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional

import hydra
from omegaconf import DictConfig

from sweep.config import register_configs
from sweep.grid import CONF_DIR
from sweep.hydra_compat import TRAIN_CONFIG, install_pow2, register_train_config, run_job
from sweep.hydra_compat import override_grid_keys as swept_keys  # noqa: F401  (the name tests and older callers use)

register_configs()  # the structured schema must be in the ConfigStore before @hydra.main composes
register_train_config(CONF_DIR)
install_pow2()  # Hydra's own parser reads the command line: teach it pow2(...)


@hydra.main(version_base=None, config_path=None, config_name=TRAIN_CONFIG)
def main(cfg: DictConfig) -> Optional[float]:
    """Train one run; returns its best test accuracy (for Hydra sweepers that optimize)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweep.errors import UserError, format_user_error, install_warning_format

    install_warning_format()
    # Hydra sets the root logger to INFO for its job log; jax's backend search would then print
    # "Unable to initialize backend 'tpu'" on every CPU or GPU machine
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    try:
        return run_job(cfg)
    except UserError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the job fails; the sweeper reports it in one line
        print(f"error: {format_user_error(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
