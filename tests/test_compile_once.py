"""One compiled cohort program for SP and muP cohorts of identical shapes (issue 12).

The parameterization constants (muP multipliers, Adam's per-layer lr factors) enter the shared
program as data. The checks: the second cohort traces no new cohort program, and its results equal
those of the same cohort compiled on its own (program table cleared), and its step-0 probe loss
equals the model applied directly with its own Python constants.
"""
import jax
import numpy as np
import pytest

from sweep import engine
from sweep.engine import CohortTrainer, plan_cohort, program_key
from sweep.runner import dataset_for
from sweep.workload import build_workload

TINY = ["data=synthetic", "model.width=16", "model.depth=3", "steps=8", "probe.every=4",
        "probe.batch_size=64", "batch_size=32", "probe.lanczos_iters=30", "probe.lanczos_tol=1e-7"]


def _cohort(compose_cfg, *extra):
    cfgs = [compose_cfg(*TINY, *extra, "lr=0.05", "param.init_scale=1.0"),
            compose_cfg(*TINY, *extra, "lr=0.1", "warmup=4", "seed=1", "param.init_scale=0.5")]
    return CohortTrainer(build_workload(cfgs[0], dataset_for(cfgs[0])), plan_cohort(cfgs), chunk=4)


def _traces(res):
    return [t.drop(columns=["hvps"]).to_numpy(float) for t in res.traces]


@pytest.mark.parametrize("opt", [["optimizer=sgd"], ["optimizer=adam", "param.adam_lr_factors=true"]])
def test_sp_and_mup_share_one_program(compose_cfg, opt):
    sp = _cohort(compose_cfg, "param=sp", *opt)
    mup = _cohort(compose_cfg, "param=mup", *opt)
    assert sp.ctx.program_key == mup.ctx.program_key
    sp.run()
    traced = engine.PROGRAM_TRACES["chunk"]
    shared = mup.run()
    assert engine.PROGRAM_TRACES["chunk"] == traced  # muP reused SP's compiled cohort program
    assert mup.compile_s.get("chunk", 0.0) == 0.0

    saved = dict(engine._PROGRAMS)
    engine._PROGRAMS.clear()
    try:
        alone = _cohort(compose_cfg, "param=mup", *opt).run()  # compiled for muP alone
    finally:
        engine._PROGRAMS.update(saved)
    assert engine.PROGRAM_TRACES["chunk"] == traced + 1
    for a, b in zip(_traces(shared), _traces(alone)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_shared_program_uses_each_cohorts_constants(compose_cfg):
    """Independent truth: muP's step-0 probe loss = the flax model applied with its own Python
    multipliers (no consts collection) to the member's initial weights."""
    sp = _cohort(compose_cfg, "param=sp")
    sp.run()
    mup = _cohort(compose_cfg, "param=mup")
    res = mup.run()
    members = mup.init_members()
    w = mup.w
    assert w.consts is None  # the host-side workload keeps the Python constants
    for i in range(2):
        params = jax.tree.map(lambda a: a[i], members.params)
        loss, _ = w.loss_and_accuracy(params, w.data.x_probe, w.data.y_probe)
        assert res.traces[i]["probe_loss"].iloc[0] == pytest.approx(float(loss), rel=1e-6)
    # and the muP readout really is 1/sqrt(width) smaller than SP's: the losses differ
    assert abs(res.traces[0]["probe_loss"].iloc[0] - sp.run().traces[0]["probe_loss"].iloc[0]) > 1e-3


def test_program_key_tracks_shapes_not_parameterization(compose_cfg):
    base = compose_cfg(*TINY)
    assert program_key(base) == program_key(compose_cfg(*TINY, "param=mup", "param.sigma_w2=1.5"))
    assert program_key(base) == program_key(compose_cfg(*TINY, "lr=0.3", "warmup=7", "seed=3"))
    assert program_key(base) != program_key(compose_cfg(*TINY[:1], "model.width=32", *TINY[2:]))
    assert program_key(base) != program_key(compose_cfg(*TINY, "probe.every=2"))
