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

The traced math is module-level pure functions of a frozen context (sweep/cohort_context.py):
member_step (init, update, catapult stage), member_probe (measurements, lambda0) and iteration (the
scanned step, the final evaluation). This module only compiles them (one table of programs shared by
cohorts with the same program key), scans the chunks and collects the traces.
"""
from __future__ import annotations

import functools
import hashlib
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from sweep import catapult, columns, curvature, iteration
from sweep.cohort_context import Context, build_context, first_same_init, minibatch_size  # noqa: F401 - re-exported
from sweep.identity import MEMBER_KEYS, cohort_key, content_hash, drop_key, identity_dict
from sweep.member_probe import PROBE_FIELDS, member_lambda0  # noqa: F401 - re-exported
from sweep.member_step import Carry, Member, divergence_check, init_member  # noqa: F401 - re-exported
from sweep.plan import CohortPlan, plan_cohort  # noqa: F401 - re-exported: engine.plan_cohort
from sweep.runtime import configure_jax
from sweep.termination import interruptible
from sweep.workload import Workload

# the engine's own trace columns (registered in sweep/columns.py); enabled probe metrics add theirs
TRACE_COLUMNS = [
    "step", "lr", "train_loss", "train_acc", "probe_loss", "probe_acc", "grad_norm",
    "sharpness", "precond_sharpness", "threshold", "hvps", "test_loss", "test_acc",
]

# Chunk length (iterations per compiled scan): at most MAX_CHUNK, fewer when the steps are slow
# (`auto_chunk`). The rates are conservative sustained FLOP/s (measured on the 2-core
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


class UpdateSpec(NamedTuple):
    """The optimizer update a cohort applies, as plain data (for the eta_c search)."""

    optimizer: Any  # its spec (sweep/optimizers.py)
    clip: Optional[float]
    lr_scale: Any  # muP-Adam per-layer lr factors (a pytree), or None


@dataclass
class CohortResult:
    traces: list[pd.DataFrame]
    divergence_step: list[Optional[int]]
    final: dict[str, np.ndarray]  # final_train_loss, final_train_acc, final_test_loss, final_test_acc
    steps_run: list[int]  # per member: updates applied (its divergence step, or all)
    timings: dict[str, float] = field(default_factory=dict)
    catapult: Optional[list[dict]] = None  # warmup_mode=catapult: per member summary fields


# ----------------------------------------------------------------------------- compiling
def cohort_context(workload: Workload, plan: CohortPlan, train_microbatches: int = 1) -> Context:
    configure_jax()
    return build_context(workload, plan, program_key(plan.cfg), train_microbatches)


def compiled(ctx: Context, name: str, fn: Callable, args: tuple, shared: bool = True, donate: tuple = (),
             chunk: Optional[int] = None, compile_s: Optional[dict] = None):
    """The compiled program `name` for these argument shapes: from this process's table when a cohort
    with the same program key compiled it (`shared`: fn reads nothing from the config that program_key
    leaves out; else the full cohort key), else traced, lowered and compiled here (ahead of time, so
    compile_s gets the compile alone; the persistent cache may serve it)."""
    key = (name, ctx.program_key if shared else ctx.init_key, bool(jax.config.jax_enable_x64),
           ctx.microbatch_bytes, ctx.train_microbatch, chunk, _signature(args))
    prog = _PROGRAMS.get(key)
    if prog is None:
        t0 = time.perf_counter()

        def traced(*a):
            PROGRAM_TRACES[name] += 1
            return fn(*a)

        prog = jax.jit(traced, donate_argnums=donate).lower(*args).compile()
        _PROGRAMS[key] = prog
        if compile_s is not None:
            compile_s[name] = compile_s.get(name, 0.0) + time.perf_counter() - t0
    return prog


def run_shared(ctx: Context, consts: dict, name: str, fn: Callable, *args, donate: tuple = (),
               chunk: Optional[int] = None, compile_s: Optional[dict] = None):
    """fn(ctx bound to the constants, *args) as the shared compiled program `name`: the model's
    constants, Adam's lr factors and the init groups are the program's last argument (data)."""
    def with_consts(*a):
        *rest, c = a
        return fn(ctx.bind(c), *rest)

    full = (*args, consts)
    return compiled(ctx, name, with_consts, full, donate=donate, chunk=chunk, compile_s=compile_s)(*full)


def initialize(ctx: Context, plan: CohortPlan, compile_s: Optional[dict] = None) -> tuple[Member, dict]:
    """(every member initialized, vmapped over seeds; the shared programs' constants)."""
    args = (jnp.asarray(plan.seeds), jnp.asarray(plan.init_scales), plan.hyper,
            jnp.asarray(plan.catapult_eta0, jnp.float32))
    prog = compiled(ctx, "init", jax.vmap(functools.partial(init_member, ctx)), args, shared=False,
                    compile_s=compile_s)
    members, lr_scale, model_consts = prog(*args)
    first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731 - same for every member
    scale = first(lr_scale) if ctx.uses_lr_factors else None
    # Adam always gets a factor tree (ones unless muP's factors are on; x * 1.0 is exact), so SP-Adam
    # and muP-Adam cohorts run the same program
    if scale is None and ctx.optimizer.adaptive:
        scale = jax.tree.map(lambda p: jnp.ones((), jnp.float32), first(members.params))
    consts = {"model": None if model_consts is None else first(model_consts), "lr_scale": scale,
              "rep_of": jnp.asarray(first_same_init(plan), jnp.int32)}
    return members, consts


def update_spec(ctx: Context, consts: dict) -> UpdateSpec:
    """The members' optimizer update: its spec, clip norm and muP's lr factors (None without them)."""
    return UpdateSpec(ctx.optimizer, ctx.clip, consts["lr_scale"] if ctx.uses_lr_factors else None)


def initial_sharpness(ctx: Context, members: Member, consts: dict,
                      compile_s: Optional[dict] = None) -> np.ndarray:
    """lambda0 of every member at initialization: on the measurement batch, or (probe.lambda0_batches
    = N) the mean over N training batches, the authors' convention."""
    iters = max(int(ctx.probe.lanczos_iters), 30)
    values = []
    for x, y in lambda0_batches(ctx):
        size = (ctx.probe_microbatch if x is ctx.w.data.x_probe else
                curvature.examples_per_microbatch(int(x.shape[0]), 3 * ctx.eval_bytes_per_example,
                                                  ctx.microbatch_bytes))

        def all_members(c: Context, ms: Member, x: jax.Array, y: jax.Array, size: int = size):
            return jax.vmap(lambda m: member_lambda0(c, m, x, y, size, iters))(ms)

        out = run_shared(ctx, consts, f"lambda0_{iters}_{size}", all_members, members, x, y, compile_s=compile_s)
        values.append(np.asarray(jax.device_get(out)))
    return np.mean(values, axis=0)


def measure_lambda0(workload: Workload, plan: CohortPlan) -> np.ndarray:
    """lambda0 of each member of `plan` (what lr_unit=sharpness divides by)."""
    ctx = cohort_context(workload, plan)
    members, consts = initialize(ctx, plan)
    return initial_sharpness(ctx, members, consts)


def lambda0_batches(ctx: Context) -> list[tuple[jax.Array, jax.Array]]:
    """The batches lambda0 is averaged over: the measurement batch (probe.lambda0_batches = 0), the
    whole training set for a full-batch run, else N batches of the training batch size drawn
    without replacement each, from a key of their own (not the training stream's or B0's)."""
    d = ctx.w.data
    count = int(ctx.probe.get("lambda0_batches", 0) or 0)
    if count == 0:
        return [(d.x_probe, d.y_probe)]
    if ctx.full_batch:
        return [(d.x_train, d.y_train)]
    key = jax.random.fold_in(jax.random.PRNGKey(ctx.data_seed), 2**30 + 1)
    n = int(d.x_train.shape[0])
    out = []
    for i in range(count):
        idx = jax.random.permutation(jax.random.fold_in(key, i), n)[: ctx.batch]
        out.append((d.x_train[idx], d.y_train[idx]))
    return out


def auto_chunk(ctx: Context) -> int:
    """Iterations per compiled chunk: MAX_CHUNK, fewer when the cohort's steps are estimated (forward
    FLOPs from XLA's cost analysis x 3 x batch x members, plus the probes' HVPs spread over the probe
    interval, at CHUNK_FLOPS_PER_S) to take longer than CHUNK_SECONDS, so the progress bar and
    checkpoints move (WRN-16-4: 2)."""
    w = ctx.w
    x0, y0 = w.data.x_train[:1], w.data.y_train[:1]
    try:
        cost = jax.jit(lambda p, x, y: w.loss_and_accuracy(p, x, y)[0]).lower(w.param_shapes(), x0, y0).cost_analysis()
        flops = float((cost or {}).get("flops", 0.0))
    except Exception:  # noqa: BLE001 - a backend without cost analysis: the usual chunk
        return MAX_CHUNK
    step_flops = 3.0 * flops * ctx.batch * ctx.k
    if ctx.do_sharpness or ctx.do_precond:  # a probe's HVPs (~2 steps each), spread over `every`
        n_probe = int(w.data.x_probe.shape[0])
        hvps = PROBE_HVPS_ESTIMATE * (int(ctx.do_sharpness) + int(ctx.do_precond))
        every = max(int(ctx.probe.every), 1) if int(ctx.probe.log_points) <= 0 else 10
        step_flops += 6.0 * flops * n_probe * ctx.k * hvps / every
    rate = CHUNK_FLOPS_PER_S.get(jax.default_backend(), CHUNK_FLOPS_PER_S["gpu"])
    if step_flops <= 0:
        return MAX_CHUNK
    return int(max(1, min(MAX_CHUNK, CHUNK_SECONDS * rate // step_flops)))


# ----------------------------------------------------------------------------- driver
class CohortTrainer:
    """Runs one cohort: compiles its programs, scans its chunks, collects its traces."""

    def __init__(self, workload: Workload, plan: CohortPlan, chunk: Optional[int] = None,
                 train_microbatches: int = 1):
        self.w, self.plan, self.cfg = workload, plan, plan.cfg
        self.ctx = cohort_context(workload, plan, train_microbatches)
        self.k, self.steps, self.batch = self.ctx.k, self.ctx.steps, self.ctx.batch
        self.train_microbatch = self.ctx.train_microbatch
        self.trace_columns = TRACE_COLUMNS + [c.name for m in self.ctx.metrics for c in m.columns]
        self._chunk_request = chunk  # None: sized from the step's cost when first needed (`chunk`)
        self.compile_s: dict[str, float] = {}

    @functools.cached_property
    def chunk(self) -> int:
        """Iterations per compiled chunk (the constructor's, else `auto_chunk`; trainers built only to
        measure lambda0 never need it)."""
        return max(1, min(self._chunk_request or auto_chunk(self.ctx), self.steps + 1))

    @functools.cached_property
    def consts(self) -> dict:
        """The shared programs' constants (from the members' initialization; the same on every call)."""
        return initialize(self.ctx, self.plan, self.compile_s)[1]

    def init_members(self) -> Member:
        """Fresh initial members (a new buffer each call: the first chunk donates it)."""
        members, consts = initialize(self.ctx, self.plan, self.compile_s)
        self.__dict__.setdefault("consts", consts)
        return members

    def update_spec(self) -> UpdateSpec:
        return update_spec(self.ctx, self.consts)

    def initial_sharpness(self) -> np.ndarray:
        return initial_sharpness(self.ctx, self.init_members(), self.consts, self.compile_s)

    def final_metrics(self, members: Member) -> dict[str, np.ndarray]:
        """Train loss/accuracy on up to probe.final_train_examples examples and test metrics."""
        prog = lambda c, params, d: jax.vmap(lambda p: iteration.final_metrics(c, p, d))(params)  # noqa: E731
        tl, ta, sl, sa = jax.device_get(run_shared(self.ctx, self.consts, "final", prog, members.params,
                                                   self.w.data, compile_s=self.compile_s))
        return {"final_train_loss": tl, "final_train_acc": ta, "final_test_loss": sl, "final_test_acc": sa}

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
        rng = jax.random.PRNGKey(int(self.cfg.data_seed) + 1_000_003)
        return Carry(self.init_members(), jnp.arange(n, dtype=jnp.int32), rng)

    def chunk_fn(self) -> Callable:
        """(carry, start, data, hyper, probes, evals) -> (carry, per-iteration outputs): the compiled
        chunk (shared by cohorts with this program key; `carry` is donated)."""
        chunk = self.chunk
        fn = lambda c, *a: iteration.run_chunk(c, chunk, *a)  # noqa: E731
        return lambda *args: run_shared(self.ctx, self.consts, "chunk", fn, *args, donate=(0,), chunk=chunk,
                                        compile_s=self.compile_s)

    def _advance(self, carry: Carry, i: int, probes: jax.Array, evals: jax.Array):
        """One compiled chunk from iteration i: (carry, its outputs on the host, which members are live)."""
        carry, out = self.chunk_fn()(carry, jnp.asarray(i), self.w.data, self.plan.hyper, probes, evals)
        return carry, jax.device_get(out), np.asarray(jax.device_get(carry.members.active))

    def run(self, carry: Optional[Carry] = None, start: int = 0, rows: Optional[list] = None,
            on_chunk: Optional[Callable[[Carry, int, list], None]] = None,
            progress: Optional[Callable[[int], None]] = None) -> CohortResult:
        """Train to the end (or until every member froze). `carry/start/rows` resume a saved state;
        `on_chunk(carry, next_start, rows)` is called after each chunk (checkpointing)."""
        t0 = time.perf_counter()
        carry = self.initial_state() if carry is None else carry
        rows = list(rows or [])
        probes_np = probe_mask(self.cfg)
        probes, evals = jnp.asarray(probes_np), jnp.asarray(eval_mask(self.cfg, probes_np))
        total, i, first_chunk_s = self.steps + 1, start, None
        while i < total:
            tc = time.perf_counter()
            carry, out, active = interruptible(self._advance, carry, i, probes, evals)  # SIGTERM acts within a chunk
            first_chunk_s = time.perf_counter() - tc if first_chunk_s is None else first_chunk_s
            rows += [(step, {key: np.asarray(v[step - i]) for key, v in out.items()})
                     for step in range(i, min(i + self.chunk, total)) if probes_np[step]]
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
        return CohortResult(
            catapult=catapult.summary(carry.members.cat) if self.ctx.catapult else None,
            traces=[member_trace(rows, m, self.trace_columns, divergence[m]) for m in range(self.k)],
            divergence_step=divergence,
            final={k: np.asarray(v) for k, v in final.items()},
            steps_run=[self.steps if d is None else d for d in divergence],
            timings={"train_s": time.perf_counter() - t0, "first_chunk_s": first_chunk_s or 0.0,
                     "steps": float(min(i, total) - 1), "compile_s": float(sum(self.compile_s.values())),
                     "compile_chunk_s": float(self.compile_s.get("chunk", 0.0))},
        )


def member_trace(rows: list, m: int, trace_columns: list[str], last_step: Optional[int] = None) -> pd.DataFrame:
    """Member m's trace: one row per probe step, to its divergence step."""
    records = []
    for step, vals in rows:
        if last_step is not None and step > last_step:
            break
        rec = {"step": step}
        for key in trace_columns[1:]:
            rec[key] = vals[key][m].item() if key in vals else np.nan
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=trace_columns)
    ints = {c: "int64" for c in trace_columns if columns.get(c) is not None and columns.get(c).integer}
    return df.astype(ints)
