"""Persistent catapult warmup (Section 7, Appendix C, Algorithm 3): `warmup_mode=catapult`.

    theta* = theta_0 (reference point)
    while eta < eta_trgt:
        if L(theta_t) < L(theta*):
            [eta_lwr, eta_uppr] containing eta_c, from theta_t, by Algorithms 1 and 2 (tolerance delta)
            eta = eta_uppr;  theta* = theta_t
        else: continue
    (then eta = eta_trgt; `decay` applies from there as it would after a linear warmup)

How the engine runs it (sweep/engine.py), at iteration t (probe at step t, then update t + 1):
  - a member is *warming* until its lr reaches eta_trgt, and while it is not frozen (diverged);
  - the comparison loss L(theta_t) of every warming member is computed (behind an unbatched
    `lax.cond` on "any member warming", so it costs nothing once all have reached eta_trgt);
  - a member *needs a search* when L(theta_t) < L(theta*). The reference loss starts at +inf, so
    step 0 (theta_0, whose loss is L(theta*) in the paper's Algorithm 3) always searches: that is
    the paper's step 1, "start with theta* = theta_0 and estimate [eta_lwr, eta_uppr]";
  - the search (sweep.eta_c.member_search, Algorithms 1 and 2 as in Section 6.1) runs behind an
    unbatched `lax.cond` on "any member needs one" and is vmapped over the cohort with the members
    that need none disabled (their loops stop at once); each member's result is selected by its own
    flag, so a run's record is the same alone or in any cohort;
  - its initial guess is the member's current eta (at theta_0: `eta_c.initial_guess`, in lr's
    units, or eta_trgt / 1000 when null); eta = min(eta_uppr, eta_trgt); theta* = theta_t;
  - update t + 1 uses that eta, which is also the trace's `lr` and the 2/lr threshold.
Searches start from the current eta and Algorithm 1 only doubles, so a search does not lower eta
(the result is >= the guess, equal when the loss already goes up at the current eta; the one
exception is Algorithm 2 bisecting [eta_trgt/2, eta_trgt] when the loss goes down at some eta >=
eta_trgt but up at eta_trgt itself, which a non-convex loss allows).

Choices the paper leaves open (the authors' public code, dayal-kalra/why-warmup, has no catapult
warmup and no eta_c search), each a config key:
  - `catapult.loss` (which loss Algorithm 3 compares and the search evaluates): `probe` (default)
    = the fixed measurement batch (data.x_probe): deterministic, no minibatch noise in the
    comparison with L(theta*) (a different minibatch would be compared at every step), and the same
    loss as the trace's `probe_loss` column, so a run's catapults can be read off its trace;
    `batch` = the current training minibatch (the batch the next update uses), one loss per step.
  - `catapult.direction` (the step the search's "Optimizer(eta, theta_t)" takes): `state` (default)
    = the optimizer's next update from its current state (momentum, Adam moments), i.e. the update
    whose one-step loss increase is the catapult; `fresh` = its first update from a fresh state, as
    Section 6.1's search at theta_0. The two agree at theta_0 and for plain SGD (Figure 7).
  - the first search's initial guess: `eta_c.initial_guess` (in lr's units) or eta_trgt / 1000
    (Appendix B.2's default eta_0 = 1e-4 is absolute; eta_trgt / 1000 is its scale-free analogue and
    costs ~10 doublings); later searches start at the current eta.
  - tolerance and caps: `eta_c.delta` (0.1, "in all our experiments"; ~0.01 advised for Adam),
    `eta_c.max_doublings`, `eta_c.max_bisections`.
`warmup` (T_wrm) and `lr_init` are unused in this mode (lr_init must stay 0).

Per member, as data in the engine's carry (`CatapultState`): the current eta, L(theta*), the number
of searches and of catapults (searches that raised eta), the searches' forward passes, and the
update at which eta_trgt was reached (T_reach; 0 = not yet).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sweep import optim

DEFAULT_GUESS_FRACTION = 1e-3  # eta_0 at theta_0 when eta_c.initial_guess is null: eta_trgt / 1000


class CatapultState(NamedTuple):
    """One member's persistent-catapult state (leading axis K in the engine's carry)."""

    lr: jax.Array  # float32: eta while warming; before the first search, the first search's guess
    ref_loss: jax.Array  # float32: L(theta*); +inf until the first search
    searches: jax.Array  # int32: eta_c searches (reference points set), theta_0's included
    catapults: jax.Array  # int32: searches that set a new eta below eta_trgt (see `advance`)
    forward_passes: jax.Array  # int32: loss evaluations of the searches, L(theta_t) included
    t_reach: jax.Array  # int32: the first update that used eta_trgt; 0 = not reached


def init_state(eta0: Any) -> CatapultState:
    """State at theta_0 for one member (eta0: the first search's initial guess, absolute)."""
    i0 = jnp.asarray(0, jnp.int32)
    return CatapultState(jnp.asarray(eta0, jnp.float32), jnp.asarray(jnp.inf, jnp.float32), i0, i0, i0, i0)


def initial_guesses(cfgs: Sequence[Any], lrs: Optional[Sequence[float]] = None) -> np.ndarray:
    """eta_0 of each member's first search (absolute): `eta_c.initial_guess` in lr's units (like lr;
    with lr_unit=sharpness a multiple of 1/lambda0) or, when null, eta_trgt / 1000 (a guess well below
    any eta_c; Algorithm 1 doubles up from it in ~10 forward passes). `lrs`: the absolute eta_trgt of
    each member (cfg.lr divided by lambda0 under lr_unit=sharpness); the unit scale is lrs / cfg.lr."""
    out = []
    for m, cfg in enumerate(cfgs):
        lr_abs = float(lrs[m]) if lrs is not None else float(cfg.lr)
        guess = cfg.eta_c.get("initial_guess", None)
        out.append(lr_abs * DEFAULT_GUESS_FRACTION if guess is None else float(guess) * lr_abs / float(cfg.lr))
    return np.asarray(out, np.float32)


def warming(state: CatapultState, active: jax.Array) -> jax.Array:
    """Whether Algorithm 3's loop still runs for this member (eta < eta_trgt, not frozen)."""
    return active & (state.t_reach == 0)


def needs_search(state: CatapultState, active: jax.Array, loss_now: jax.Array) -> jax.Array:
    """Algorithm 3, line 4: L(theta_t) < L(theta*) (false for NaN)."""
    return warming(state, active) & (loss_now < state.ref_loss)


def advance(state: CatapultState, need: jax.Array, loss_now: jax.Array, eta_c: jax.Array,
            forward_passes: jax.Array, eta_trgt: jax.Array, t: jax.Array) -> CatapultState:
    """Algorithm 3, lines 5-7 for a member that searched (`need`), before update t; otherwise the
    state is kept. T_reach is set at the first update whose eta is eta_trgt.

    A search *induces a catapult* when it sets eta to a new value below eta_trgt: that value is
    Algorithm 2's eta_uppr, at which the one-step loss goes up (by at most delta) by construction.
    A search that keeps eta (the loss already goes up at the current eta) or that ends at eta_trgt
    is not counted. With every step probed and no decay, the trace's lr changes from row to row
    catapults - 1 + [T_reach > 1] times (the first catapult's eta is row 0's lr)."""
    eta_new = jnp.minimum(jnp.asarray(eta_c, jnp.float32), eta_trgt)
    lr = jnp.where(need, eta_new, state.lr)
    raised = need & (eta_new < eta_trgt) & ((state.searches == 0) | (eta_new != state.lr))
    t_reach = jnp.where((state.t_reach == 0) & (lr >= eta_trgt), jnp.asarray(t, jnp.int32), state.t_reach)
    return CatapultState(
        lr=lr,
        ref_loss=jnp.where(need, jnp.asarray(loss_now, jnp.float32), state.ref_loss),
        searches=state.searches + need.astype(jnp.int32),
        catapults=state.catapults + raised.astype(jnp.int32),
        forward_passes=state.forward_passes + jnp.where(need, forward_passes, 0).astype(jnp.int32),
        t_reach=t_reach.astype(jnp.int32),
    )


def learning_rate(state: CatapultState, t: jax.Array, h: optim.Hyper, total_steps: int, cosine: bool) -> jax.Array:
    """The lr of update t: the catapult eta while warming; from T_reach on, the ordinary post-warmup
    schedule with T_wrm = T_reach (constant eta_trgt, or cosine decay over the remaining updates)."""
    reached = state.t_reach > 0
    after = optim.learning_rate(t, h._replace(lr_init=h.lr, warmup=jnp.maximum(state.t_reach, 1).astype(jnp.float32)),
                                total_steps, cosine)
    return jnp.where(reached, after, state.lr)


def summary(state: CatapultState) -> list[dict]:
    """Per member summary fields from the final (host) state of a cohort."""
    s = jax.device_get(state)
    out = []
    for m in range(len(np.asarray(s.lr))):
        t_reach = int(s.t_reach[m])
        out.append({"catapults": int(s.catapults[m]), "catapult_searches": int(s.searches[m]),
                    "catapult_forward_passes": int(s.forward_passes[m]),
                    "t_reach": t_reach if t_reach > 0 else None})
    return out
