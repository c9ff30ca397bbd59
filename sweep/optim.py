"""Optimizers and learning-rate schedules, written so every hyperparameter can be a traced scalar.

A cohort vmaps over runs that differ in lr, warmup, momentum, b1, ... so nothing here may bake a
hyperparameter into Python control flow. The optimizers are optax transformations *without* the
learning rate; the engine multiplies by -lr_t (and by muP's per-layer factors) itself.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sweep import optimizers


class Hyper(NamedTuple):
    """The per-run scalars a cohort varies (each a float array; shape () or (K,))."""

    lr: jax.Array
    lr_init: jax.Array
    warmup: jax.Array
    momentum: jax.Array
    b1: jax.Array
    b2: jax.Array
    eps: jax.Array
    decay_rho: jax.Array
    decay_min_factor: jax.Array


# ----------------------------------------------------------------------------- schedules
def learning_rate(t: jax.Array, h: Hyper, total_steps: int, cosine: bool) -> jax.Array:
    """Learning rate of update t, counting updates from t = 1.

    Warmup (eq. 7): lr_t = lr_init + (lr - lr_init) * t / T_wrm for t <= T_wrm. Counting from 1
    (as the authors' code does) makes warmup = 1 exactly a constant learning rate and keeps the
    first update from being wasted at lr_init = 0.
    After warmup: constant, or cosine decay (eq. 8) to lr_min = decay_min_factor * lr with exponent
    rho over the remaining T_cos = total_steps - T_wrm updates, t' = t - T_wrm:
        lr_t = lr_min + (lr - lr_min) * [(1 + cos(pi t' / T_cos)) / 2] ** rho.
    Eq. 8 as printed swaps lr_trgt and lr_min (it would start at lr_min); this is the form whose
    rho = 0 case "keeps lr_trgt", as the paper's text says.
    """
    t = jnp.asarray(t, jnp.float32)
    warm = h.lr_init + (h.lr - h.lr_init) * jnp.minimum(t, h.warmup) / h.warmup
    if not cosine:
        return jnp.where(t <= h.warmup, warm, h.lr)
    t_cos = jnp.maximum(total_steps - h.warmup, 1.0)
    frac = jnp.clip((t - h.warmup) / t_cos, 0.0, 1.0)
    lr_min = h.decay_min_factor * h.lr
    decayed = lr_min + (h.lr - lr_min) * (0.5 * (1.0 + jnp.cos(jnp.pi * frac))) ** h.decay_rho
    return jnp.where(t <= h.warmup, warm, decayed)


# ----------------------------------------------------------------------------- optimizers
def scale_by_gi_adam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> optax.GradientTransformation:
    """GI-Adam (Section 6.2): Adam whose second moment starts at v0 = g0^2 (the first batch's
    gradient) instead of 0. The bias correction is kept, so the first update is
    m_hat / sqrt(v_hat) = g / (|g| / sqrt(1 - b2)): Adam with an automatic warmup factor
    sqrt(1 - b2^t) (Appendix I.2)."""
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

    def update(grads, state, params=None):
        first = state.count == 0
        nu = jax.tree.map(lambda n, g: jnp.where(first, jnp.square(g), n), state.nu, grads)
        return adam.update(grads, state._replace(nu=nu), params)

    return optax.GradientTransformation(adam.init, update)


def direction(name: Any, h: Hyper, clip_norm: Optional[float]) -> optax.GradientTransformation:
    """The update direction before the learning rate (-lr_t * direction is the step) of an optimizer,
    by name or spec (sweep/optimizers.py)."""
    return optimizers.get(name).direction(h, clip_norm)


def random_second_moment(grads: Any, key: jax.Array) -> Any:
    """RI-Adam's v0 (Appendix I.3): a random non-negative second moment "with the same norm as the
    gradients at initialization", i.e. |v0|_2 = |g^2|_2 over all parameters: u_i = z_i^2, z ~ N(0, 1),
    scaled by |g^2| / |u|. Same tree and dtypes as `grads`."""
    leaves, tree = jax.tree.flatten(grads)
    keys = jax.random.split(key, len(leaves))
    u = [jnp.square(jax.random.normal(k, g.shape, g.dtype)) for k, g in zip(keys, leaves)]
    norm = lambda xs: jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in xs))  # noqa: E731
    scale = norm([jnp.square(g) for g in leaves]) / norm(u)
    return jax.tree.unflatten(tree, [scale * x for x in u])


def adam_state(opt_state: Any) -> optax.ScaleByAdamState:
    """Find Adam's moment state inside a (possibly chained) optimizer state."""
    leaves = jax.tree_util.tree_leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
    for leaf in leaves:
        if isinstance(leaf, optax.ScaleByAdamState):
            return leaf
    raise ValueError("optimizer state holds no Adam moments")


def with_adam_nu(opt_state: Any, nu: Any) -> Any:
    """The optimizer state with Adam's second moment replaced by `nu` (GI-Adam's seeded v0)."""
    return jax.tree_util.tree_map(
        lambda s: s._replace(nu=nu) if isinstance(s, optax.ScaleByAdamState) else s, opt_state,
        is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))


def adam_preconditioner(nu: Any, count: jax.Array, h: Hyper, lr_scale: Any = None) -> Any:
    """Diagonal of Adam's preconditioner P_t = (1 - b1^t) (sqrt(v_hat_t) + eps), so that the Adam
    step is lr P^-1 m_t-ish and P^-1 H governs stability (Cohen et al. 2022).

    Eq. 6 of the paper prints diag(v_hat) without the square root; Adam divides by sqrt(v_hat), and
    the threshold (2 + 2 b1) / (lr (1 - b1)) refers to this P, so we keep the square root.
    muP's per-layer Adam learning-rate factors divide P (a larger step is a smaller P).
    """
    t = jnp.maximum(count, 1).astype(jnp.float32)
    bc1, bc2 = 1.0 - h.b1**t, 1.0 - h.b2**t
    p = jax.tree.map(lambda v: bc1 * (jnp.sqrt(v / bc2) + h.eps), nu)
    if lr_scale is not None:
        p = jax.tree.map(lambda pi, s: pi / s, p, lr_scale)
    return p
