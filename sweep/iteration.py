"""One scanned iteration of a cohort (probe at step i, then update i + 1), a chunk of them, and the final
evaluation: pure functions of the frozen context, vmapped over the members (sweep/engine.py compiles
and runs them).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sweep import optim
from sweep.cohort_context import Context
from sweep.member_probe import first_update_nu, nan_like_probe, probe_member
from sweep.member_step import Carry, Member, catapult_stage, learning_rate, minibatch, train_member
from sweep.workload import DeviceData


def probe_cohort(ctx: Context, members: Member, step: jax.Array, data: DeviceData, h: optim.Hyper,
                 do_eval: jax.Array):
    """(probe values, Lanczos vectors, preconditioned Lanczos vectors) of every member at `step`."""
    k = ctx.k

    def probe_one(args):
        m, hh = args
        first_nu = first_update_nu(ctx, m, hh, data) if ctx.do_precond else None
        return probe_member(ctx, m, hh, data, first_nu, do_eval, step)

    def probe_all(ms: Member):
        if ctx.probe_sequential:  # each member's Lanczos stops at its own convergence
            return jax.lax.map(probe_one, (ms, h))
        return jax.vmap(probe_one)((ms, h))

    def probe_first_of_each_init(ms: Member):
        """Step 0: members with the same initialization (seed, init scale) and the same probe
        scalars are the same network with the same warm-start vector: probe the first of each such
        group and copy its row (the cold start is the dearest probe of a run)."""
        is_rep = ctx.rep_of == jnp.arange(k)

        def one(args):
            m, hh, first = args
            skip = lambda a: (jax.tree.map(lambda x: x[0], nan_like_probe(1, ctx.metrics)), a[0].eigvec,  # noqa: E731
                              a[0].pc_eigvec)
            return jax.lax.cond(first, probe_one, skip, (m, hh))

        out = jax.lax.map(one, (ms, h, is_rep))
        return jax.tree.map(lambda a: a[ctx.rep_of], out)

    if ctx.probe_sequential and ctx.rep_of is not None:
        return jax.lax.cond(step == 0, probe_first_of_each_init, probe_all, members)
    return probe_all(members)


def iteration(ctx: Context, carry: Carry, step: jax.Array, data: DeviceData, h: optim.Hyper,
              probes: jax.Array, evals: jax.Array):
    """Probe at `step` (when the probe mask says so), then update step + 1 (when step < steps)."""
    k = ctx.k

    def no_probe(ms: Member):
        return nan_like_probe(k, ctx.metrics), ms.eigvec, ms.pc_eigvec

    probe, vec, pc_vec = jax.lax.cond(probes[step], lambda ms: probe_cohort(ctx, ms, step, data, h, evals[step]),
                                      no_probe, carry.members)
    members = carry.members._replace(eigvec=vec, pc_eigvec=pc_vec)
    members = members._replace(loss0=jnp.where(step == 0, probe["probe_loss"], members.loss0))

    def do_update(c: Carry):
        x, y, perm = minibatch(ctx, c, data, step)
        ms = catapult_stage(ctx, c.members, h, data, x, y, step) if ctx.catapult else c.members
        ms, loss, acc = jax.vmap(lambda m, hh: train_member(ctx, m, hh, x, y, step))(ms, h)
        return Carry(ms, perm, c.rng), loss, acc

    def no_update(c: Carry):
        nan = jnp.full((k,), jnp.nan, jnp.float32)
        return c, nan, nan

    carry, loss, acc = jax.lax.cond(step < ctx.steps, do_update, no_update, carry._replace(members=members))
    # the lr update step + 1 used (catapult: from the state the update read)
    lr_next = jax.vmap(lambda cat, hh: learning_rate(ctx, cat, hh, step + 1))(carry.members.cat, h)
    threshold = jax.vmap(lambda lr, hh: ctx.optimizer.threshold(lr, hh))(lr_next, h)
    return carry, {"lr": lr_next, "train_loss": loss, "train_acc": acc, "threshold": threshold, **probe}


def run_chunk(ctx: Context, chunk: int, carry: Carry, start: jax.Array, data: DeviceData, h: optim.Hyper,
              probes: jax.Array, evals: jax.Array):
    """(carry, per-iteration outputs) of `chunk` iterations from `start`; iterations past the last
    step are padding (NaN outputs, nothing changes)."""
    total = ctx.steps + 1

    def body(c, i):
        step = (start + i).astype(jnp.int32)
        safe = jnp.minimum(step, total - 1)

        def pad(c):
            nan = jnp.full((ctx.k,), jnp.nan, jnp.float32)
            return c, {"lr": nan, "train_loss": nan, "train_acc": nan, "threshold": nan,
                       **nan_like_probe(ctx.k, ctx.metrics)}

        return jax.lax.cond(step < total, lambda c: iteration(ctx, c, safe, data, h, probes, evals), pad, c)

    return jax.lax.scan(body, carry, jnp.arange(chunk))


def final_metrics(ctx: Context, params, d: DeviceData):
    """(train loss, train acc, test loss, test acc) of one member: training on up to
    probe.final_train_examples examples, test on the test set."""
    tl, ta = ctx.w.evaluate(params, d.x_final, d.y_final, ctx.eval_batch(d.x_final, ctx.k))
    sl, sa = ctx.w.evaluate(params, d.x_test, d.y_test, ctx.eval_batch(d.x_test, ctx.k))
    return tl, ta, sl, sa
