"""GI-Adam's v0 (Section 6.2): from a separate, untrained batch B0 (the authors' scripts; default) or
from the first update's own batch."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep import member_probe, member_step, optim
from sweep.engine import CohortTrainer, plan_cohort
from sweep.runner import dataset_for
from sweep.workload import build_workload

TINY = ["data=synthetic", "model.width=16", "model.depth=2", "steps=6", "probe.every=1",
        "probe.batch_size=64", "probe.lanczos_iters=30", "probe.lanczos_tol=1e-6", "optimizer=gi_adam", "lr=0.01"]


def _trainer(compose_cfg, *extra):
    cfg = compose_cfg(*TINY, *extra)
    return CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg]))


def test_full_batch_seeding_equals_update_seeding(compose_cfg):
    """Full batch with the whole training set as measurement batch: B0 = B1 = the probe batch, so
    v_1 = b2 g^2 + (1 - b2) g^2 = g^2 either way: the two conventions give the same trajectory and
    the same recorded preconditioned sharpness (step 0 included)."""
    full = ("batch_size=0", "probe.batch_size=256", "data.n_train=256")
    a = _trainer(compose_cfg, *full, "optimizer.v0_batch=separate").run()
    b = _trainer(compose_cfg, *full, "optimizer.v0_batch=update").run()
    for col in ("train_loss", "probe_loss", "sharpness", "precond_sharpness"):
        np.testing.assert_allclose(a.traces[0][col], b.traces[0][col], rtol=1e-4)


def test_separate_seed_is_a_batch_gradient_and_enters_step_zero(compose_cfg):
    """With minibatches, v0 = g_B0^2 for a batch of the training batch size, and the step-0
    preconditioner uses v_1 = b2 g_B0^2 + (1 - b2) g_probe^2 (checked against a direct computation)."""
    tr = _trainer(compose_cfg, "batch_size=32", "optimizer.v0_batch=separate")
    m = jax.tree.map(lambda a: a[0], tr.init_members())
    h = jax.tree.map(lambda a: a[0], tr.plan.hyper)
    nu0 = optim.adam_state(m.opt_state).nu
    xb, yb = member_step.gi_seed_batch(tr.ctx)
    assert xb.shape[0] == 32
    g_b0 = jax.grad(lambda q: tr.w.loss_and_accuracy(q, xb, yb)[0])(m.params)
    for n, g in zip(jax.tree.leaves(nu0), jax.tree.leaves(g_b0)):
        np.testing.assert_allclose(n, np.square(g), rtol=1e-4, atol=1e-10)
    d = tr.w.data
    g_probe = jax.grad(lambda q: tr.w.loss_and_accuracy(q, d.x_probe, d.y_probe)[0])(m.params)
    first = member_probe.first_update_nu(tr.ctx, m, h, d)
    b2 = float(h.b2)
    for f, n, g in zip(jax.tree.leaves(first), jax.tree.leaves(nu0), jax.tree.leaves(g_probe)):
        np.testing.assert_allclose(f, b2 * np.asarray(n) + (1 - b2) * np.square(g), rtol=1e-4, atol=1e-10)
    upd = _trainer(compose_cfg, "batch_size=32", "optimizer.v0_batch=update")
    assert float(sum(jnp.sum(x) for x in jax.tree.leaves(optim.adam_state(upd.init_members().opt_state).nu))) == 0.0


def test_bad_v0_batch_is_one_line(compose_cfg):
    from sweep.config import ConfigError

    with pytest.raises(ConfigError, match="optimizer.v0_batch=first: allowed separate, update"):
        compose_cfg(*TINY, "optimizer.v0_batch=first")
