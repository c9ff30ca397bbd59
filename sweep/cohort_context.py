"""The frozen context of a cohort's traced math: every setting the per-member functions read.

Why a value and not a trainer's attributes: the traced functions (sweep/member_step.py,
sweep/member_probe.py, sweep/iteration.py) take it as their first argument, so nothing they compute
depends on which method ran first, and a shared compiled program gets the parameterization's
constants by `ctx.bind(consts)` (a new context) instead of swapping attributes while tracing.
Built once per cohort on the host (`build_context`), before anything is traced.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sweep import curvature, optimizers, probes
from sweep.identity import cohort_key
from sweep.optimizers import OptimizerSpec
from sweep.runtime import memory_budget_bytes
from sweep.workload import Workload, eval_batch_size


@dataclass(frozen=True)
class Context:
    w: Workload  # the model, loss and device data (its `consts` bound inside shared programs)
    k: int  # members
    steps: int
    cosine: bool  # cosine decay after warmup
    catapult: bool  # warmup_mode=catapult (Algorithm 3)
    batch: int  # examples per update
    full_batch: bool
    steps_per_epoch: int
    train_microbatch: int  # examples per training micro-batch (= batch unless memory.train_mib bounds it)
    data_seed: int
    augment: Optional[Callable]  # (key, x, y) -> (x, y), or None
    optimizer: OptimizerSpec
    opt_cfg: Any  # the optimizer's config node (clip norm, GI-Adam's v0 batch)
    probe: Any  # the probe settings (Lanczos, metrics)
    probe_dtype: Any
    do_sharpness: bool
    do_precond: bool  # preconditioned sharpness: on, and the optimizer has a preconditioner
    probe_sequential: bool  # members probed one by one (lax.map), else vmapped
    metrics: tuple  # the enabled registered probe metrics (sweep/probes.py)
    microbatch_bytes: int  # memory budget of one probe / evaluation (0: whole batches)
    probe_microbatch: int  # examples per probe micro-batch
    eval_bytes_per_example: float
    outcome: Any  # divergence criteria
    eta_c_cfg: Any  # the eta_c search's settings (catapult warmup)
    catapult_cfg: Any
    program_key: str  # what the shared programs may depend on (engine.program_key)
    init_key: str  # the full cohort key (init program)
    uses_lr_factors: bool = False  # muP + Adam with the per-layer lr factors of Appendix D.2.1
    lr_scale: Any = None  # muP-Adam's per-layer lr factors: the host value, or the program's argument
    rep_of: Any = None  # inside shared programs: (K,) first member with the same initialization

    @property
    def clip(self) -> Optional[float]:
        return self.opt_cfg.get("clip_norm", None)

    @property
    def update_rule(self) -> OptimizerSpec:
        """The spec applied to the member's optimizer state after initialization (a seeded v0 is plain Adam's)."""
        return self.optimizer.update_rule(self.opt_cfg)

    @property
    def seeded_v0(self) -> bool:
        return self.optimizer.seeded(self.opt_cfg)

    def bind(self, consts: dict) -> "Context":
        """The context inside a shared program: the model's constants and Adam's lr factors are the
        program's arguments (data), not this cohort's Python values."""
        return replace(self, w=self.w.with_consts(consts["model"]), lr_scale=consts["lr_scale"],
                       rep_of=consts.get("rep_of"))

    def eval_batch(self, x: jax.Array, members: int = 1) -> int:
        """Evaluation chunk: the usual one, or smaller when the memory budget bounds it (shared by
        `members` evaluated together under vmap)."""
        b = eval_batch_size(int(x.shape[0]))
        if self.microbatch_bytes > 0:
            b = min(b, curvature.examples_per_microbatch(int(x.shape[0]), self.eval_bytes_per_example,
                                                         self.microbatch_bytes // max(members, 1)))
        return b


def build_context(workload: Workload, plan: Any, program_key: str, train_microbatches: int = 1) -> Context:
    """The context of one cohort (host side: sizes, flags, micro-batches from the memory budget)."""
    cfg = plan.cfg
    spec = optimizers.get(cfg.optimizer)
    n = int(workload.data.x_train.shape[0])
    batch = minibatch_size(cfg, n)
    if batch % train_microbatches:
        raise ValueError(f"{train_microbatches} training micro-batches do not divide the batch of {batch}")
    sequential = probe_sequential(str(cfg.probe.get("members", "auto")))
    # the memory budget (memory.budget_mib, an execution setting): probe HVPs, the probe batch's loss
    # and gradient and evaluations run over micro-batches that fit it; members probed together share it
    budget = memory_budget_bytes(cfg)
    microbatch_bytes = budget if sequential else budget // plan.size
    probe_micro, eval_bytes = _microbatch_sizes(workload, microbatch_bytes)
    return Context(
        w=workload, k=plan.size, steps=int(cfg.steps),
        cosine=str(getattr(cfg.decay, "value", cfg.decay)) == "cosine",
        catapult=str(cfg.get("warmup_mode", "linear")) == "catapult",
        batch=batch, full_batch=batch == n, steps_per_epoch=max(n // batch, 1),
        train_microbatch=batch // train_microbatches, data_seed=int(cfg.data_seed),
        augment=_augment_fn(cfg, workload), optimizer=spec, opt_cfg=cfg.optimizer, probe=cfg.probe,
        probe_dtype=jnp.float64 if cfg.probe.dtype == "float64" else jnp.float32,
        do_sharpness=bool(cfg.probe.sharpness), do_precond=bool(cfg.probe.precond_sharpness) and spec.adaptive,
        probe_sequential=sequential, metrics=tuple(probes.enabled_metrics(cfg.probe)),
        microbatch_bytes=microbatch_bytes, probe_microbatch=probe_micro, eval_bytes_per_example=eval_bytes,
        outcome=cfg.outcome, eta_c_cfg=cfg.eta_c, catapult_cfg=cfg.catapult,
        program_key=program_key, init_key=cohort_key(cfg),
        uses_lr_factors=spec.adaptive and cfg.param.name == "mup" and bool(cfg.param.get("adam_lr_factors", False)))


def minibatch_size(cfg: Any, n_train: int) -> int:
    """Examples per update: batch_size, or the whole training set (full-batch GD) when it is 0 or
    at least the set's size."""
    bs = int(cfg.batch_size)
    return n_train if bs <= 0 or bs >= n_train else bs


def probe_sequential(mode: str) -> bool:
    """How cohort members are probed: `vmap` (one batched Lanczos; best on accelerators) or `map`
    (one member after another, each stopping at its own convergence with a smaller working set;
    on a 2-core CPU a 16-member cohort probe took 20.4 s vmapped vs 13.4 s as 16 single probes).
    `auto` maps on CPU and vmaps elsewhere."""
    if mode == "auto":
        return jax.default_backend() == "cpu"
    return mode == "map"


def first_same_init(plan: Any) -> np.ndarray:
    """(K,) for each member, the first member with the same initial state and probe scalars
    (seed, init scale, momentum, b1, b2, eps): their step-0 probes are identical."""
    h = plan.hyper
    keys = list(zip(plan.seeds.tolist(), plan.init_scales.tolist(),
                    *(np.asarray(v).tolist() for v in (h.momentum, h.b1, h.b2, h.eps))))
    first: dict = {}
    return np.asarray([first.setdefault(key, i) for i, key in enumerate(keys)])


def _augment_fn(cfg: Any, workload: Workload) -> Optional[Callable]:
    aug = cfg.data.get("augment", None)
    if aug is None or not (aug.flip or aug.crop or aug.mixup):
        return None
    from sweep.data.augment import augment_batch

    return lambda key, x, y: augment_batch(key, x, y, aug, workload.num_classes)


def _microbatch_sizes(workload: Workload, budget_bytes: int) -> tuple[int, float]:
    """(examples per probe micro-batch, forward bytes per example) within the memory budget.
    Bytes per example: the growth of the loss's intermediate values from 1 to 2 examples
    (make_jaxpr, nothing runs); an HVP keeps ~3x a forward pass's values."""
    d = workload.data
    n = int(d.x_probe.shape[0])
    shapes = workload.param_shapes()
    fwd = [curvature.activation_bytes(lambda p, x, y: workload.loss_and_accuracy(p, x, y)[0], shapes,
                                      d.x_probe[:b], d.y_probe[:b]) for b in (1, 2)]
    per_example = max(fwd[1] - fwd[0], 1)
    if budget_bytes <= 0:  # memory.budget_mib=0: whole batches
        return n, 0.0
    return curvature.examples_per_microbatch(n, 3 * per_example, budget_bytes), float(per_example)
