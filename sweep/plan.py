"""A cohort's plan: the config its members share, and every per-member scalar as an array.

Why one place: what differs between members (target and initial lr in absolute units, warmup, init
scale, seed, optimizer scalars, eta_0 of the catapult search, lambda0, eta_c) must reach the
compiled programs as data, never as a Python constant read from one member's config. `shared`
is the first member's config with every member key removed, so code that reads a per-member value
from it fails loudly instead of silently using member 0's (the trap behind the init_scale defect).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from sweep import catapult, optim, optimizers
from sweep.identity import MEMBER_KEYS, cohort_key, drop_key, to_dict


@dataclass
class CohortPlan:
    """Static description of a cohort: the shared config plus each member's scalars."""

    cfg: Any  # the shared config: no member key (MEMBER_KEYS) is present
    hyper: optim.Hyper  # arrays of shape (K,): lr, lr_init (absolute), warmup, optimizer scalars, ...
    seeds: np.ndarray  # (K,) init seeds
    init_scales: np.ndarray  # (K,)
    catapult_eta0: np.ndarray  # (K,) warmup_mode=catapult: the first eta_c search's initial guess
    lr: Optional[np.ndarray] = None  # (K,) absolute target lr, float64 (for records)
    lr_init: Optional[np.ndarray] = None  # (K,) absolute initial lr, float64
    lambda0: Optional[np.ndarray] = None  # (K,) when lr is in units of 1/lambda0
    member_fields: list = field(default_factory=list)  # per member: extra summary fields (eta_c, ...)

    @property
    def size(self) -> int:
        return len(self.seeds)


def shared_config(cfg: Any) -> Any:
    """`cfg` without the member keys (read-only): what every member of its cohort has in common."""
    d = to_dict(cfg)
    for key in MEMBER_KEYS:
        drop_key(d, key)
    shared = OmegaConf.create(d)
    OmegaConf.set_struct(shared, True)
    OmegaConf.set_readonly(shared, True)
    return shared


def plan_cohort(cfgs: Sequence[Any], lrs: Optional[Sequence[float]] = None,
                lr_inits: Optional[Sequence[float]] = None, warmups: Optional[Sequence[float]] = None,
                lambda0: Optional[Sequence[float]] = None, member_fields: Optional[list] = None) -> CohortPlan:
    """Stack the member scalars. `lrs`/`lr_inits` override cfg.lr/cfg.lr_init with absolute values
    (lr given in units of 1/lambda0, or lr_init from eta_c); `warmups` overrides cfg.warmup."""
    keys = {cohort_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError("cohort members must share every non-scalar config value")
    f32 = lambda xs: jnp.asarray(np.asarray(xs, np.float32))  # noqa: E731
    scalars = [optimizers.hyper_scalars(c.optimizer) for c in cfgs]  # each optimizer's own, defaults else
    lr = np.asarray(lrs if lrs is not None else [float(c.lr) for c in cfgs], np.float64)
    lr_init = np.asarray(lr_inits if lr_inits is not None else [float(c.lr_init) for c in cfgs], np.float64)
    hyper = optim.Hyper(
        lr=f32(lr),
        lr_init=f32(lr_init),
        warmup=f32(warmups if warmups is not None else [c.warmup for c in cfgs]),
        **{key: f32([s[key] for s in scalars]) for key in optimizers.HYPER_DEFAULTS},
        decay_rho=f32([c.decay_rho for c in cfgs]),
        decay_min_factor=f32([c.decay_min_factor for c in cfgs]),
    )
    return CohortPlan(shared_config(cfgs[0]), hyper, np.asarray([int(c.seed) for c in cfgs]),
                      np.asarray([float(c.param.init_scale) for c in cfgs], np.float32),
                      catapult.initial_guesses(cfgs, lrs), lr=lr, lr_init=lr_init,
                      lambda0=None if lambda0 is None else np.asarray(lambda0, np.float64),
                      member_fields=list(member_fields) if member_fields is not None else [{} for _ in cfgs])


def max_learning_rates(plan: CohortPlan, steps_run: Sequence[int]) -> list[Optional[float]]:
    """The largest lr each member really used: the maximum of the engine's own schedule
    (optim.learning_rate, the function member_step.learning_rate calls, in float32 as there) over
    the updates the member made, t = 1..steps_run (a diverged member stops early). Why: with warmup
    longer than steps the target lr is never reached (warmup=100, steps=10: at most 10/100 of the way),
    while the record's `lr` still says the target. None when no update was made, and under
    warmup_mode=catapult, whose lr follows the searches rather than this schedule (t_reach says
    whether it reached the target)."""
    if str(plan.cfg.warmup_mode) != "linear":
        return [None] * plan.size
    cosine = str(getattr(plan.cfg.decay, "value", plan.cfg.decay)) == "cosine"
    hyper = [np.asarray(a) for a in plan.hyper]
    out: list[Optional[float]] = []
    with jax.default_device(jax.devices("cpu")[0]):  # on the host: never the accelerator's memory
        for m, updates in enumerate(steps_run):
            if int(updates) < 1:
                out.append(None)
                continue
            h = optim.Hyper(*(jnp.asarray(a[m] if a.ndim else a) for a in hyper))
            t = jnp.arange(1, int(updates) + 1, dtype=jnp.float32)
            out.append(float(jnp.max(optim.learning_rate(t, h, int(plan.cfg.steps), cosine))))
    return out
