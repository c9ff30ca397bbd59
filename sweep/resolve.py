"""Per-member scalars, resolved once per cohort: lr units (1/lambda0) and eta_c starts.

Why here: the records, the engine and the aggregate must agree on every member's absolute target
and initial lr, warmup and lambda0. They are computed once, before training, into the cohort's plan
(sweep/plan.py): the engine only ever sees arrays, the runner writes the plan's values into the
records, and nothing decodes `lr_unit` or `lr_init_mode` again downstream.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from sweep import store
from sweep import engine
from sweep.eta_c import start_at_eta_c
from sweep.identity import in_lambda0_units, lambda0_key
from sweep.plan import CohortPlan, plan_cohort
from sweep.termination import interruptible
from sweep.workload import Workload


def resolve_plan(workload: Workload, cfgs: Sequence[Any], sweep: Optional[Path]) -> CohortPlan:
    """The cohort's plan with absolute lrs: lr (and lr_init) divided by lambda0 under
    lr_unit=sharpness; under lr_init_mode=eta_c (Section 6.1) lr_init = min(eta_c, eta_trgt) and the
    warmup shortened to keep the warmup rate, with eta_c / T_reach / T_save as summary fields."""
    lr = np.asarray([float(c.lr) for c in cfgs])
    lr_init = np.asarray([float(c.lr_init) for c in cfgs])
    lambda0 = None
    if in_lambda0_units(cfgs[0].lr_unit):
        lambda0 = initial_sharpness(workload, cfgs, sweep)
        lr, lr_init = lr / lambda0, lr_init / lambda0
    plan = plan_cohort(cfgs, lrs=lr, lr_inits=lr_init, lambda0=lambda0)
    if str(cfgs[0].lr_init_mode) == "eta_c":
        ctx = engine.cohort_context(workload, plan)
        members, consts = engine.initialize(ctx, plan)
        lr_init, warmups, fields = start_at_eta_c(workload, members.params, plan.hyper,
                                                  engine.update_spec(ctx, consts), cfgs, lr, lambda0)
        plan = plan_cohort(cfgs, lrs=lr, lr_inits=lr_init, warmups=warmups, lambda0=lambda0, member_fields=fields)
    return plan


def initial_sharpness(workload: Workload, cfgs: Sequence[Any], sweep: Optional[Path]) -> np.ndarray:
    """lambda0 of each member: read from the sweep's cache, or computed once per (shape group,
    seed) and cached, so every lr and warmup of a group reuses it (the authors recompute it per lr)."""
    values: list[Optional[float]] = []
    cache_dir = sweep / "lambda0" if sweep is not None else None
    for cfg in cfgs:
        values.append(_read_lambda0(cache_dir, lambda0_key(cfg)) if cache_dir else None)
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        reps: dict[str, int] = {}  # one representative per distinct key
        for i in missing:
            reps.setdefault(lambda0_key(cfgs[i]), i)
        plan = plan_cohort([cfgs[i] for i in reps.values()], lrs=[1.0] * len(reps), lr_inits=[0.0] * len(reps))
        computed = interruptible(engine.measure_lambda0, workload, plan)  # SIGTERM acts at once
        for key, lam in zip(reps, computed):
            if cache_dir:
                store.atomic_write_json(cache_dir / f"{key}.json", {"lambda0": float(lam), "key": key})
        by_key = dict(zip(reps, computed))
        for i in missing:
            values[i] = float(by_key[lambda0_key(cfgs[i])])
    return np.asarray(values, np.float64)


def _read_lambda0(cache_dir: Path, key: str) -> Optional[float]:
    try:
        return float(json.loads((cache_dir / f"{key}.json").read_text())["lambda0"])
    except (FileNotFoundError, KeyError, ValueError):
        return None
