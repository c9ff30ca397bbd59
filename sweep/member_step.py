"""The traced training math of one cohort member: initialization, the learning rate, the minibatch, one
update, and the catapult stage (Algorithm 3). Pure functions of an explicit frozen context
(sweep/cohort_context.py); the engine vmaps them over members and scans them over steps.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from sweep import catapult, eta_c, optim
from sweep.cohort_context import Context
from sweep.workload import DeviceData


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


def init_member(ctx: Context, seed: jax.Array, scale: jax.Array, h: optim.Hyper, eta0: jax.Array):
    """(member, its lr factors or None, its model constants or None): parameters from the seed with
    the init scale on the weights, the optimizer state (seeded when the optimizer seeds v0)."""
    x0 = ctx.w.prepare(ctx.w.data.x_train[:2])
    variables = ctx.w.model.init(jax.random.PRNGKey(seed), x0)
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: p * scale if _is_weight(path) else p, variables["params"])
    flat, _ = ravel_pytree(params)
    v0 = jax.random.normal(jax.random.PRNGKey(seed + 7919), flat.shape, ctx.probe_dtype)
    opt_state = ctx.update_rule.direction(h, ctx.clip).init(params)
    if ctx.seeded_v0:
        xb, yb = gi_seed_batch(ctx)
        g0 = jax.grad(lambda q: ctx.w.loss_and_accuracy(q, xb, yb)[0])(params)
        opt_state = optim.with_adam_nu(opt_state, ctx.optimizer.seed_nu(g0, seed))
    member = Member(params, opt_state, v0, v0,
                    jnp.asarray(True), jnp.asarray(-1, jnp.int32), jnp.asarray(jnp.nan, jnp.float32),
                    jnp.asarray(0, jnp.int32), catapult.init_state(eta0))
    return member, variables.get("lr_scale"), variables.get("consts")


def gi_seed_batch(ctx: Context) -> tuple[jax.Array, jax.Array]:
    """B0 of a seeded v0: the whole training set for full-batch runs (B0 = B1, as in the authors' GD
    runs), else `batch` examples drawn with a key of their own (not the training stream's)."""
    d = ctx.w.data
    if ctx.full_batch:
        return d.x_train, d.y_train
    key = jax.random.fold_in(jax.random.PRNGKey(ctx.data_seed), 2**30)
    idx = jax.random.permutation(key, d.x_train.shape[0])[: ctx.batch]
    return d.x_train[idx], d.y_train[idx]


def mean_loss_grad(ctx: Context, params: Any, x: jax.Array, y: jax.Array, size: int, train: bool = False):
    """((loss, accuracy), gradient) on (x, y), whole or over equal micro-batches of `size` examples
    (the mean of their means is the batch mean; a scan keeps one micro-batch's intermediates at a time)."""
    fn = jax.value_and_grad(ctx.w.loss_and_accuracy, has_aux=True)
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


def learning_rate(ctx: Context, cat: catapult.CatapultState, h: optim.Hyper, t: jax.Array) -> jax.Array:
    """The lr of update t for one member: the schedule (eq. 7/8), or under warmup_mode=catapult the
    member's catapult eta until it reaches eta_trgt, then the post-warmup schedule."""
    if ctx.catapult:
        return catapult.learning_rate(cat, t, h, ctx.steps, ctx.cosine)
    return optim.learning_rate(t, h, ctx.steps, ctx.cosine)


def train_member(ctx: Context, m: Member, h: optim.Hyper, x: jax.Array, y: jax.Array, step: jax.Array):
    """One update of one member on the shared minibatch; frozen members keep their state."""
    (loss, acc), grads = mean_loss_grad(ctx, m.params, x, y, ctx.train_microbatch, True)
    loss0 = jnp.where(jnp.isnan(m.loss0), loss, m.loss0)
    over, bad = divergence_check(loss, loss0, m.over, ctx.outcome)
    direction, opt_state = ctx.update_rule.direction(h, ctx.clip).update(grads, m.opt_state, m.params)
    lr_t = learning_rate(ctx, m.cat, h, step + 1)
    if ctx.lr_scale is not None:
        direction = jax.tree.map(lambda d, s: d * s, direction, ctx.lr_scale)
    new_params = jax.tree.map(lambda p, d: p - lr_t * d, m.params, direction)
    keep = m.active & ~bad
    params, opt_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old),
                                     (new_params, opt_state), (m.params, m.opt_state))
    div_step = jnp.where(m.active & bad, step, m.div_step)
    member = m._replace(params=params, opt_state=opt_state, active=keep, div_step=div_step, loss0=loss0, over=over)
    return member, jnp.where(m.active, loss, jnp.nan), jnp.where(m.active, acc, jnp.nan)


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


def minibatch(ctx: Context, carry: Carry, data: DeviceData, step: jax.Array):
    """(x, y, the epoch's permutation) of update step + 1: every member sees the same sequence."""
    if ctx.full_batch:
        x, y, perm = data.x_train, data.y_train, carry.perm
    else:
        pos = step % ctx.steps_per_epoch
        epoch = step // ctx.steps_per_epoch
        n = data.x_train.shape[0]
        key = jax.random.fold_in(jax.random.PRNGKey(ctx.data_seed), epoch)
        perm = jax.lax.cond(pos == 0, lambda: jax.random.permutation(key, n).astype(jnp.int32), lambda: carry.perm)
        idx = jax.lax.dynamic_slice(perm, (pos * ctx.batch,), (ctx.batch,))
        x, y = data.x_train[idx], data.y_train[idx]
    if ctx.augment is not None:
        x, y = ctx.augment(jax.random.fold_in(carry.rng, step), ctx.w.prepare(x), y)
    return x, y, perm


def catapult_stage(ctx: Context, ms: Member, h: optim.Hyper, data: DeviceData, x: jax.Array, y: jax.Array,
                   step: jax.Array) -> Member:
    """Algorithm 3 before update step + 1, for the whole cohort (sweep/catapult.py). The loss
    comparison and the eta_c search each sit behind an UNBATCHED lax.cond (any member warming / any
    member needing a search), so steps where no member needs them cost nothing extra; the search is
    vmapped with the members that need none disabled, and each member keeps its own result only.
    Frozen (diverged) members never search. `x, y`: this update's minibatch (catapult.loss=batch)."""
    k, ec, cc = ctx.k, ctx.eta_c_cfg, ctx.catapult_cfg
    batch = (x, y) if str(cc.loss) == "batch" else (data.x_probe, data.y_probe)
    from_state = str(cc.direction) == "state"

    def loss_fn(p, b):
        return ctx.w.loss_and_accuracy(p, b[0], b[1])[0]

    def losses(params):
        return jax.vmap(lambda p: loss_fn(p, batch).astype(jnp.float32))(params)

    warm = catapult.warming(ms.cat, ms.active)
    loss_now = jax.lax.cond(jnp.any(warm), losses, lambda _: jnp.full((k,), jnp.nan, jnp.float32), ms.params)
    need = catapult.needs_search(ms.cat, ms.active, loss_now)
    rule = ctx.update_rule if from_state else ctx.optimizer  # fresh: the optimizer's own first step

    def search(args):
        def one(p, st, hh, eta0, enabled):
            r = eta_c.member_search(
                loss_fn, p, hh, batch, rule, eta0, hh.lr, delta=float(ec.delta), clip_norm=ctx.clip,
                lr_scale=ctx.lr_scale, max_doublings=int(ec.max_doublings),
                max_bisections=int(ec.max_bisections), enabled=enabled, opt_state=st if from_state else None)
            return r.eta_c.astype(jnp.float32), r.forward_passes.astype(jnp.int32)

        return jax.vmap(one)(*args)

    def skip(args):
        return args[3], jnp.zeros((k,), jnp.int32)

    found, passes = jax.lax.cond(jnp.any(need), search, skip, (ms.params, ms.opt_state, h, ms.cat.lr, need))
    return ms._replace(cat=catapult.advance(ms.cat, need, loss_now, found, passes, h.lr, step + 1))


def _is_weight(path: tuple) -> bool:
    """Kernels and embeddings are weights (scaled by init_scale); biases and norm scales are not."""
    name = getattr(path[-1], "key", str(path[-1]))
    return name in ("kernel", "embedding")
