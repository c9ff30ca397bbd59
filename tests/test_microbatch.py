"""Bounded-memory probes (issue 12): HVPs, losses and evaluations over micro-batches sized in bytes
equal the full-batch values; the micro-batched sharpness matches dense eigenvalues."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from omegaconf import open_dict

from sweep import curvature, engine
from sweep.engine import CohortTrainer, plan_cohort
from sweep.models.fcn import FCN
from sweep.models.param import Scheme
from sweep.runner import dataset_for
from sweep.workload import build_workload


def _problem():
    model = FCN(3, depth=3, width=8, scheme=Scheme("sp"))
    x = jax.random.normal(jax.random.PRNGKey(1), (48, 5))
    y = jax.nn.one_hot(jnp.arange(48) % 3, 3)
    flat, unravel = ravel_pytree(model.init(jax.random.PRNGKey(0), x)["params"])

    def chunk_loss(f, xb, yb):
        return 0.5 * jnp.mean((model.apply({"params": unravel(f)}, xb) - yb) ** 2)

    return chunk_loss, flat, x, y


def test_examples_per_microbatch():
    assert curvature.examples_per_microbatch(512, 1000.0, 0) == 512  # 0: no split
    assert curvature.examples_per_microbatch(512, 1000.0, 10**9) == 512
    assert curvature.examples_per_microbatch(512, 1000.0, 100_000) == 64  # divisor of 512 <= 100
    assert curvature.examples_per_microbatch(60, 1000.0, 7_000) == 6  # largest divisor of 60 <= 7
    assert curvature.examples_per_microbatch(60, 1000.0, 10) == 1


@pytest.mark.parametrize("size", [1, 8, 16])
def test_microbatched_loss_and_hvp_equal_full_batch(size):
    chunk_loss, flat, x, y = _problem()
    full = lambda f: chunk_loss(f, x, y)  # noqa: E731
    mb = curvature.microbatched(chunk_loss, x, y, flat, size)
    np.testing.assert_allclose(float(mb.loss(flat)), float(full(flat)), rtol=1e-6)
    v = jax.random.normal(jax.random.PRNGKey(5), flat.shape)
    np.testing.assert_allclose(np.asarray(mb.hvp(v)), np.asarray(curvature.hvp(full, flat, v)),
                               rtol=1e-4, atol=1e-6)
    dense = float(jnp.linalg.eigvalsh(jax.hessian(full)(flat))[-1])
    eig = curvature.microbatched_sharpness(chunk_loss, x, y, flat, size, v, 40, 1e-7)
    assert abs(float(eig.value) - dense) / dense < 1e-4


def test_engine_probes_over_microbatches_equal_whole_batch(compose_cfg):
    small = ["data=synthetic", "model.width=16", "model.depth=3", "steps=8", "probe.every=4",
             "probe.batch_size=64", "batch_size=32", "probe.lanczos_iters=30", "probe.lanczos_tol=1e-7"]

    def run(budget):
        cfgs = [compose_cfg(*small, "lr=0.05"), compose_cfg(*small, "lr=0.1", "seed=1")]
        for c in cfgs:
            with open_dict(c):
                c.probe.microbatch_bytes = budget
        tr = CohortTrainer(build_workload(cfgs[0], dataset_for(cfgs[0])), plan_cohort(cfgs), chunk=4)
        return tr, tr.run()

    whole_tr, whole = run(0)
    tr, mb = run(4096)
    assert whole_tr.ctx.probe_microbatch == 64
    assert 1 <= tr.ctx.probe_microbatch < 64 and 64 % tr.ctx.probe_microbatch == 0
    assert tr.ctx.eval_batch(tr.w.data.x_test) < whole_tr.ctx.eval_batch(whole_tr.w.data.x_test)
    for a, b in zip(whole.traces, mb.traces):
        for col in ("probe_loss", "probe_acc", "grad_norm", "sharpness", "test_loss", "test_acc", "train_loss"):
            np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=2e-4, atol=1e-6, err_msg=col)
    for key in whole.final:
        np.testing.assert_allclose(mb.final[key], whole.final[key], rtol=1e-5, err_msg=key)


def test_adam_preconditioner_and_lambda0_over_microbatches_equal_whole_batch(compose_cfg):
    """The two probe paths outside the probe program honour probe.microbatch_bytes too: the first
    update's second moment (Adam's preconditioned sharpness) and lambda0 (lr_unit=sharpness). Before,
    both took the whole probe batch's gradient/HVPs, so an LM-4-128 run with a 256 MiB budget still
    grew to >6 GB resident."""
    small = ["data=synthetic", "model.width=16", "model.depth=3", "steps=6", "probe.every=3",
             "probe.batch_size=64", "batch_size=32", "probe.lanczos_iters=30", "probe.lanczos_tol=1e-7",
             "optimizer=adam", "lr_unit=absolute"]

    def trainer(budget):
        cfgs = [compose_cfg(*small, "lr=0.001"), compose_cfg(*small, "lr=0.003", "seed=1")]
        for c in cfgs:
            with open_dict(c):
                c.probe.microbatch_bytes = budget
        return CohortTrainer(build_workload(cfgs[0], dataset_for(cfgs[0])), plan_cohort(cfgs), chunk=3)

    def lambda0_temp_bytes(tr):
        """lambda0 and the XLA temporaries of its compiled program (this trainer's, fresh)."""
        engine._PROGRAMS.clear()
        value = tr.initial_sharpness()
        (prog,) = [p for key, p in engine._PROGRAMS.items() if key[0].startswith("lambda0")]
        return value, prog.memory_analysis().temp_size_in_bytes

    whole_tr, tr = trainer(0), trainer(4096)
    assert tr.ctx.probe_microbatch < 64
    (lam_whole, bytes_whole), (lam_mb, bytes_mb) = lambda0_temp_bytes(whole_tr), lambda0_temp_bytes(tr)
    np.testing.assert_allclose(lam_mb, lam_whole, rtol=1e-4)
    assert bytes_mb < bytes_whole  # the micro-batched program keeps less (equal before the fix)
    whole, mb = whole_tr.run(), tr.run()
    for a, b in zip(whole.traces, mb.traces):
        assert np.isfinite(a["precond_sharpness"].to_numpy()).all()
        for col in ("sharpness", "precond_sharpness", "threshold", "train_loss"):
            np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=2e-4, atol=1e-6, err_msg=col)


def test_memory_budget_is_an_execution_setting_with_whole_batch_values(compose_cfg):
    """memory.budget_mib (issue 19) micro-batches probes, lambda0 and evaluations like the older
    probe.microbatch_bytes, but leaves run ids alone; the values equal the whole batch's."""
    from sweep.identity import run_id

    small = ["data=synthetic", "model.width=16", "model.depth=3", "steps=6", "probe.every=3",
             "probe.batch_size=64", "batch_size=32", "probe.lanczos_iters=30", "probe.lanczos_tol=1e-7",
             "lr_unit=sharpness", "lr=1.0"]
    whole_cfg, mb_cfg = compose_cfg(*small, "memory.budget_mib=0"), compose_cfg(*small, "memory.budget_mib=0.004")
    assert run_id(whole_cfg) == run_id(mb_cfg) == run_id(compose_cfg(*small))

    def trainer(cfg):
        return CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg]), chunk=3)

    whole_tr, tr = trainer(whole_cfg), trainer(mb_cfg)
    assert whole_tr.ctx.probe_microbatch == 64 and 1 <= tr.ctx.probe_microbatch < 64
    np.testing.assert_allclose(tr.initial_sharpness(), whole_tr.initial_sharpness(), rtol=1e-4)
    whole, mb = whole_tr.run(), tr.run()
    for a, b in zip(whole.traces, mb.traces):
        for col in ("probe_loss", "grad_norm", "sharpness", "test_loss", "train_loss"):
            np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=2e-4, atol=1e-6, err_msg=col)


def test_default_memory_budget_is_a_laptop_size(compose_cfg, monkeypatch):
    """null: the lesser of 256 MiB on a CPU (1 GiB elsewhere) and 1/8 of the device's memory;
    probe.microbatch_bytes > 0 wins."""
    from sweep import runtime

    cfg = compose_cfg("data=synthetic")
    assert jax.default_backend() == "cpu"
    monkeypatch.setattr(runtime, "device_memory_bytes", lambda: 64 * 2**30)
    assert runtime.memory_budget_bytes(cfg) == 256 * 2**20
    monkeypatch.setattr(runtime, "device_memory_bytes", lambda: 1 * 2**30)
    assert runtime.memory_budget_bytes(cfg) == 2**27
    monkeypatch.setitem(runtime.DEFAULT_BUDGET_CAP, "cpu", 2**30)  # as on an accelerator
    monkeypatch.setattr(runtime, "device_memory_bytes", lambda: 4 * 2**30)
    assert runtime.memory_budget_bytes(cfg) == 2**29
    assert runtime.memory_budget_bytes(compose_cfg("data=synthetic", "memory.budget_mib=3")) == 3 * 2**20
    assert runtime.memory_budget_bytes(compose_cfg("data=synthetic", "memory.budget_mib=0")) == 0
    assert runtime.memory_budget_bytes(compose_cfg("data=synthetic", "probe.microbatch_bytes=4096",
                                                   "memory.budget_mib=3")) == 4096
    assert runtime.device_memory_bytes() > 2**20  # this machine's RAM (or accelerator limit)
