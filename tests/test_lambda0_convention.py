"""lambda0's convention (probe.lambda0_batches): on the fixed measurement batch (default) or, as the
authors compute it, the mean over N training batches; checked against dense eigvalsh of each batch's
Hessian on a model small enough to form it."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from sweep.config import ConfigError
from sweep import member_probe
from sweep.engine import CohortTrainer, lambda0_batches, plan_cohort
from sweep.identity import lambda0_key, run_id
from sweep.runner import dataset_for
from sweep.workload import build_workload

TINY = ["data=synthetic", "data.n_train=96", "model.width=6", "model.depth=2", "steps=2", "batch_size=16",
        "probe.batch_size=32", "probe.lanczos_iters=60", "probe.lanczos_tol=1e-7"]


def _trainer(compose_cfg, *extra):
    cfg = compose_cfg(*TINY, *extra)
    return cfg, CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg]))


def _dense_top(tr, x, y) -> float:
    m = jax.tree.map(lambda a: a[0], tr.init_members())
    loss_of_flat, flat = member_probe.flat_loss(tr.ctx, m.params, x, y)
    return float(np.linalg.eigvalsh(np.asarray(jax.hessian(loss_of_flat)(flat), np.float64))[-1])


def test_lambda0_is_the_mean_over_training_batches_when_asked(compose_cfg):
    _, tr = _trainer(compose_cfg, "probe.lambda0_batches=3")
    batches = lambda0_batches(tr.ctx)
    assert len(batches) == 3 and all(x.shape[0] == 16 for x, _ in batches)
    train = np.asarray(tr.w.data.x_train).reshape(96, -1)
    rows = [{int(np.flatnonzero((train == r).all(axis=1))[0]) for r in np.asarray(x).reshape(16, -1)}
            for x, _ in batches]
    assert all(len(r) == 16 for r in rows) and rows[0] != rows[1]  # training examples, distinct batches
    expected = np.mean([_dense_top(tr, x, y) for x, y in batches])
    np.testing.assert_allclose(tr.initial_sharpness()[0], expected, rtol=1e-4)
    _, default = _trainer(compose_cfg)
    d = default.w.data
    np.testing.assert_allclose(default.initial_sharpness()[0], _dense_top(default, d.x_probe, d.y_probe), rtol=1e-4)
    assert abs(default.initial_sharpness()[0] - expected) > 1e-4 * expected  # a different number


def test_full_batch_lambda0_uses_the_whole_training_set_once(compose_cfg):
    _, tr = _trainer(compose_cfg, "probe.lambda0_batches=10", "batch_size=0")
    (x, _), = lambda0_batches(tr.ctx)
    assert x.shape[0] == 96


def test_the_convention_keys_the_lambda0_cache_and_keeps_default_run_ids(compose_cfg):
    base = compose_cfg(*TINY)
    ours = compose_cfg(*TINY, "probe.lambda0_batches=0")
    authors = compose_cfg(*TINY, "probe.lambda0_batches=10")
    assert run_id(ours) == run_id(base) and lambda0_key(ours) == lambda0_key(base)
    assert run_id(authors) != run_id(base) and lambda0_key(authors) != lambda0_key(base)
    # measured on training batches, lambda0 depends on the batch size; on the measurement batch it does not
    assert lambda0_key(compose_cfg(*TINY, "batch_size=32")) == lambda0_key(base)
    assert lambda0_key(compose_cfg(*TINY, "batch_size=32", "probe.lambda0_batches=10")) != lambda0_key(authors)
    with pytest.raises(ConfigError, match="probe.lambda0_batches=-1: must be >= 0"):
        compose_cfg(*TINY, "probe.lambda0_batches=-1")
