"""Train a cohort: K runs that share every shape, as ONE jit-compiled, vmapped program.

Layout of the computation (one "iteration" i = probe at step i, then update i+1):
  - the step loop runs in `lax.scan` chunks of `chunk` iterations; no host sync inside a chunk;
  - probes (sharpness, preconditioned sharpness, test evaluation) sit behind `lax.cond` on an
    unbatched "is this a probe step" flag, so off-probe steps cost nothing extra;
  - every member sees the same minibatch sequence (and augmentation), drawn from `data_seed`;
  - a member whose training loss is NaN/inf (or, with `outcome.blowup` set, stays above blowup x
    its initial loss for `outcome.blowup_patience` updates) is frozen: its parameters stop updating
    and its trace ends at that step; the others are unaffected (vmap keeps members independent).
    When every member is frozen, training stops early. Nothing a member records depends on which
    cohort it trains in (tests/test_cohort_invariance.py).
The host reads back one chunk of per-iteration scalars at a time and keeps the probe rows.
"""
from __future__ import annotations

import functools
import hashlib
import math
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree

from sweep import catapult, columns, curvature, eta_c, optim, probes
from sweep.identity import MEMBER_KEYS, cohort_key, content_hash, drop_key, identity_dict
from sweep.plan import CohortPlan, plan_cohort  # noqa: F401 - re-exported: engine.plan_cohort
from sweep.runtime import configure_jax, memory_budget_bytes
from sweep.termination import interruptible
from sweep.workload import DeviceData, Workload, eval_batch_size

# the engine's own trace columns (registered in sweep/columns.py); enabled probe metrics add theirs
TRACE_COLUMNS = [
    "step", "lr", "train_loss", "train_acc", "probe_loss", "probe_acc", "grad_norm",
    "sharpness", "precond_sharpness", "threshold", "hvps", "test_loss", "test_acc",
]
# the per-probe values of the engine's own measurements (in this order), before the metrics' ones
PROBE_FIELDS = ("probe_loss", "probe_acc", "grad_norm", "sharpness", "precond_sharpness", "hvps",
                "test_loss", "test_acc")


# RI-Adam's random v0 is drawn from fold_in(PRNGKey(seed), this): a stream no other draw uses.
RI_ADAM_STREAM = 104729

# Chunk length (iterations per compiled scan): at most MAX_CHUNK, fewer when the steps are slow
# (CohortTrainer._auto_chunk). The rates are conservative sustained FLOP/s (measured on the 2-core
# CPU: 40-95 GFLOP/s for WRN steps), so a chunk of steps takes at most ~CHUNK_SECONDS.
MAX_CHUNK = 64
CHUNK_SECONDS = 30.0
CHUNK_FLOPS_PER_S = {"cpu": 2e10, "gpu": 2e12, "tpu": 2e12}
PROBE_HVPS_ESTIMATE = 8  # HVPs of a typical (warm) probe


# ----------------------------------------------------------------------------- programs
# Compiled programs of this process, shared by every cohort with the same program key and the same
# argument shapes (SP and muP, all lrs, warmups, init scales and seeds); across processes jax's
# persistent compilation cache (sweep.runtime) serves them. PROGRAM_TRACES counts how often each
# program was traced (= compiled in this process): the benchmark's compile count.
_PROGRAMS: dict = {}
PROGRAM_TRACES: Counter = Counter()
# param keys whose effect reaches the programs only as data: muP multipliers and the attention
# scale (the model's `consts` collection), Adam's per-layer lr factors (`lr_scale`, ones without
# them), and the initial weights (built by the per-parameterization init program).
_DATA_PARAM_KEYS = ("param.name", "param.sigma_w2", "param.sigma_w2_last", "param.truncation",
                    "param.adam_lr_factors")


def program_key(cfg: Any) -> str:
    """What a cohort program may depend on: the config minus the members' scalars and minus the
    parameterization keys that enter as data. Every cfg value a traced method reads must be in it."""
    d = identity_dict(cfg)
    for key in (*MEMBER_KEYS, *_DATA_PARAM_KEYS):
        drop_key(d, key)
    return content_hash(d)


def _signature(args: Any) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((tuple(np.shape(a)), str(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves)


# ----------------------------------------------------------------------------- probe steps
def probe_mask(cfg: Any) -> np.ndarray:
    """Boolean (steps + 1,): which steps (number of updates done) are probed.
    Step 0 and the last step always; dense for the first `dense_steps`; then every `every` steps,
    or `log_points` log-spaced steps."""
    steps, p = int(cfg.steps), cfg.probe
    mask = np.zeros(steps + 1, bool)
    mask[[0, steps]] = True
    mask[: min(int(p.dense_steps), steps) + 1] = True
    if int(p.log_points) > 0:
        pts = np.unique(np.round(np.logspace(0, math.log10(max(steps, 1)), int(p.log_points))).astype(int))
        mask[pts[pts <= steps]] = True
    else:
        mask[:: int(p.every)] = True
    return mask


def eval_mask(cfg: Any, probes: np.ndarray) -> np.ndarray:
    every = int(cfg.probe.eval_every)
    if every <= 0:
        return probes.copy()
    mask = np.zeros_like(probes)
    mask[::every] = True
    mask[[0, -1]] = True
    return mask


# ----------------------------------------------------------------------------- state
class Member(NamedTuple):
    params: Any
    opt_state: Any
    eigvec: jax.Array
    pc_eigvec: jax.Array
    active: jax.Array
    div_step: jax.Array
    loss0: jax.Array
    over: jax.Array  # consecutive updates with the loss above blowup x loss0
    cat: catapult.CatapultState  # warmup_mode=catapult (Algorithm 3); carried, unused, otherwise


class Carry(NamedTuple):
    members: Member  # every leaf has a leading (K,) axis
    perm: jax.Array  # the current epoch's example order
    rng: jax.Array  # augmentation key


Probe = dict  # column -> value of one probe (PROBE_FIELDS, then the enabled metrics' columns)


def _nan_like_probe(k: int, metrics: Sequence[probes.ProbeMetric] = ()) -> Probe:
    """The values of an unprobed step (NaN; 0 HVPs), with a leading (k,) axis."""
    nan = jnp.full((k,), jnp.nan, jnp.float32)
    out = {name: nan for name in PROBE_FIELDS}
    out["hvps"] = jnp.zeros((k,), jnp.int32)
    return {**out, **probes.placeholders(list(metrics), (k,))}


class UpdateSpec(NamedTuple):
    """The optimizer update a cohort applies, as plain data (for the eta_c search)."""

    name: str  # sgd | adam | gi_adam | ri_adam
    clip: Optional[float]
    lr_scale: Any  # muP-Adam per-layer lr factors (a pytree), or None


# ----------------------------------------------------------------------------- engine
@dataclass
class CohortResult:
    traces: list[pd.DataFrame]
    divergence_step: list[Optional[int]]
    final: dict[str, np.ndarray]  # final_train_loss, final_train_acc, final_test_loss, final_test_acc
    steps_run: list[int]  # per member: updates applied (its divergence step, or all)
    timings: dict[str, float] = field(default_factory=dict)
    catapult: Optional[list[dict]] = None  # warmup_mode=catapult: per member summary fields


class CohortTrainer:
    """Builds the jitted programs of one cohort and runs them."""

    def __init__(self, workload: Workload, plan: CohortPlan, chunk: Optional[int] = None,
                 train_microbatches: int = 1):
        configure_jax()
        self.w, self.plan, self.cfg = workload, plan, plan.cfg
        self.k = plan.size
        self.opt_name = str(self.cfg.optimizer.name)
        self.adaptive = optim.is_adaptive(self.opt_name)
        self.clip = self.cfg.optimizer.get("clip_norm", None)
        self.steps = int(self.cfg.steps)
        self.cosine = str(getattr(self.cfg.decay, "value", self.cfg.decay)) == "cosine"
        self.catapult = str(self.cfg.get("warmup_mode", "linear")) == "catapult"
        n = int(workload.data.x_train.shape[0])
        self.batch = minibatch_size(self.cfg, n)
        self.full_batch = self.batch == n
        self.steps_per_epoch = max(n // self.batch, 1)
        self.probe_dtype = jnp.float64 if self.cfg.probe.dtype == "float64" else jnp.float32
        self.do_sharpness = bool(self.cfg.probe.sharpness)
        self.do_precond = bool(self.cfg.probe.precond_sharpness) and self.adaptive
        self.probe_sequential = _probe_sequential(str(self.cfg.probe.get("members", "auto")))
        self.metrics = probes.enabled_metrics(self.cfg.probe)  # registered diagnostics switched on
        self.trace_columns = TRACE_COLUMNS + [c.name for m in self.metrics for c in m.columns]
        self._chunk_request = chunk  # None: sized from the step's cost when first needed (`chunk`)
        self.augment = self._augment_fn()
        self.lr_scale = None  # muP + Adam factors (uses_lr_factors), else None; host-side value
        self.consts: Optional[dict] = None  # the programs' parameterization data (init_members)
        self.program_key = program_key(self.cfg)
        self.init_key = cohort_key(self.cfg)
        self.compile_s: dict[str, float] = {}
        self._rep_of = None  # while tracing: (K,) index of the first member with the same init
        # the memory budget (memory.budget_mib, an execution setting; runtime.memory_budget_bytes):
        # probe HVPs, the probe batch's loss/gradient and evaluations run over micro-batches that fit
        # it; members probed together (vmap) share it
        budget = memory_budget_bytes(self.cfg)
        self.microbatch_bytes = budget if self.probe_sequential else budget // self.k
        self.probe_microbatch, self.eval_bytes_per_example = self._microbatch_sizes()
        # a member whose backward pass does not fit memory.train_mib takes each step's gradient over
        # equal micro-batches of its minibatch (sweep/cohort_memory.py; execution setting)
        if self.batch % train_microbatches:
            raise ValueError(f"{train_microbatches} training micro-batches do not divide the batch of {self.batch}")
        self.train_microbatch = self.batch // train_microbatches

    # ---------------------------------------------------------------- compiled programs
    def _program(self, name: str, fn: Callable, args: tuple, shared: bool = True, donate: tuple = ()):
        """The compiled program `name` for these argument shapes: from this process's table when a
        cohort with the same program key compiled it (`shared`: fn reads nothing from the config
        that program_key leaves out; else the full cohort key), else traced, lowered and compiled
        here (ahead of time, so compile_s is the compile alone; the persistent cache may serve it)."""
        key = (name, self.program_key if shared else self.init_key, bool(jax.config.jax_enable_x64),
               self.microbatch_bytes, self.train_microbatch, self.chunk if name == "chunk" else None, _signature(args))
        prog = _PROGRAMS.get(key)
        if prog is None:
            t0 = time.perf_counter()

            def traced(*a):
                PROGRAM_TRACES[name] += 1
                return fn(*a)

            prog = jax.jit(traced, donate_argnums=donate).lower(*args).compile()
            _PROGRAMS[key] = prog
            self.compile_s[name] = self.compile_s.get(name, 0.0) + time.perf_counter() - t0
        return prog

    @contextmanager
    def _bound(self, consts: Optional[dict]):
        """While tracing a shared program: the model's constants and Adam's lr factors are the
        program's arguments, not this cohort's Python values."""
        w, lr_scale = self.w, self.lr_scale
        self.w = w.with_consts(consts["model"]) if consts is not None else w
        self.lr_scale = consts["lr_scale"] if consts is not None else lr_scale
        self._rep_of = consts.get("rep_of") if consts is not None else None
        try:
            yield
        finally:
            self.w, self.lr_scale, self._rep_of = w, lr_scale, None

    def _run_shared(self, name: str, fn: Callable, *args, donate: tuple = ()):
        """Run fn(*args) as the shared compiled program `name`, the constants passed as data."""
        if self.consts is None:
            self.init_members()

        def with_consts(*a):
            *rest, consts = a
            with self._bound(consts):
                return fn(*rest)

        full = (*args, self.consts)
        return self._program(name, with_consts, full, donate=donate)(*full)

    @functools.cached_property
    def chunk(self) -> int:
        """Iterations per compiled chunk (the constructor's, else `_auto_chunk`; trainers built only
        to measure lambda0 or eta_c never need it)."""
        return max(1, min(self._chunk_request or self._auto_chunk(), self.steps + 1))

    def _auto_chunk(self) -> int:
        """Iterations per compiled chunk: MAX_CHUNK, fewer when the cohort's steps are estimated
        (forward FLOPs from XLA's cost analysis x 3 x batch x members, plus the probes' HVPs spread
        over the probe interval, at CHUNK_FLOPS_PER_S) to
        take longer than CHUNK_SECONDS, so the progress bar and checkpoints move (WRN-16-4: 2)."""
        x0, y0 = self.w.data.x_train[:1], self.w.data.y_train[:1]
        shapes = self.w.param_shapes()
        try:
            cost = jax.jit(lambda p, x, y: self.w.loss_and_accuracy(p, x, y)[0]).lower(shapes, x0, y0).cost_analysis()
            flops = float((cost or {}).get("flops", 0.0))
        except Exception:  # noqa: BLE001 - a backend without cost analysis: the usual chunk
            return MAX_CHUNK
        step_flops = 3.0 * flops * self.batch * self.k
        if self.do_sharpness or self.do_precond:  # a probe's HVPs (~2 steps each), spread over `every`
            n_probe = int(self.w.data.x_probe.shape[0])
            hvps = PROBE_HVPS_ESTIMATE * (int(self.do_sharpness) + int(self.do_precond))
            every = max(int(self.cfg.probe.every), 1) if int(self.cfg.probe.log_points) <= 0 else 10
            step_flops += 6.0 * flops * n_probe * self.k * hvps / every
        rate = CHUNK_FLOPS_PER_S.get(jax.default_backend(), CHUNK_FLOPS_PER_S["gpu"])
        if step_flops <= 0:
            return MAX_CHUNK
        return int(max(1, min(MAX_CHUNK, CHUNK_SECONDS * rate // step_flops)))

    # ---------------------------------------------------------------- pieces
    def _augment_fn(self) -> Optional[Callable]:
        aug = self.cfg.data.get("augment", None)
        if aug is None or not (aug.flip or aug.crop or aug.mixup):
            return None
        from sweep.data.augment import augment_batch

        return lambda key, x, y: augment_batch(key, x, y, aug, self.w.num_classes)

    def _direction(self, h: optim.Hyper):
        return optim.direction(self.update_rule, h, self.clip)

    @property
    def update_rule(self) -> str:
        """The optax rule applied to the member's optimizer state: GI-Adam seeded from a separate
        batch, and RI-Adam, are plain Adam from a seeded state (init_members puts v0 there)."""
        return "adam" if self.seeded_v0 else self.opt_name

    @property
    def seeded_v0(self) -> bool:
        """Whether init_members puts a nonzero v0 in the Adam state (GI-Adam from B0, RI-Adam)."""
        return self.gi_separate or self.opt_name == "ri_adam"

    @property
    def gi_separate(self) -> bool:
        """GI-Adam whose v0 comes from a batch B0 that is never trained on (the authors' scripts)."""
        return self.opt_name == "gi_adam" and str(self.cfg.optimizer.get("v0_batch", "update")) == "separate"

    def _gi_seed_batch(self) -> tuple[jax.Array, jax.Array]:
        """B0: the whole training set for full-batch runs (B0 = B1, as in the authors' GD runs), else
        `batch` examples drawn with a key of their own (not the training stream's)."""
        d = self.w.data
        if self.full_batch:
            return d.x_train, d.y_train
        key = jax.random.fold_in(jax.random.PRNGKey(int(self.cfg.data_seed)), 2**30)
        idx = jax.random.permutation(key, d.x_train.shape[0])[: self.batch]
        return d.x_train[idx], d.y_train[idx]

    def update_spec(self) -> UpdateSpec:
        """The members' optimizer update (after `init_members`, which fixes the lr factors)."""
        if self.consts is None:
            self.init_members()
        return UpdateSpec(self.opt_name, self.clip, self.lr_scale)

    @property
    def uses_lr_factors(self) -> bool:
        """muP + Adam with the per-layer learning-rate factors of Appendix D.2.1."""
        return (self.adaptive and self.cfg.param.name == "mup"
                and bool(self.cfg.param.get("adam_lr_factors", False)))

    def init_members(self) -> Member:
        """Initialize every member (vmapped over seeds), apply init scales, build optimizer state."""
        x0 = self.w.prepare(self.w.data.x_train[:2])

        def one(seed, scale, h, eta0):
            variables = self.w.model.init(jax.random.PRNGKey(seed), x0)
            params = jax.tree_util.tree_map_with_path(
                lambda path, p: p * scale if _is_weight(path) else p, variables["params"])
            flat, _ = ravel_pytree(params)
            v0 = jax.random.normal(jax.random.PRNGKey(seed + 7919), flat.shape, self.probe_dtype)
            opt_state = self._direction(h).init(params)
            if self.seeded_v0:
                xb, yb = self._gi_seed_batch()
                g0 = jax.grad(lambda q: self.w.loss_and_accuracy(q, xb, yb)[0])(params)
                nu0 = (optim.random_second_moment(g0, jax.random.fold_in(jax.random.PRNGKey(seed), RI_ADAM_STREAM))
                       if self.opt_name == "ri_adam" else jax.tree.map(jnp.square, g0))
                opt_state = optim.with_adam_nu(opt_state, nu0)
            member = Member(params, opt_state, v0, v0,
                            jnp.asarray(True), jnp.asarray(-1, jnp.int32), jnp.asarray(jnp.nan, jnp.float32),
                            jnp.asarray(0, jnp.int32), catapult.init_state(eta0))
            return member, variables.get("lr_scale"), variables.get("consts")

        args = (jnp.asarray(self.plan.seeds), jnp.asarray(self.plan.init_scales), self.plan.hyper,
                jnp.asarray(self.plan.catapult_eta0, jnp.float32))
        members, lr_scale, consts = self._program("init", jax.vmap(one), args, shared=False)(*args)
        first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731 - same for every member
        if self.uses_lr_factors:
            self.lr_scale = first(lr_scale)
        # data of the shared programs: Adam always gets a factor tree (ones unless muP's factors are
        # on; x * 1.0 is exact), so SP-Adam and muP-Adam cohorts run the same program
        scale = self.lr_scale
        if scale is None and self.adaptive:
            scale = jax.tree.map(lambda p: jnp.ones((), jnp.float32), first(members.params))
        self.consts = {"model": None if consts is None else first(consts), "lr_scale": scale,
                       "rep_of": jnp.asarray(self._first_same_init(), jnp.int32)}
        return members

    def _flat_loss(self, params: Any, x: jax.Array, y: jax.Array):
        """The loss as a function of flat parameters, computed in the probe dtype. Parameters are
        cast *before* ravelling (unravel restores the leaves' own dtypes) and images are
        standardized in that dtype too, since layers compute in their input's dtype."""
        chunk_loss, flat, xin = self._flat_chunk_loss(params, x)
        return (lambda f: chunk_loss(f, xin, y)), flat

    def _flat_chunk_loss(self, params: Any, x: jax.Array):
        """(chunk_loss(flat, x_chunk, y_chunk), flat, x prepared in the probe dtype)."""
        dt = self.probe_dtype
        flat, unravel = ravel_pytree(jax.tree.map(lambda p: p.astype(dt), params))
        tokens = jnp.issubdtype(x.dtype, jnp.integer) and x.dtype != jnp.uint8
        xin = x if tokens else self.w.prepare(x).astype(dt)

        def chunk_loss(f, xb, yb):
            loss, _ = self.w.loss_and_accuracy(unravel(f), xb, yb)
            return loss.astype(dt)

        return chunk_loss, flat, xin

    def _first_same_init(self) -> np.ndarray:
        """(K,) for each member, the first member with the same initial state and probe scalars
        (seed, init scale, momentum, b1, b2, eps): their step-0 probes are identical."""
        h = self.plan.hyper
        keys = list(zip(self.plan.seeds.tolist(), self.plan.init_scales.tolist(),
                        *(np.asarray(v).tolist() for v in (h.momentum, h.b1, h.b2, h.eps))))
        first: dict = {}
        return np.asarray([first.setdefault(key, i) for i, key in enumerate(keys)])

    def _unravel_like(self, params: Any, flat: jax.Array) -> Any:
        return ravel_pytree(jax.tree.map(lambda p: p.astype(flat.dtype), params))[1](flat)

    def _microbatch_sizes(self) -> tuple[int, float]:
        """(examples per probe micro-batch, forward bytes per example) within the memory budget.
        Bytes per example: the growth of the loss's intermediate values from 1 to 2 examples
        (make_jaxpr, nothing runs); an HVP keeps ~3x a forward pass's values."""
        d = self.w.data
        n = int(d.x_probe.shape[0])
        shapes = self.w.param_shapes()
        fwd = [curvature.activation_bytes(lambda p, x, y: self.w.loss_and_accuracy(p, x, y)[0], shapes,
                                          d.x_probe[:b], d.y_probe[:b]) for b in (1, 2)]
        per_example = max(fwd[1] - fwd[0], 1)
        if self.microbatch_bytes <= 0:  # memory.budget_mib=0: whole batches
            return n, 0.0
        return curvature.examples_per_microbatch(n, 3 * per_example, self.microbatch_bytes), float(per_example)

    def _eval_batch(self, x: jax.Array, members: int = 1) -> int:
        """Evaluation chunk: the usual one, or smaller when the memory budget bounds it (shared by
        `members` evaluated together under vmap)."""
        b = _eval_chunk(x)
        if self.microbatch_bytes > 0:
            n = int(x.shape[0])
            b = min(b, curvature.examples_per_microbatch(n, self.eval_bytes_per_example,
                                                         self.microbatch_bytes // max(members, 1)))
        return b

    def _probe_loss_grad(self, params: Any, x: jax.Array, y: jax.Array):
        """((loss, accuracy), gradient) on the probe batch, within the memory budget."""
        return self._mean_loss_grad(params, x, y, self.probe_microbatch)

    def _mean_loss_grad(self, params: Any, x: jax.Array, y: jax.Array, size: int, train: bool = False):
        """((loss, accuracy), gradient) on (x, y), whole or over equal micro-batches of `size`
        examples (the mean of their means is the batch mean; a scan keeps one micro-batch's
        intermediates at a time)."""
        fn = jax.value_and_grad(self.w.loss_and_accuracy, has_aux=True)
        if size >= x.shape[0]:
            return fn(params, x, y, train)
        k = x.shape[0] // size
        xb, yb = x.reshape((k, size) + x.shape[1:]), y.reshape((k, size) + y.shape[1:])

        def body(acc, b):
            return jax.tree.map(jnp.add, acc, fn(params, b[0], b[1], train)), None

        zero = jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype),
                            jax.eval_shape(lambda p, a, b: fn(p, a, b, train), params, xb[0], yb[0]))
        total, _ = jax.lax.scan(body, zero, (xb, yb))
        return jax.tree.map(lambda a: a / k, total)

    def _probe_member(self, m: Member, h: optim.Hyper, data: DeviceData, first_nu: Any,
                      do_eval: jax.Array, step: jax.Array) -> tuple[Probe, jax.Array, jax.Array]:
        """All measurements of one member at one probe step (on the fixed measurement batch)."""
        done = ~m.active
        curv = self.do_sharpness or self.do_precond or bool(self.metrics)
        if curv:
            chunk_loss, flat, xin = self._flat_chunk_loss(m.params, data.x_probe)
        micro = self.probe_microbatch < data.x_probe.shape[0]
        if curv and not micro and self.probe_dtype == jnp.float32:
            # one linearization gives the probe batch's loss, accuracy and gradient (its primal)
            # and every HVP (its tangent): the forward/backward pass runs once per probe
            def loss_acc_grad(f):
                return jax.value_and_grad(lambda g: _cast_loss(self.w.loss_and_accuracy(
                    self._unravel_like(m.params, g), xin, data.y_probe), flat.dtype), has_aux=True)(f)

            ((loss, acc), flat_grad), lin = jax.linearize(loss_acc_grad, flat)
            gnorm = jnp.linalg.norm(flat_grad)
            make_hvp = lambda: (lambda v: lin(v)[1])  # noqa: E731
        else:
            (loss, acc), grads = self._probe_loss_grad(m.params, data.x_probe, data.y_probe)
            gnorm = optax_global_norm(grads)
            if curv and micro:  # bounded memory: recomputed per micro-batch
                make_hvp = lambda: curvature.microbatched(  # noqa: E731
                    chunk_loss, xin, data.y_probe, flat, self.probe_microbatch).hvp
            elif curv:  # the primal computed once per probe (jax.linearize)
                make_hvp = lambda: curvature.linearized_hvp(lambda f: chunk_loss(f, xin, data.y_probe), flat)  # noqa: E731
        iters, tol = int(self.cfg.probe.lanczos_iters), float(self.cfg.probe.lanczos_tol)
        stop = str(self.cfg.probe.get("lanczos_stop", "residual"))
        sharp, hvps, vec, pc_vec = jnp.nan, jnp.asarray(0, jnp.int32), m.eigvec, m.pc_eigvec
        pc_sharp = jnp.asarray(jnp.nan, jnp.float32)
        if self.do_sharpness:
            eig = curvature.lanczos_unless_done(make_hvp, m.eigvec, iters, tol, done, stop=stop)
            sharp, hvps, vec = eig.value.astype(jnp.float32), eig.matvecs.astype(jnp.int32), eig.vector
        if self.do_precond:
            inv_sqrt = 1.0 / jnp.sqrt(self._preconditioner(m, h, first_nu, step).astype(flat.dtype))

            def make_pc():
                hv = make_hvp()
                return lambda v: inv_sqrt * hv(inv_sqrt * v)

            eig = curvature.lanczos_unless_done(make_pc, m.pc_eigvec, iters, tol, done, stop=stop)
            pc_sharp, pc_vec = eig.value.astype(jnp.float32), eig.vector
            hvps = hvps + eig.matvecs.astype(jnp.int32)

        def test_eval(_):
            return self.w.evaluate(m.params, data.x_test, data.y_test, self._eval_batch(data.x_test))

        nan = jnp.asarray(jnp.nan, jnp.float32)
        test_loss, test_acc = jax.lax.cond(do_eval, test_eval, lambda _: (nan, nan), None)
        probe = dict(zip(PROBE_FIELDS, (loss, acc, gnorm, jnp.asarray(sharp, jnp.float32), pc_sharp, hvps,
                                        test_loss, test_acc)))
        if self.metrics:
            probe.update(self._metric_values(m, data, chunk_loss, flat, xin, make_hvp, done))
        # every probe field is float32 (int32 for counts), whatever x64 mode made of them
        probe = jax.tree.map(lambda v: jnp.where(m.active, v, jnp.nan).astype(jnp.float32)
                             if v.dtype != jnp.int32 else v, probe)
        return probe, vec, pc_vec

    def _metric_values(self, m: Member, data: DeviceData, chunk_loss: Callable, flat: jax.Array,
                       xin: jax.Array, make_hvp: Callable, done: jax.Array) -> dict:
        """The enabled registered metrics (sweep/probes.py) of one member; skipped once it froze."""
        unravel = lambda f: self._unravel_like(m.params, f)  # noqa: E731
        inputs = probes.ProbeInputs(
            params=m.params, flat=flat, unravel=unravel,
            loss_of_flat=lambda f: chunk_loss(f, xin, data.y_probe), make_hvp=make_hvp,
            x=xin, y=data.y_probe, loss_and_accuracy=self.w.loss_and_accuracy, apply=self.w.apply,
            microbatch=int(self.probe_microbatch), key=jax.random.PRNGKey(20240917),
            probe=self.cfg.probe, task=str(self.w.dataset.task), num_classes=int(self.w.num_classes))
        skipped = jax.tree.map(lambda a: a[0], probes.placeholders(self.metrics, (1,)))
        return jax.lax.cond(done, lambda: skipped, lambda: probes.compute_all(self.metrics, inputs))

    def _first_update_nu(self, m: Member, h: optim.Hyper, data: DeviceData) -> Any:
        """The second moment the first update would leave if its gradient were the measurement
        batch's g: Adam v_1 = (1 - b2) g^2; GI-Adam seeded from a separate batch B0 (v_0 = g_B0^2 in
        the state) and RI-Adam (a random v_0) v_1 = b2 v_0 + (1 - b2) g^2; GI-Adam seeded by the
        update v_1 = g^2."""
        if self.probe_microbatch < data.x_probe.shape[0]:  # bounded memory (memory budget)
            g = self._probe_loss_grad(m.params, data.x_probe, data.y_probe)[1]
        else:
            g = jax.grad(lambda q: self.w.loss_and_accuracy(q, data.x_probe, data.y_probe)[0])(m.params)
        if self.seeded_v0:
            nu0 = optim.adam_state(m.opt_state).nu
            return jax.tree.map(lambda n, x: h.b2 * n + (1.0 - h.b2) * jnp.square(x), nu0, g)
        factor = 1.0 if self.opt_name == "gi_adam" else (1.0 - h.b2)
        return jax.tree.map(lambda x: factor * jnp.square(x), g)

    def _preconditioner(self, m: Member, h: optim.Hyper, first_nu: Any, step: jax.Array) -> jax.Array:
        """Adam's P at probe step `step`, from the optimizer state after `step` updates. At step 0
        there is no second moment yet; we use the one the first update will produce
        (`_first_update_nu`), so lambda0 of P^-1 H is the curvature the first step sees."""
        st = optim.adam_state(m.opt_state)
        nu = jax.tree.map(lambda n, n1: jnp.where(step == 0, n1, n), st.nu, first_nu)
        count = jnp.where(step == 0, 1, st.count)
        return ravel_pytree(optim.adam_preconditioner(nu, count, h, self.lr_scale))[0]

    def _train_member(self, m: Member, h: optim.Hyper, x: jax.Array, y: jax.Array, step: jax.Array):
        """One update of one member on the shared minibatch; frozen members keep their state."""
        (loss, acc), grads = self._mean_loss_grad(m.params, x, y, self.train_microbatch, True)
        loss0 = jnp.where(jnp.isnan(m.loss0), loss, m.loss0)
        over, bad = divergence_check(loss, loss0, m.over, self.cfg.outcome)
        tx = self._direction(h)
        direction, opt_state = tx.update(grads, m.opt_state, m.params)
        lr_t = self._learning_rate(m.cat, h, step + 1)
        if self.lr_scale is not None:
            direction = jax.tree.map(lambda d, s: d * s, direction, self.lr_scale)
        new_params = jax.tree.map(lambda p, d: p - lr_t * d, m.params, direction)
        keep = m.active & ~bad
        params, opt_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old),
                                         (new_params, opt_state), (m.params, m.opt_state))
        div_step = jnp.where(m.active & bad, step, m.div_step)
        member = m._replace(params=params, opt_state=opt_state, active=keep, div_step=div_step, loss0=loss0,
                            over=over)
        return member, jnp.where(m.active, loss, jnp.nan), jnp.where(m.active, acc, jnp.nan)

    def _learning_rate(self, cat: catapult.CatapultState, h: optim.Hyper, t: jax.Array) -> jax.Array:
        """The lr of update t for one member: the schedule (eq. 7/8), or under warmup_mode=catapult
        the member's catapult eta until it reaches eta_trgt, then the post-warmup schedule."""
        if self.catapult:
            return catapult.learning_rate(cat, t, h, self.steps, self.cosine)
        return optim.learning_rate(t, h, self.steps, self.cosine)

    def _catapult_stage(self, ms: Member, h: optim.Hyper, data: DeviceData, x: jax.Array, y: jax.Array,
                        step: jax.Array) -> Member:
        """Algorithm 3 before update step + 1, for the whole cohort (sweep/catapult.py). The loss
        comparison and the eta_c search each sit behind an UNBATCHED lax.cond (any member warming /
        any member needing a search), so steps where no member needs them cost nothing extra; the
        search is vmapped with the members that need none disabled, and each member keeps its own
        result only. Frozen (diverged) members never search. `x, y`: this update's minibatch
        (catapult.loss=batch)."""
        k, ec, cc = self.k, self.cfg.eta_c, self.cfg.catapult
        batch = (x, y) if str(cc.loss) == "batch" else (data.x_probe, data.y_probe)
        from_state = str(cc.direction) == "state"

        def loss_fn(p, b):
            return self.w.loss_and_accuracy(p, b[0], b[1])[0]

        def losses(params):
            return jax.vmap(lambda p: loss_fn(p, batch).astype(jnp.float32))(params)

        warm = catapult.warming(ms.cat, ms.active)
        loss_now = jax.lax.cond(jnp.any(warm), losses, lambda _: jnp.full((k,), jnp.nan, jnp.float32), ms.params)
        need = catapult.needs_search(ms.cat, ms.active, loss_now)

        direction_name = self.update_rule if from_state else self.opt_name  # fresh: the optimizer's own first step

        def search(args):
            def one(p, st, hh, eta0, enabled):
                r = eta_c.member_search(
                    loss_fn, p, hh, batch, direction_name, eta0, hh.lr, delta=float(ec.delta), clip_norm=self.clip,
                    lr_scale=self.lr_scale, max_doublings=int(ec.max_doublings),
                    max_bisections=int(ec.max_bisections), enabled=enabled, opt_state=st if from_state else None)
                return r.eta_c.astype(jnp.float32), r.forward_passes.astype(jnp.int32)

            return jax.vmap(one)(*args)

        def skip(args):
            return args[3], jnp.zeros((k,), jnp.int32)

        found, passes = jax.lax.cond(jnp.any(need), search, skip, (ms.params, ms.opt_state, h, ms.cat.lr, need))
        return ms._replace(cat=catapult.advance(ms.cat, need, loss_now, found, passes, h.lr, step + 1))

    def _minibatch(self, carry: Carry, data: DeviceData, step: jax.Array):
        if self.full_batch:
            x, y, perm = data.x_train, data.y_train, carry.perm
        else:
            pos = step % self.steps_per_epoch
            epoch = step // self.steps_per_epoch
            n = data.x_train.shape[0]
            key = jax.random.fold_in(jax.random.PRNGKey(int(self.cfg.data_seed)), epoch)
            perm = jax.lax.cond(pos == 0, lambda: jax.random.permutation(key, n).astype(jnp.int32), lambda: carry.perm)
            idx = jax.lax.dynamic_slice(perm, (pos * self.batch,), (self.batch,))
            x, y = data.x_train[idx], data.y_train[idx]
        if self.augment is not None:
            x, y = self.augment(jax.random.fold_in(carry.rng, step), self.w.prepare(x), y)
        return x, y, perm

    # ---------------------------------------------------------------- the scanned iteration
    def _iteration(self, carry: Carry, step: jax.Array, data: DeviceData, h: optim.Hyper,
                   probes: jax.Array, evals: jax.Array):
        members = carry.members
        k = self.k

        def probe_one(args):
            m, hh = args
            first_nu = self._first_update_nu(m, hh, data) if self.do_precond else None
            return self._probe_member(m, hh, data, first_nu, evals[step], step)

        def probe_all(ms: Member):
            if self.probe_sequential:  # each member's Lanczos stops at its own convergence
                return jax.lax.map(probe_one, (ms, h))
            return jax.vmap(probe_one)((ms, h))

        def probe_first_of_each_init(ms: Member):
            """Step 0: members with the same initialization (seed, init scale) and the same probe
            scalars are the same network with the same warm-start vector: probe the first of each
            such group and copy its row (the cold start is the dearest probe of a run)."""
            rep_of = self._rep_of
            is_rep = rep_of == jnp.arange(k)

            def one(args):
                m, hh, first = args
                skip = lambda a: (jax.tree.map(lambda x: x[0], _nan_like_probe(1, self.metrics)), a[0].eigvec,  # noqa: E731
                                  a[0].pc_eigvec)
                return jax.lax.cond(first, probe_one, skip, (m, hh))

            out = jax.lax.map(one, (ms, h, is_rep))
            return jax.tree.map(lambda a: a[rep_of], out)

        def do_probe(ms: Member):
            if self.probe_sequential and self._rep_of is not None:
                return jax.lax.cond(step == 0, probe_first_of_each_init, probe_all, ms)
            return probe_all(ms)

        def no_probe(ms: Member):
            return _nan_like_probe(k, self.metrics), ms.eigvec, ms.pc_eigvec

        probe, vec, pc_vec = jax.lax.cond(probes[step], do_probe, no_probe, members)
        members = members._replace(eigvec=vec, pc_eigvec=pc_vec)
        members = members._replace(loss0=jnp.where(step == 0, probe["probe_loss"], members.loss0))

        def do_update(c: Carry):
            x, y, perm = self._minibatch(c, data, step)
            ms = self._catapult_stage(c.members, h, data, x, y, step) if self.catapult else c.members
            ms, loss, acc = jax.vmap(self._train_member, in_axes=(0, 0, None, None, None))(ms, h, x, y, step)
            return Carry(ms, perm, c.rng), loss, acc

        def no_update(c: Carry):
            nan = jnp.full((k,), jnp.nan, jnp.float32)
            return c, nan, nan

        carry, loss, acc = jax.lax.cond(step < self.steps, do_update, no_update, carry._replace(members=members))
        # the lr update step + 1 used (catapult: from the state the update read)
        lr_next = jax.vmap(lambda cat, hh: self._learning_rate(cat, hh, step + 1))(carry.members.cat, h)
        threshold = jax.vmap(lambda lr, hh: optim.instability_threshold(self.opt_name, lr, hh))(lr_next, h)
        out = {"lr": lr_next, "train_loss": loss, "train_acc": acc, "threshold": threshold, **probe}
        return carry, out

    def _chunk_fn(self) -> Callable:
        """(carry, start, data, hyper, probes, evals) -> (carry, per-iteration outputs) of one chunk;
        the compiled program is shared (see `_program`), `carry` is donated."""
        total = self.steps + 1

        def run_chunk(carry: Carry, start: jax.Array, data: DeviceData, h: optim.Hyper,
                      probes: jax.Array, evals: jax.Array):
            def body(c, i):
                step = (start + i).astype(jnp.int32)
                safe = jnp.minimum(step, total - 1)

                def live(c):
                    return self._iteration(c, safe, data, h, probes, evals)

                def pad(c):
                    nan = jnp.full((self.k,), jnp.nan, jnp.float32)
                    out = {"lr": nan, "train_loss": nan, "train_acc": nan, "threshold": nan,
                           **_nan_like_probe(self.k, self.metrics)}
                    return c, out

                return jax.lax.cond(step < total, live, pad, c)

            return jax.lax.scan(body, carry, jnp.arange(self.chunk))

        return lambda *args: self._run_shared("chunk", run_chunk, *args, donate=(0,))

    def final_metrics(self, members: Member) -> dict[str, np.ndarray]:
        """Train loss/accuracy on up to probe.final_train_examples examples and test metrics."""

        def one(params, d: DeviceData):
            tl, ta = self.w.evaluate(params, d.x_final, d.y_final, self._eval_batch(d.x_final, self.k))
            sl, sa = self.w.evaluate(params, d.x_test, d.y_test, self._eval_batch(d.x_test, self.k))
            return tl, ta, sl, sa

        tl, ta, sl, sa = jax.device_get(self._run_shared("final", jax.vmap(one, in_axes=(0, None)),
                                                         members.params, self.w.data))
        return {"final_train_loss": tl, "final_train_acc": ta, "final_test_loss": sl, "final_test_acc": sa}

    def initial_sharpness(self) -> np.ndarray:
        """lambda0 of every member at initialization: on the measurement batch, or (probe.lambda0_batches
        = N) the mean over N training batches, the authors' convention."""
        members = self.init_members()
        iters = max(int(self.cfg.probe.lanczos_iters), 30)
        tol = float(self.cfg.probe.lanczos_tol)
        batches = self._lambda0_batches()
        values = []
        for x, y in batches:
            n = int(x.shape[0])
            size = (self.probe_microbatch if x is self.w.data.x_probe else
                    curvature.examples_per_microbatch(n, 3 * self.eval_bytes_per_example, self.microbatch_bytes))

            def one(m: Member, x: jax.Array, y: jax.Array, size: int = size):
                if size < x.shape[0]:  # bounded memory (memory budget)
                    chunk_loss, flat, xin = self._flat_chunk_loss(m.params, x)
                    return curvature.microbatched_sharpness(chunk_loss, xin, y, flat, size, m.eigvec, iters, tol).value
                loss_of_flat, flat = self._flat_loss(m.params, x, y)
                return curvature.sharpness(loss_of_flat, flat, m.eigvec, iters, tol).value

            prog = jax.vmap(one, in_axes=(0, None, None))
            values.append(np.asarray(jax.device_get(self._run_shared(f"lambda0_{iters}_{size}", prog, members, x, y))))
        return np.mean(values, axis=0)

    def _lambda0_batches(self) -> list[tuple[jax.Array, jax.Array]]:
        """The batches lambda0 is averaged over: the measurement batch (probe.lambda0_batches = 0), the
        whole training set for a full-batch run, else N batches of the training batch size drawn
        without replacement each, from a key of their own (not the training stream's or B0's)."""
        d = self.w.data
        count = int(self.cfg.probe.get("lambda0_batches", 0) or 0)
        if count == 0:
            return [(d.x_probe, d.y_probe)]
        if self.full_batch:
            return [(d.x_train, d.y_train)]
        key = jax.random.fold_in(jax.random.PRNGKey(int(self.cfg.data_seed)), 2**30 + 1)
        n = int(d.x_train.shape[0])
        out = []
        for i in range(count):
            idx = jax.random.permutation(jax.random.fold_in(key, i), n)[: self.batch]
            out.append((d.x_train[idx], d.y_train[idx]))
        return out

    # ---------------------------------------------------------------- driver
    def layout_fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the cohort's shapes and every member's scalars.
        A checkpoint of another member list (e.g. some runs finished meanwhile) is not reused."""
        h = hashlib.sha256(cohort_key(self.cfg).encode())
        h.update(f"{self.steps}:{self.chunk}:{self.k}".encode())
        for arr in (self.plan.seeds, self.plan.init_scales, self.plan.catapult_eta0, *self.plan.hyper):
            h.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
        return h.hexdigest()[:20]

    def initial_state(self) -> Carry:
        n = int(self.w.data.x_train.shape[0])
        members = self.init_members()
        rng = jax.random.PRNGKey(int(self.cfg.data_seed) + 1_000_003)
        return Carry(members, jnp.arange(n, dtype=jnp.int32), rng)

    def run(self, carry: Optional[Carry] = None, start: int = 0, rows: Optional[list] = None,
            on_chunk: Optional[Callable[[Carry, int, list], None]] = None,
            progress: Optional[Callable[[int], None]] = None) -> CohortResult:
        """Train to the end (or until every member froze). `carry/start/rows` resume a saved state;
        `on_chunk(carry, next_start, rows)` is called after each chunk (checkpointing)."""
        t0 = time.perf_counter()
        if carry is None:
            carry = self.initial_state()
        elif self.consts is None:  # resumed: rebuild the constants
            self.init_members()
        rows = list(rows or [])
        probes_np = probe_mask(self.cfg)
        probes, evals = jnp.asarray(probes_np), jnp.asarray(eval_mask(self.cfg, probes_np))
        chunk_fn = self._chunk_fn()
        total = self.steps + 1
        compile_s, first = 0.0, True
        i = start

        def advance(carry: Carry, i: int):
            carry, out = chunk_fn(carry, jnp.asarray(i), self.w.data, self.plan.hyper, probes, evals)
            return carry, jax.device_get(out), np.asarray(jax.device_get(carry.members.active))

        while i < total:
            tc = time.perf_counter()
            carry, out, active = interruptible(advance, carry, i)  # SIGTERM acts within a chunk
            if first:
                compile_s, first = time.perf_counter() - tc, False
            n_live = min(self.chunk, total - i)
            for j in range(n_live):
                step = i + j
                if probes_np[step]:
                    rows.append((step, {key: np.asarray(v[j]) for key, v in out.items()}))
            i += self.chunk
            if progress:
                progress(min(i, total))
            if on_chunk:
                on_chunk(carry, i, rows)
            if not active.any():
                break
        final = interruptible(self.final_metrics, carry.members)
        div = np.asarray(jax.device_get(carry.members.div_step))
        divergence = [int(s) if s >= 0 else None for s in div]
        # A member's trace ends at its divergence step (the probe row of that step is its last real
        # one): when it trains stops for the others does not change its record.
        traces = [self._member_trace(rows, m, divergence[m]) for m in range(self.k)]
        elapsed = time.perf_counter() - t0
        return CohortResult(
            catapult=catapult.summary(carry.members.cat) if self.catapult else None,
            traces=traces,
            divergence_step=divergence,
            final={k: np.asarray(v) for k, v in final.items()},
            steps_run=[self.steps if d is None else d for d in divergence],
            timings={"train_s": elapsed, "first_chunk_s": compile_s, "steps": float(min(i, total) - 1),
                     "compile_s": float(sum(self.compile_s.values())),
                     "compile_chunk_s": float(self.compile_s.get("chunk", 0.0))},
        )

    def _member_trace(self, rows: list, m: int, last_step: Optional[int] = None) -> pd.DataFrame:
        records = []
        for step, vals in rows:
            if last_step is not None and step > last_step:
                break
            rec = {"step": step}
            for key in self.trace_columns[1:]:
                rec[key] = vals[key][m].item() if key in vals else np.nan
            records.append(rec)
        df = pd.DataFrame.from_records(records, columns=self.trace_columns)
        ints = {c: "int64" for c in self.trace_columns if columns.get(c) is not None and columns.get(c).integer}
        return df.astype(ints)


def minibatch_size(cfg: Any, n_train: int) -> int:
    """Examples per update: batch_size, or the whole training set (full-batch GD) when it is 0 or
    at least the set's size."""
    bs = int(cfg.batch_size)
    return n_train if bs <= 0 or bs >= n_train else bs


def divergence_check(loss: jax.Array, loss0: jax.Array, over: jax.Array, outcome: Any):
    """(new over-count, diverged?) for one update. Diverged: the loss is NaN/inf, the paper's only
    criterion; with `outcome.blowup` set, also when the loss has stayed above blowup x loss0 for
    `blowup_patience` consecutive updates (a blow-up that does not come back; a cheap early stop)."""
    bad = ~jnp.isfinite(loss)
    blowup = outcome.get("blowup", None)
    if blowup is None:
        return over, bad
    over = jnp.where(loss > float(blowup) * loss0, over + 1, 0).astype(jnp.int32)
    return over, bad | (over >= int(outcome.get("blowup_patience", 100)))


def _probe_sequential(mode: str) -> bool:
    """How cohort members are probed: `vmap` (one batched Lanczos; best on accelerators) or `map`
    (one member after another, each stopping at its own convergence with a smaller working set;
    on a 2-core CPU a 16-member cohort probe took 20.4 s vmapped vs 13.4 s as 16 single probes).
    `auto` maps on CPU and vmaps elsewhere."""
    if mode == "auto":
        return jax.default_backend() == "cpu"
    return mode == "map"


def _cast_loss(loss_acc: tuple, dtype: Any) -> tuple:
    return loss_acc[0].astype(dtype), loss_acc[1]


def optax_global_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def _is_weight(path: tuple) -> bool:
    """Kernels and embeddings are weights (scaled by init_scale); biases and norm scales are not."""
    name = getattr(path[-1], "key", str(path[-1]))
    return name in ("kernel", "embedding")


def _eval_chunk(x: jax.Array) -> int:
    return eval_batch_size(int(x.shape[0]))
