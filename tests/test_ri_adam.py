"""RI-Adam (Kalra & Barkeshli App. I.3, Fig. 31): Adam from a random second moment v0 with the norm of
the initial gradients' squares; checked against the definition and against optax's own Adam."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sweep import member_step, optim
from sweep.engine import CohortTrainer, plan_cohort
from sweep.runner import dataset_for
from sweep.workload import build_workload

TINY = ["data=synthetic", "model.width=16", "model.depth=2", "steps=4", "probe.every=1", "batch_size=32",
        "probe.batch_size=64", "probe.lanczos_iters=30", "probe.lanczos_tol=1e-6", "optimizer=ri_adam", "lr=0.01"]


def _norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))))


def test_random_second_moment_has_the_norm_of_the_squared_gradient():
    grads = {"w": jnp.arange(12.0).reshape(3, 4) - 5.0, "b": jnp.asarray([0.5, -2.0])}
    nu = optim.random_second_moment(grads, jax.random.PRNGKey(3))
    assert jax.tree.structure(nu) == jax.tree.structure(grads)
    assert all(bool(jnp.all(x >= 0)) for x in jax.tree.leaves(nu))
    np.testing.assert_allclose(_norm(nu), _norm(jax.tree.map(jnp.square, grads)), rtol=1e-6)
    again = optim.random_second_moment(grads, jax.random.PRNGKey(3))
    other = optim.random_second_moment(grads, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(again["w"], nu["w"])
    assert not np.allclose(other["w"], nu["w"])
    # random, not the gradient's own pattern: v0 of a zero gradient entry need not be zero
    assert float(nu["w"][1, 1]) > 0.0 and float(grads["w"][1, 1]) == 0.0


def test_engine_seeds_v0_and_its_first_update_is_optax_adam_from_that_state(compose_cfg):
    cfg = compose_cfg(*TINY)
    tr = CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg]))
    assert tr.ctx.update_rule.name == "adam" and tr.ctx.optimizer.adaptive
    m = jax.tree.map(lambda a: a[0], tr.init_members())
    h = jax.tree.map(lambda a: a[0], tr.plan.hyper)
    nu0 = optim.adam_state(m.opt_state).nu
    xb, yb = member_step.gi_seed_batch(tr.ctx)
    g0 = jax.grad(lambda q: tr.w.loss_and_accuracy(q, xb, yb)[0])(m.params)
    np.testing.assert_allclose(_norm(nu0), _norm(jax.tree.map(jnp.square, g0)), rtol=1e-5)
    for n, g in zip(jax.tree.leaves(nu0), jax.tree.leaves(g0)):
        assert not np.allclose(n, np.square(g))  # random, not GI-Adam's g0^2
    # one update from that state equals optax's Adam from the same state (independent code path)
    g = jax.grad(lambda q: tr.w.loss_and_accuracy(q, xb, yb)[0])(m.params)
    ours, _ = optim.direction("ri_adam", h, None).update(g, m.opt_state, m.params)
    adam = optax.scale_by_adam(b1=float(h.b1), b2=float(h.b2), eps=float(h.eps))
    state = adam.init(m.params)._replace(nu=nu0)
    ref, _ = adam.update(g, state, m.params)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # by hand: m1 = (1-b1) g, v1 = b2 v0 + (1-b2) g^2, both bias-corrected
    b1, b2, eps = float(h.b1), float(h.b2), float(h.eps)
    for a, gi, vi in zip(jax.tree.leaves(ours), jax.tree.leaves(g), jax.tree.leaves(nu0)):
        expect = gi / (np.sqrt((b2 * vi + (1 - b2) * np.square(gi)) / (1 - b2)) + eps)
        np.testing.assert_allclose(a, expect, rtol=1e-5, atol=1e-8)


def test_ri_adam_runs_and_records_its_preconditioned_sharpness(compose_cfg):
    cfg = compose_cfg(*TINY)
    res = CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg])).run()
    trace = res.traces[0]
    assert np.isfinite(trace["precond_sharpness"].to_numpy()).all()
    assert np.isfinite(trace["train_loss"].to_numpy()[:-1]).all()  # the last row (step 4) is a probe only
    np.testing.assert_allclose(trace["threshold"] * trace["lr"], (2 + 2 * 0.9) / (1 - 0.9), rtol=1e-5)
