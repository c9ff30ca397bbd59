"""The traced measurements of one cohort member at a probe step: loss, accuracy and gradient norm on the
fixed measurement batch, the sharpness and (for a preconditioned optimizer) P^-1 H by Lanczos, test
evaluation, the registered diagnostics, and lambda0. Pure functions of the frozen context.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from sweep import curvature, optim, probes
from sweep.cohort_context import Context
from sweep.member_step import Member, mean_loss_grad
from sweep.workload import DeviceData

# the per-probe values of the engine's own measurements (in this order), before the metrics' ones
PROBE_FIELDS = ("probe_loss", "probe_acc", "grad_norm", "sharpness", "precond_sharpness", "hvps",
                "test_loss", "test_acc")
METRIC_KEY = 20240917  # the fixed key every registered metric gets

Probe = dict  # column -> value of one probe (PROBE_FIELDS, then the enabled metrics' columns)


def nan_like_probe(k: int, metrics: Sequence[probes.ProbeMetric] = ()) -> Probe:
    """The values of an unprobed step (NaN; 0 HVPs), with a leading (k,) axis."""
    nan = jnp.full((k,), jnp.nan, jnp.float32)
    out = {name: nan for name in PROBE_FIELDS}
    out["hvps"] = jnp.zeros((k,), jnp.int32)
    return {**out, **probes.placeholders(list(metrics), (k,))}


def flat_chunk_loss(ctx: Context, params: Any, x: jax.Array):
    """(chunk_loss(flat, x_chunk, y_chunk), flat, x prepared in the probe dtype). Parameters are cast
    *before* ravelling (unravel restores the leaves' own dtypes) and images are standardized in that
    dtype too, since layers compute in their input's dtype."""
    dt = ctx.probe_dtype
    flat, unravel = ravel_pytree(jax.tree.map(lambda p: p.astype(dt), params))
    tokens = jnp.issubdtype(x.dtype, jnp.integer) and x.dtype != jnp.uint8
    xin = x if tokens else ctx.w.prepare(x).astype(dt)

    def chunk_loss(f, xb, yb):
        loss, _ = ctx.w.loss_and_accuracy(unravel(f), xb, yb)
        return loss.astype(dt)

    return chunk_loss, flat, xin


def flat_loss(ctx: Context, params: Any, x: jax.Array, y: jax.Array):
    """(loss of flat parameters on (x, y) in the probe dtype, the flat parameters)."""
    chunk_loss, flat, xin = flat_chunk_loss(ctx, params, x)
    return (lambda f: chunk_loss(f, xin, y)), flat


def unravel_like(params: Any, flat: jax.Array) -> Any:
    return ravel_pytree(jax.tree.map(lambda p: p.astype(flat.dtype), params))[1](flat)


def probe_loss_grad(ctx: Context, params: Any, x: jax.Array, y: jax.Array):
    """((loss, accuracy), gradient) on the probe batch, within the memory budget."""
    return mean_loss_grad(ctx, params, x, y, ctx.probe_microbatch)


def _loss_grad_and_hvp(ctx: Context, m: Member, data: DeviceData, curv: bool):
    """((loss, acc), gradient norm, make_hvp or None, (chunk_loss, flat, xin) or None) on the
    measurement batch: one linearization when it fits (its primal is the loss and gradient, its
    tangent every HVP), else a gradient plus HVPs recomputed per micro-batch."""
    flat_parts = flat_chunk_loss(ctx, m.params, data.x_probe) if curv else None
    micro = ctx.probe_microbatch < data.x_probe.shape[0]
    if curv and not micro and ctx.probe_dtype == jnp.float32:
        _, flat, xin = flat_parts

        def loss_acc_grad(f):
            return jax.value_and_grad(lambda g: _cast_loss(ctx.w.loss_and_accuracy(
                unravel_like(m.params, g), xin, data.y_probe), flat.dtype), has_aux=True)(f)

        ((loss, acc), flat_grad), lin = jax.linearize(loss_acc_grad, flat)
        return (loss, acc), jnp.linalg.norm(flat_grad), (lambda: (lambda v: lin(v)[1])), flat_parts
    (loss, acc), grads = probe_loss_grad(ctx, m.params, data.x_probe, data.y_probe)
    make_hvp = None
    if curv:
        chunk_loss, flat, xin = flat_parts
        if micro:  # bounded memory: recomputed per micro-batch
            make_hvp = lambda: curvature.microbatched(  # noqa: E731
                chunk_loss, xin, data.y_probe, flat, ctx.probe_microbatch).hvp
        else:  # the primal computed once per probe (jax.linearize)
            make_hvp = lambda: curvature.linearized_hvp(lambda f: chunk_loss(f, xin, data.y_probe), flat)  # noqa: E731
    return (loss, acc), optax_global_norm(grads), make_hvp, flat_parts


def probe_member(ctx: Context, m: Member, h: optim.Hyper, data: DeviceData, first_nu: Any,
                 do_eval: jax.Array, step: jax.Array) -> tuple[Probe, jax.Array, jax.Array]:
    """All measurements of one member at one probe step (on the fixed measurement batch)."""
    done = ~m.active
    curv = ctx.do_sharpness or ctx.do_precond or bool(ctx.metrics)
    (loss, acc), gnorm, make_hvp, flat_parts = _loss_grad_and_hvp(ctx, m, data, curv)
    iters, tol = int(ctx.probe.lanczos_iters), float(ctx.probe.lanczos_tol)
    stop = str(ctx.probe.get("lanczos_stop", "residual"))
    sharp, hvps, vec, pc_vec = jnp.nan, jnp.asarray(0, jnp.int32), m.eigvec, m.pc_eigvec
    pc_sharp = jnp.asarray(jnp.nan, jnp.float32)
    if ctx.do_sharpness:
        eig = curvature.lanczos_unless_done(make_hvp, m.eigvec, iters, tol, done, stop=stop)
        sharp, hvps, vec = eig.value.astype(jnp.float32), eig.matvecs.astype(jnp.int32), eig.vector
    if ctx.do_precond:
        inv_sqrt = 1.0 / jnp.sqrt(preconditioner(ctx, m, h, first_nu, step).astype(flat_parts[1].dtype))

        def make_pc():
            hv = make_hvp()
            return lambda v: inv_sqrt * hv(inv_sqrt * v)

        eig = curvature.lanczos_unless_done(make_pc, m.pc_eigvec, iters, tol, done, stop=stop)
        pc_sharp, pc_vec = eig.value.astype(jnp.float32), eig.vector
        hvps = hvps + eig.matvecs.astype(jnp.int32)

    def test_eval(_):
        return ctx.w.evaluate(m.params, data.x_test, data.y_test, ctx.eval_batch(data.x_test))

    nan = jnp.asarray(jnp.nan, jnp.float32)
    test_loss, test_acc = jax.lax.cond(do_eval, test_eval, lambda _: (nan, nan), None)
    probe = dict(zip(PROBE_FIELDS, (loss, acc, gnorm, jnp.asarray(sharp, jnp.float32), pc_sharp, hvps,
                                    test_loss, test_acc)))
    if ctx.metrics:
        probe.update(metric_values(ctx, m, data, *flat_parts, make_hvp, done))
    # every probe field is float32 (int32 for counts), whatever x64 mode made of them
    probe = jax.tree.map(lambda v: jnp.where(m.active, v, jnp.nan).astype(jnp.float32)
                         if v.dtype != jnp.int32 else v, probe)
    return probe, vec, pc_vec


def metric_values(ctx: Context, m: Member, data: DeviceData, chunk_loss: Callable, flat: jax.Array,
                  xin: jax.Array, make_hvp: Callable, done: jax.Array) -> dict:
    """The enabled registered metrics (sweep/probes.py) of one member; skipped once it froze."""
    inputs = probes.ProbeInputs(
        params=m.params, flat=flat, unravel=lambda f: unravel_like(m.params, f),
        loss_of_flat=lambda f: chunk_loss(f, xin, data.y_probe), make_hvp=make_hvp,
        x=xin, y=data.y_probe, loss_and_accuracy=ctx.w.loss_and_accuracy, apply=ctx.w.apply,
        microbatch=int(ctx.probe_microbatch), key=jax.random.PRNGKey(METRIC_KEY),
        probe=ctx.probe, task=str(ctx.w.dataset.task), num_classes=int(ctx.w.num_classes))
    metrics = list(ctx.metrics)
    skipped = jax.tree.map(lambda a: a[0], probes.placeholders(metrics, (1,)))
    return jax.lax.cond(done, lambda: skipped, lambda: probes.compute_all(metrics, inputs))


def first_update_nu(ctx: Context, m: Member, h: optim.Hyper, data: DeviceData) -> Any:
    """The second moment the first update would leave if its gradient were the measurement batch's g
    (the optimizer spec's `first_update_nu`: Adam (1 - b2) g^2, from a seeded v0 b2 v0 + (1 - b2) g^2,
    GI-Adam seeded by the update g^2)."""
    if ctx.probe_microbatch < data.x_probe.shape[0]:  # bounded memory (memory budget)
        g = probe_loss_grad(ctx, m.params, data.x_probe, data.y_probe)[1]
    else:
        g = jax.grad(lambda q: ctx.w.loss_and_accuracy(q, data.x_probe, data.y_probe)[0])(m.params)
    nu = optim.adam_state(m.opt_state).nu
    return ctx.optimizer.first_update_nu(ctx.opt_cfg, nu, g, h)


def preconditioner(ctx: Context, m: Member, h: optim.Hyper, first_nu: Any, step: jax.Array) -> jax.Array:
    """Adam's P at probe step `step`, from the optimizer state after `step` updates. At step 0 there
    is no second moment yet; we use the one the first update will produce (`first_update_nu`), so
    lambda0 of P^-1 H is the curvature the first step sees."""
    st = optim.adam_state(m.opt_state)
    nu = jax.tree.map(lambda n, n1: jnp.where(step == 0, n1, n), st.nu, first_nu)
    count = jnp.where(step == 0, 1, st.count)
    return ravel_pytree(optim.adam_preconditioner(nu, count, h, ctx.lr_scale))[0]


def member_lambda0(ctx: Context, m: Member, x: jax.Array, y: jax.Array, size: int, iters: int) -> jax.Array:
    """The sharpness of one member on (x, y), over micro-batches of `size` examples when the batch
    does not fit the memory budget."""
    tol = float(ctx.probe.lanczos_tol)
    if size < x.shape[0]:
        chunk_loss, flat, xin = flat_chunk_loss(ctx, m.params, x)
        return curvature.microbatched_sharpness(chunk_loss, xin, y, flat, size, m.eigvec, iters, tol).value
    loss_of_flat, flat = flat_loss(ctx, m.params, x, y)
    return curvature.sharpness(loss_of_flat, flat, m.eigvec, iters, tol).value


def _cast_loss(loss_acc: tuple, dtype: Any) -> tuple:
    return loss_acc[0].astype(dtype), loss_acc[1]


def optax_global_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))
