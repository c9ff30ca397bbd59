"""The critical learning rate at initialization, eta_c, from forward passes only (Section 6.1,
Appendix B.2), and the warmup it saves (Figure 5).

eta_c is the smallest lr whose ONE optimizer step from theta_0 makes the loss on the fixed
measurement batch go up. Why: starting warmup at eta_init = eta_c induces a small catapult (and the
sharpness reduction that comes with it) at once, instead of spending T_wrm eta_c / eta_trgt steps
creeping up to it.

The search is the paper's, member by member:
  Algorithm 1 (exponential): eta = eta_0; while L(theta_1(eta)) < L(theta_0): if eta >= eta_trgt:
    eta = eta_trgt and stop; else eta = 2 eta. Bracket [eta/2, eta].
    If the loss already goes up at eta_0, eta_c = eta_0 (the paper's text; no binary search).
  Algorithm 2 (binary): while L(theta_1(eta_uppr)) > L(theta_0)(1 + delta): bisect, keeping
    eta_lwr where the loss went down. eta_c = eta_uppr.
theta_1(eta) = theta_0 - eta * d with d the run's own optimizer direction for one step from a fresh
state on g0 = grad L(theta_0) (sweep.optim.direction: SGD d = g0, Adam d = m_hat/(sqrt(v_hat)+eps),
GI-Adam as its first update, muP-Adam per-layer factors applied). A NaN/inf loss counts as an
increase.

Vectorization: one jit-compiled program, vmapped over cohort members (own params, hyperparameters,
eta_0 and eta_trgt). Each stage is a `lax.while_loop` capped at a fixed number of iterations; under
vmap JAX runs it until every member's condition is false and masks the members already done, so each
member gets exactly its own sequential answer.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sweep import optim
from sweep.integers import FLOAT32_EPS, ceil_tolerant

LossFn = Callable[[Any, Any], jax.Array]  # (params, batch) -> scalar loss on the fixed batch


class EtaC(NamedTuple):
    """Per member (leading axis K when vmapped)."""

    eta_c: jax.Array
    loss0: jax.Array  # L(theta_0) on the measurement batch
    forward_passes: jax.Array  # loss evaluations the sequential algorithm makes, L(theta_0) included


def one_step_direction(grads: Any, params: Any, h: optim.Hyper, optimizer: Any,
                       clip_norm: Optional[float] = None, lr_scale: Any = None, opt_state: Any = None) -> Any:
    """The direction d of the optimizer's first update from a fresh state (theta_1 = theta_0 - eta d),
    or, given `opt_state`, of its next update from that state (momentum / Adam moments included)."""
    tx = optim.direction(optimizer, h, clip_norm)
    d, _ = tx.update(grads, tx.init(params) if opt_state is None else opt_state, params)
    if lr_scale is not None:
        d = jax.tree.map(lambda di, s: di * s, d, lr_scale)
    return d


def _search(loss_at: Callable[[jax.Array], jax.Array], loss0: jax.Array, eta0: jax.Array,
            eta_trgt: jax.Array, delta: float, max_doublings: int, max_bisections: int,
            enabled: Any = True) -> EtaC:
    """Algorithms 1 and 2 for one member; `loss_at(eta)` = L(theta_1(eta)) with NaN -> inf.
    `enabled` False (a traced bool: a cohort member that needs no search) makes both loops stop at
    once and reports 0 forward passes; under vmap the others are unaffected."""
    enabled = jnp.asarray(enabled)
    l_first = loss_at(eta0)
    up_at_guess = ~(l_first < loss0)

    # Algorithm 1: (eta, L(theta_1(eta)), capped, iterations, evaluations)
    def exp_cond(s):
        eta, l1, capped, i, _ = s
        return enabled & (l1 < loss0) & ~capped & (i < max_doublings)

    def exp_body(s):
        eta, _, _, i, n = s
        capped = eta >= eta_trgt
        eta = jnp.where(capped, eta_trgt, 2.0 * eta)
        # when capped, this is Algorithm 2's evaluation of L(theta_1(eta_uppr = eta_trgt))
        return eta, loss_at(eta), capped, i + 1, n + 1

    init = (eta0, l_first, jnp.asarray(False), jnp.asarray(0), jnp.asarray(1))
    eta, l_uppr, _, _, n_exp = jax.lax.while_loop(exp_cond, exp_body, init)

    # Algorithm 2: (lwr, uppr, L(theta_1(uppr)), iterations, evaluations)
    bound = loss0 * (1.0 + delta)

    def bin_cond(s):
        _, _, l_up, i, _ = s
        return enabled & ~up_at_guess & ~(l_up <= bound) & (i < max_bisections)

    def bin_body(s):
        lwr, uppr, l_up, i, n = s
        mid = 0.5 * (lwr + uppr)
        l_mid = loss_at(mid)
        down = l_mid < loss0
        return (jnp.where(down, mid, lwr), jnp.where(down, uppr, mid), jnp.where(down, l_up, l_mid),
                i + 1, n + 1)

    _, uppr, _, _, n_bin = jax.lax.while_loop(bin_cond, bin_body, (0.5 * eta, eta, l_uppr, jnp.asarray(0),
                                                                    jnp.asarray(0)))
    eta_c = jnp.where(up_at_guess, eta0, uppr)
    return EtaC(eta_c, loss0, jnp.where(enabled, 1 + n_exp + n_bin, 0))


def member_search(loss_fn: LossFn, params: Any, h: optim.Hyper, batch: Any, optimizer: Any,
                  eta0: jax.Array, eta_trgt: jax.Array, *, delta: float, clip_norm: Optional[float] = None,
                  lr_scale: Any = None, max_doublings: int = 40, max_bisections: int = 30,
                  enabled: Any = True, opt_state: Any = None) -> EtaC:
    """eta_c of ONE member at `params` (theta_0 of Section 6.1, or the current theta_t of the
    persistent catapult warmup, sweep/catapult.py): Algorithms 1 and 2 on the loss of `batch`, along
    the optimizer's first-update direction from a fresh state at `params` (or its next update from
    `opt_state`). Vmap it over members."""
    loss0, g0 = jax.value_and_grad(loss_fn)(params, batch)
    d = one_step_direction(g0, params, h, optimizer, clip_norm, lr_scale, opt_state)

    def loss_at(eta):
        loss = loss_fn(jax.tree.map(lambda x, di: x - (eta * di).astype(x.dtype), params, d), batch)
        return jnp.where(jnp.isfinite(loss), loss, jnp.inf)

    return _search(loss_at, loss0, eta0, eta_trgt, float(delta), int(max_doublings), int(max_bisections),
                   enabled)


def estimate_eta_c(loss_fn: LossFn, params: Any, hyper: optim.Hyper, batch: Any, optimizer: Any,
                   eta0: jax.Array, eta_trgt: jax.Array, *, delta: float = 0.1,
                   clip_norm: Optional[float] = None, lr_scale: Any = None,
                   max_doublings: int = 40, max_bisections: int = 30) -> EtaC:
    """eta_c of every cohort member. `params`, `hyper`, `eta0`, `eta_trgt` carry a leading member
    axis K; `batch` (the fixed measurement batch) and `lr_scale` are shared. One jitted program."""
    dtype = jnp.result_type(float)

    def member(p, h, e0, et, b):
        return member_search(loss_fn, p, h, b, optimizer, e0, et, delta=delta, clip_norm=clip_norm,
                             lr_scale=lr_scale, max_doublings=max_doublings, max_bisections=max_bisections)

    fn = jax.jit(jax.vmap(member, in_axes=(0, 0, 0, 0, None)))
    return fn(params, hyper, jnp.asarray(eta0, dtype), jnp.asarray(eta_trgt, dtype), batch)


# ----------------------------------------------------------------------------- warmup savings
class WarmupSavings(NamedTuple):
    warmup: float  # length of the eta_c -> eta_trgt ramp at the original rate (the engine's `warmup`)
    t_reach: int
    t_save: int


def warmup_savings(eta_c: float, eta_trgt: float, t_wrm: int, forward_passes: int) -> WarmupSavings:
    """Section 6.1: starting at eta_init = eta_c with the same warmup rate alpha = eta_trgt / T_wrm,
    eta_t = eta_c + alpha t (updates counted from t = 1) reaches eta_trgt at
        T_reach = max(1, ceil(T_wrm (1 - eta_c / eta_trgt)))
    and, a training step costing about two forward passes, saves
        T_save = T_wrm - T_reach - ceil(T_fp / 2)
    (the paper's T_wrm eta_c/eta_trgt - T_fp/2 in whole steps). eta_c >= eta_trgt: the target is
    used from the first update, T_reach = 1 (the paper: "reached in a single step").
    The ramp is the engine's warmup with lr_init = eta_c and warmup = T_wrm (1 - eta_c/eta_trgt), whose
    slope (eta_trgt - eta_c) / warmup is alpha."""
    ratio = eta_c / eta_trgt
    ramp = max(1.0, t_wrm * (1.0 - ratio)) if ratio < 1.0 else 1.0
    # eta_c is measured in float32: a few ulps of the ratio must not move T_reach by a step
    # (T_wrm (1 - ratio) on a whole number: 16 x (1 - 0.37500001) gave 10 and 16 x (1 - 0.37499999) 11)
    t_reach = ceil_tolerant(ramp, tol=8 * FLOAT32_EPS * max(1.0, t_wrm * min(ratio, 1.0)))
    return WarmupSavings(ramp, t_reach, int(t_wrm) - t_reach - int(math.ceil(forward_passes / 2)))


# ----------------------------------------------------------------------------- cohort integration
def initial_guesses(cfgs: Sequence[Any], lrs: np.ndarray, lambda0: Optional[np.ndarray]) -> np.ndarray:
    """eta_0 per member, absolute: `eta_c.initial_guess` (in lr's units, like lr_init) or, when null,
    eta_trgt / T_wrm (Figure 5: the first lr of the ordinary linear warmup)."""
    out = []
    for m, cfg in enumerate(cfgs):
        guess = cfg.eta_c.initial_guess
        if guess is None:
            out.append(float(lrs[m]) / float(cfg.warmup))
        else:
            out.append(float(guess) / (float(lambda0[m]) if lambda0 is not None else 1.0))
    return np.asarray(out, np.float64)


def start_at_eta_c(workload: Any, params: Any, hyper: optim.Hyper, rule: Any, cfgs: Sequence[Any],
                   lrs: np.ndarray, lambda0: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Estimate eta_c for a cohort and return the absolute lr_init (min(eta_c, eta_trgt)) and warmup
    length per member, plus the summary fields. `params`: the members' initial parameters (K-stacked);
    `rule`: the update rule (engine.UpdateSpec: optimizer spec, clip norm, per-layer lr factors)."""
    w = workload
    ec = cfgs[0].eta_c
    est = estimate_eta_c(
        lambda p, b: w.loss_and_accuracy(p, b[0], b[1])[0], params, hyper,
        (w.data.x_probe, w.data.y_probe), rule.optimizer, initial_guesses(cfgs, lrs, lambda0),
        np.asarray(lrs, np.float64), delta=float(ec.delta), clip_norm=rule.clip, lr_scale=rule.lr_scale,
        max_doublings=int(ec.max_doublings), max_bisections=int(ec.max_bisections))
    est = jax.device_get(est)
    lr_inits, warmups, fields = [], [], []
    for m, cfg in enumerate(cfgs):
        eta_c, fp = float(est.eta_c[m]), int(est.forward_passes[m])
        sav = warmup_savings(eta_c, float(lrs[m]), int(cfg.warmup), fp)
        lr_inits.append(min(eta_c, float(lrs[m])))
        warmups.append(sav.warmup)
        fields.append({"eta_c": eta_c, "t_reach": sav.t_reach, "t_save": sav.t_save,
                       "eta_c_forward_passes": fp})
    return np.asarray(lr_inits), np.asarray(warmups), fields
