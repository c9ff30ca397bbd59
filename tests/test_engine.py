"""The cohort engine: stability boundary on a quadratic, cohort == runs alone, frozen divergence."""
import numpy as np
import pandas as pd
import pytest

from sweep.engine import CohortTrainer, first_same_init, plan_cohort, probe_mask
from sweep.grid import Cohort, RunSpec
from sweep.identity import run_id
from sweep.runner import dataset_for, run_cohort
from sweep.workload import build_workload

SMALL = ["data=synthetic", "model.width=16", "model.depth=3", "steps=24", "probe.every=4",
         "probe.batch_size=64", "batch_size=32", "probe.lanczos_iters=30", "probe.lanczos_tol=1e-7"]


def _train(cfgs):
    ds = dataset_for(cfgs[0])
    trainer = CohortTrainer(build_workload(cfgs[0], ds), plan_cohort(cfgs), chunk=8)
    return trainer.run()


# Hessian of the linear model's MSE = factor x X^T X / N (x) I_C, per normalization
_MSE_HESSIAN_FACTOR = {"half_mean": lambda c: 1.0 / c, "mean": lambda c: 2.0 / c, "half_sum": lambda c: 1.0}


@pytest.mark.parametrize("reduction", sorted(_MSE_HESSIAN_FACTOR))
def test_quadratic_stability_boundary(compose_cfg, tmp_path, reduction):
    """A linear model with MSE is a quadratic whose top curvature lam is known by hand:
    half_mean L = 1/(2 N C) sum ||W x - y||^2 has Hessian (1/(N C)) X^T X (x) I_C, mean twice that,
    half_sum C times that. Full-batch GD is stable for lr < 2/lam and diverges (NaN/inf) above it."""
    base = ["data=synthetic", "model.depth=1", "model.use_bias=false", "batch_size=0", "steps=300",
            "probe.every=50", "probe.lanczos_iters=40", "probe.lanczos_tol=1e-8", f"mse_reduction={reduction}"]
    cfg = compose_cfg(*base)
    x = dataset_for(cfg).x_train.astype(np.float64)
    lam = _MSE_HESSIAN_FACTOR[reduction](dataset_for(cfg).num_classes) * np.linalg.eigvalsh(x.T @ x / len(x))[-1]
    # 2.5/lam grows the top mode 1.5x per step: the loss overflows to inf well within 300 steps
    cfgs = [compose_cfg(*base, f"lr={c / lam}") for c in (1.9, 2.5)]
    cohort = Cohort("q", [RunSpec(run_id(c), c, {}) for c in cfgs])
    stable, unstable = run_cohort(cohort, tmp_path / "q")
    assert stable["summary"]["lambda0"] == pytest.approx(lam, rel=1e-4)
    assert stable["outcome"] == "converged"
    assert unstable["outcome"] == "diverged"
    assert unstable["summary"]["divergence_step"] is not None


@pytest.mark.parametrize("members", ["vmap", "map"])
def test_cohort_equals_runs_alone(compose_cfg, members):
    """Members of a cohort follow the same trajectories as the same runs trained alone
    (up to float32 reassociation from vectorization: rtol 1e-4 on every trace column), whether
    the probes are vmapped or mapped over members."""
    extra = (*SMALL, f"probe.members={members}")
    cfgs = [compose_cfg(*extra, "lr=0.05"), compose_cfg(*extra, "lr=0.2", "warmup=8"),
            compose_cfg(*extra, "lr=0.1", "seed=3", "optimizer.momentum=0.5")]
    together = _train(cfgs)
    for m, cfg in enumerate(cfgs):
        alone = _train([cfg])
        pd.testing.assert_frame_equal(together.traces[m], alone.traces[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(together.final["final_train_loss"][m], alone.final["final_train_loss"][0],
                                   rtol=1e-4)


def test_diverged_member_is_frozen_and_others_untouched(compose_cfg):
    """Swap one member for a diverging one: the others stay bit-identical; the diverged member
    stops at its divergence step and reports NaN afterwards."""
    a, b = compose_cfg(*SMALL, "lr=0.05"), compose_cfg(*SMALL, "lr=0.1", "warmup=4")
    tame, wild = compose_cfg(*SMALL, "lr=0.02"), compose_cfg(*SMALL, "lr=500.0")
    ref = _train([a, b, tame])
    res = _train([a, b, wild])
    for m in (0, 1):
        pd.testing.assert_frame_equal(res.traces[m], ref.traces[m], check_exact=True)
    assert res.divergence_step[2] is not None and ref.divergence_step[2] is None
    div = res.divergence_step[2]
    assert res.traces[2].step.max() <= div  # the diverged member's trace ends at its divergence
    assert res.steps_run[2] == div
    for m in (0, 1):
        assert np.isfinite(res.traces[m]["probe_loss"]).all()


def test_all_diverged_stops_early(compose_cfg):
    cfgs = [compose_cfg(*SMALL, "lr=500.0", "steps=64"), compose_cfg(*SMALL, "lr=800.0", "steps=64")]
    res = _train(cfgs)
    assert all(s is not None for s in res.divergence_step)
    assert res.timings["steps"] < 64 and res.steps_run == res.divergence_step


def test_probe_schedule(compose_cfg):
    cfg = compose_cfg("steps=100", "probe.dense_steps=5", "probe.every=25")
    assert list(np.flatnonzero(probe_mask(cfg))) == [0, 1, 2, 3, 4, 5, 25, 50, 75, 100]
    cfg = compose_cfg("steps=1000", "probe.log_points=4")
    assert list(np.flatnonzero(probe_mask(cfg))) == [0, 1, 10, 100, 1000]


def test_adam_engine_matches_optax_adam(compose_cfg):
    """The engine's Adam trajectory (full batch) equals a plain optax.adam loop."""
    import jax
    import optax

    cfg = compose_cfg(*SMALL, "optimizer=adam", "lr=0.01", "batch_size=0", "steps=5", "probe.every=5",
                      "probe.sharpness=false", "probe.precond_sharpness=false")
    ds = dataset_for(cfg)
    w = build_workload(cfg, ds)
    trainer = CohortTrainer(w, plan_cohort([cfg]), chunk=8)
    carry = trainer.initial_state()
    params = jax.tree.map(lambda p: p[0], carry.members.params)
    res = trainer.run(carry=trainer.initial_state())
    tx = optax.adam(0.01)
    state = tx.init(params)
    for _ in range(5):
        g = jax.grad(lambda p: w.loss_and_accuracy(p, w.data.x_train, w.data.y_train)[0])(params)
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
    loss = float(w.loss_and_accuracy(params, w.data.x_probe, w.data.y_probe)[0])
    assert res.traces[0]["probe_loss"].iloc[-1] == pytest.approx(loss, rel=1e-5)


def test_adam_preconditioned_sharpness_recorded(compose_cfg):
    cfgs = [compose_cfg(*SMALL, "optimizer=adam", "lr=0.001"),
            compose_cfg(*SMALL, "optimizer=gi_adam", "optimizer.v0_batch=update", "lr=0.001")]
    adam = _train([cfgs[0]]).traces[0]
    gi = _train([cfgs[1]]).traces[0]
    assert adam["precond_sharpness"].notna().all()
    # threshold column is Adam's (2 + 2 b1) / (lr (1 - b1)) = 38 / lr
    np.testing.assert_allclose(adam["threshold"], 38.0 / adam["lr"], rtol=1e-5)
    # GI-Adam seeded from the measured batch itself: its initial preconditioned sharpness is
    # sqrt(1 - b2) of Adam's (Section 6.2) on this toy, whose gradients are all far above eps
    ratio = gi["precond_sharpness"].iloc[0] / adam["precond_sharpness"].iloc[0]
    assert ratio == pytest.approx(np.sqrt(1 - 0.999), rel=0.05)


def test_float64_probe_is_really_float64(compose_cfg):
    """probe.dtype=float64 computes the Hessian in float64 end to end (params, inputs, loss):
    lambda0 agrees with a dense float64 eigendecomposition to 1e-9."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    jax.config.update("jax_enable_x64", True)
    try:
        cfg = compose_cfg("data=synthetic", "model.width=6", "model.depth=2", "probe.batch_size=32",
                          "probe.dtype=float64", "probe.lanczos_iters=60", "probe.lanczos_tol=1e-12")
        w = build_workload(cfg, dataset_for(cfg))
        trainer = CohortTrainer(w, plan_cohort([cfg]))
        lam = trainer.initial_sharpness()[0]
        params = jax.tree.map(lambda p: p[0].astype(jnp.float64), trainer.init_members().params)
        flat, unravel = ravel_pytree(params)
        x = w.data.x_probe.astype(jnp.float64)
        dense = jnp.linalg.eigvalsh(jax.hessian(lambda f: w.loss_and_accuracy(unravel(f), x, w.data.y_probe)[0])(flat))
        assert abs(lam - float(dense[-1])) / float(dense[-1]) < 1e-9
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_float64_probes_train_with_minibatches(compose_cfg, tmp_path, optimizer):
    """probe.dtype=float64 through the whole engine with minibatches (the epoch permutation and the
    probe fields used to come out int64/float64 under x64 and broke the scan's cond branches)."""
    import jax

    try:
        cfg = compose_cfg(*SMALL, f"optimizer={optimizer}", "lr=0.01", "probe.dtype=float64", "steps=8")
        rec = run_cohort(Cohort("f", [RunSpec(run_id(cfg), cfg, {})]), tmp_path / "f64")[0]
    finally:
        jax.config.update("jax_enable_x64", False)
    assert rec["status"] == "done" and np.isfinite(rec["summary"]["max_sharpness"])
    if optimizer == "adam":
        assert np.isfinite(rec["summary"]["initial_precond_sharpness"])


def test_step0_probe_computed_once_per_initialization(compose_cfg):
    """Members with the same seed and init scale start as the same network: the step-0 probe is
    computed for the first of them and copied; every member's step-0 row equals its run alone."""
    cfgs = [compose_cfg(*SMALL, "lr=0.05"), compose_cfg(*SMALL, "lr=0.2", "warmup=8"),
            compose_cfg(*SMALL, "lr=0.05", "seed=1")]
    trainer = CohortTrainer(build_workload(cfgs[0], dataset_for(cfgs[0])), plan_cohort(cfgs), chunk=8)
    assert first_same_init(trainer.plan).tolist() == [0, 0, 2]
    res = trainer.run()
    cols = ["probe_loss", "probe_acc", "grad_norm", "sharpness", "hvps", "test_loss", "test_acc"]
    row = [t[cols].iloc[0].to_numpy(float) for t in res.traces]
    np.testing.assert_array_equal(row[0], row[1])
    assert not np.allclose(row[0], row[2])  # another seed: another network
    alone = _train([cfgs[1]])
    np.testing.assert_allclose(row[1], alone.traces[0][cols].iloc[0].to_numpy(float), rtol=1e-5)
