"""Persistent catapult warmup (warmup_mode=catapult; Section 7, Algorithm 3; sweep/catapult.py).

The defining behaviour is checked on a 2-layer linear network with MSE (f = x W1 W2: the smallest
model with sharpness reduction by catapults), full batch, the measurement batch = the whole
training set, so the searched loss, the trace's probe_loss and the training loss are one function:
  - the lr rises by jumps, each at a step where the loss fell below the previous reference;
  - each new lr is an eta_c estimate, checked independently at the parameters of that step: one
    GD step at it raises the loss, by at most (1 + delta);
  - the lr never exceeds eta_trgt and ends there (T_reach), a target at which a constant lr
    diverges, because the catapults brought the sharpness down below 2/eta_trgt;
  - the summary's counts match the trace.
On the pure quadratic (1 layer) the first search is checked against its closed form.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sweep.catapult import initial_guesses
from sweep.cli import main
from sweep.engine import CohortTrainer, plan_cohort
from sweep.grid import Cohort, RunSpec
from sweep.identity import run_id
from sweep.runner import dataset_for, run_cohort
from sweep.workload import build_workload

DELTA = 0.1
# full batch; probe batch = all 64 training examples; every step probed
UV = ["data=synthetic", "data.n_train=64", "data.n_test=32", "model.depth=2", "model.width=16",
      "model.activation=linear", "model.use_bias=false", "batch_size=0", "probe.every=1", "probe.batch_size=64",
      "probe.lanczos_iters=30", "probe.lanczos_tol=1e-6", f"eta_c.delta={DELTA}"]
LAMBDA0 = 6.1026  # lambda_max at init of UV (seed 0), from the engine's Lanczos; checked below


def _trainer(cfgs, chunk=16):
    w = build_workload(cfgs[0], dataset_for(cfgs[0]))
    return w, CohortTrainer(w, plan_cohort(cfgs), chunk=chunk)


def test_catapults_raise_the_lr_to_a_target_a_constant_lr_cannot_train_at(compose_cfg):
    trgt = 16.0 / LAMBDA0
    cfg = compose_cfg(*UV, "steps=40", "warmup_mode=catapult", f"lr={trgt}")
    w, trainer = _trainer([cfg], chunk=1)
    params = {0: jax.device_get(trainer.initial_state().members.params)}

    def keep(carry, next_start, rows):  # chunk=1: the parameters after update `next_start`
        params[next_start] = jax.device_get(carry.members.params)

    res = trainer.run(on_chunk=keep)
    tr, summ = res.traces[0].set_index("step"), res.catapult[0]
    lam0 = float(tr["sharpness"].loc[0])
    assert lam0 == pytest.approx(LAMBDA0, rel=1e-3)
    assert res.divergence_step[0] is None
    lr, loss = tr["lr"].to_numpy(), tr["probe_loss"].to_numpy()  # row t: lr of update t + 1

    # never above eta_trgt, non-decreasing, ends at eta_trgt, reached at update T_reach
    assert lr.max() <= trgt * (1 + 1e-6) and np.all(np.diff(lr) >= 0)
    t_reach = summ["t_reach"]
    assert t_reach is not None and t_reach > 1
    assert lr[t_reach - 1] == pytest.approx(trgt, rel=1e-6) and lr[t_reach - 2] < trgt * (1 - 1e-6)
    assert np.all(lr[t_reach - 1:] == lr[-1])

    # Algorithm 3 replayed on the trace: a search exactly when the loss fell below the reference
    ref, searches = np.inf, []
    for t in range(t_reach):
        if loss[t] < ref:
            searches.append(t)
            ref = loss[t]
    jumps = [0] + [t for t in range(1, len(lr)) if lr[t] != lr[t - 1]]
    assert set(jumps) <= set(searches)
    assert summ["catapult_searches"] == len(searches)
    assert summ["catapults"] >= 3  # several catapults, not one jump to the target
    assert len(jumps) - 1 == summ["catapults"]  # lr changes = catapults - 1 + [T_reach > 1]
    assert summ["catapult_forward_passes"] >= 3 * summ["catapult_searches"]

    # each new lr below the target is an eta_c estimate at that step's parameters, independently:
    # one GD step at it raises the loss by at most (1 + delta)
    x, y = w.data.x_probe, w.data.y_probe

    def loss_fn(p):
        return w.loss_and_accuracy(p, x, y)[0]

    for t in jumps:
        theta = jax.tree.map(lambda a: jnp.asarray(a[0]), params[t])
        l0, g = jax.value_and_grad(loss_fn)(theta)
        assert float(l0) == pytest.approx(loss[t], rel=1e-5)
        l1 = float(loss_fn(jax.tree.map(lambda p, d: p - lr[t] * d, theta, g)))
        if lr[t] < trgt * (1 - 1e-6):
            assert float(l0) * (1 - 1e-5) <= l1 <= float(l0) * (1 + DELTA) * (1 + 1e-5), t
        if t > 0:  # and the jumps raise the lr
            assert lr[t] > lr[t - 1]
    assert lr[0] < trgt / 2 and lam0 > 2.0 / lr[0]  # the first catapult: eta_c(theta_0) > 2 / lambda0

    # sharpness reduction: at the end below 2 / eta_trgt (edge of stability), from 2.6x above it
    assert lam0 > 2.5 * 2.0 / trgt
    assert tr["sharpness"].iloc[-1] < 2.0 / trgt * 1.05
    # while a constant lr eta_trgt from theta_0 diverges
    const = _trainer([compose_cfg(*UV, "steps=40", f"lr={trgt}")])[1].run()
    assert const.divergence_step[0] is not None


def test_first_search_on_a_quadratic_is_the_closed_form_eta_c(compose_cfg):
    """A linear model with MSE: L(w - eta g) - L(w) = -eta |g|^2 + eta^2 g'Hg / 2, so the loss goes up
    exactly above eta* = 2 |g|^2 / g'Hg (>= 2 / lambda_max) and by delta at eta_delta; the first
    search at theta_0 must land in [eta*, eta_delta]. A target below 2 / lambda_max is then reached at
    once (one search; no catapult), and the lr stays there."""
    base = [*UV, "model.depth=1", "steps=4", "warmup_mode=catapult", "probe.sharpness=false"]
    w, trainer = _trainer([compose_cfg(*base, "lr=100.0")])
    theta = jax.tree.map(lambda a: a[0], trainer.initial_state().members.params)
    x = np.asarray(w.data.x_probe, np.float64)
    y1 = np.asarray(jax.nn.one_hot(w.data.y_probe, w.num_classes), np.float64)
    (wmat,) = [np.asarray(p["kernel"], np.float64) for p in theta.values()]
    n, c = y1.shape
    resid = x @ wmat - y1
    loss0 = 0.5 * np.mean(resid ** 2)  # half_mean MSE
    g = x.T @ resid / (n * c)
    ghg = np.sum((x @ g) ** 2) / (n * c)  # g' H g with H = X'X / (N C) (x) I_C
    lam = np.linalg.eigvalsh(x.T @ x / (n * c))[-1]
    star = 2 * np.sum(g * g) / ghg
    eta_delta = (np.sum(g * g) + np.sqrt(np.sum(g * g) ** 2 + 2 * ghg * DELTA * loss0)) / ghg
    assert star >= 2 / lam * (1 - 1e-6)

    res = trainer.run()
    first = float(res.traces[0]["lr"].iloc[0])
    assert star * (1 - 1e-4) <= first <= eta_delta * (1 + 1e-4)
    assert res.catapult[0]["catapults"] == 1 and res.catapult[0]["t_reach"] is None

    low = 1.5 / lam
    res = _trainer([compose_cfg(*base, f"lr={low}")])[1].run()
    assert res.catapult[0] == {"catapults": 0, "catapult_searches": 1,
                               "catapult_forward_passes": res.catapult[0]["catapult_forward_passes"], "t_reach": 1}
    np.testing.assert_allclose(res.traces[0]["lr"], low, rtol=1e-6)


@pytest.mark.parametrize("loss", ["probe", "batch"])
def test_record_is_the_same_alone_and_in_a_cohort(compose_cfg, tmp_path, loss):
    """warmup_mode is shared by a cohort (a cohort-level key: it changes the compiled program); inside
    one, each member's searches are its own: a subject run (SGD momentum, searching along its
    momentum step) gives the same trace and summary alone and in the middle of a cohort with a
    diverging member (loss inf at theta_0: never searches, frozen) and a different seed and target."""
    base = ["data=synthetic", "data.n_train=128", "data.n_test=32", "model.width=16", "model.depth=3",
            "batch_size=32", "steps=30", "probe.every=3", "probe.batch_size=64", "probe.sharpness=false",
            "warmup_mode=catapult", f"catapult.loss={loss}", "optimizer.momentum=0.5"]
    subject = compose_cfg(*base, "lr=1.0")
    # catapult warmup does not diverge at a high target within a few steps; an overflowing init does
    others = [compose_cfg(*base, "lr=500.0", "param.init_scale=1e20"), compose_cfg(*base, "lr=0.3", "seed=2")]

    def records(name, cfgs):
        return run_cohort(Cohort(name, [RunSpec(run_id(c), c, {}) for c in cfgs]), tmp_path / name)

    alone = records("alone", [subject])[0]
    together = records("cohort", [others[0], subject, others[1]])
    assert together[0]["outcome"] == "diverged" and together[0]["summary"]["catapult_searches"] == 0
    mid = together[1]
    s_alone, s_mid = alone["summary"], mid["summary"]
    assert s_alone["catapult_searches"] >= 2
    for key in ("catapults", "catapult_searches", "catapult_forward_passes", "t_reach", "divergence_step"):
        assert s_alone[key] == s_mid[key], key
    assert s_mid["final_train_loss"] == pytest.approx(s_alone["final_train_loss"], rel=1e-4)
    a = pd.read_parquet(tmp_path / "alone" / "runs" / alone["run_id"] / "trace.parquet")
    b = pd.read_parquet(tmp_path / "cohort" / "runs" / mid["run_id"] / "trace.parquet")
    pd.testing.assert_frame_equal(a, b, rtol=1e-4, atol=1e-6)
    assert mid["outcome"] == alone["outcome"]


def test_initial_guess_units(compose_cfg):
    """eta_0 of the first search: eta_trgt / 1000 when eta_c.initial_guess is null, else the guess in
    lr's units (a multiple of 1/lambda0 under lr_unit=sharpness)."""
    cfgs = [compose_cfg("lr=2.0", "warmup_mode=catapult"),
            compose_cfg("lr=2.0", "lr_unit=sharpness", "eta_c.initial_guess=0.5", "warmup_mode=catapult")]
    np.testing.assert_allclose(initial_guesses(cfgs, [2.0, 2.0 / 50.0]), [2e-3, 0.5 / 50.0], rtol=1e-6)


def test_resume_mid_warmup_matches_uninterrupted(compose_cfg, tmp_path):
    """The catapult state (eta, reference loss +inf before the first search, counts, T_reach) is in
    the checkpointed carry: a cohort stopped mid-warmup and resumed gives the same traces and counts."""
    from sweep.checkpoint import Checkpointer

    cfgs = [compose_cfg(*UV, "steps=24", "warmup_mode=catapult", f"lr={c / LAMBDA0}", "probe.sharpness=false")
            for c in (12.0, 16.0)]
    truth = _trainer(cfgs, chunk=4)[1].run()

    class Stop(BaseException):
        pass

    def stop():
        raise Stop

    ckpt = Checkpointer(tmp_path / "ck", every_s=1e9, after_requested_save=stop)
    trainer = _trainer(cfgs, chunk=4)[1]
    ckpt.restore(trainer.layout_fingerprint(), trainer.initial_state)
    ckpt.request()
    with pytest.raises(Stop):
        trainer.run(on_chunk=ckpt.save)  # saved after the first chunk (updates 1-4), mid-warmup
    resumed_trainer = _trainer(cfgs, chunk=4)[1]
    state = Checkpointer(tmp_path / "ck").restore(resumed_trainer.layout_fingerprint(),
                                                   resumed_trainer.initial_state)
    assert state is not None and state["start"] == 4
    resumed = resumed_trainer.run(**state)
    assert resumed.catapult == truth.catapult and truth.catapult[1]["t_reach"] > 4
    for a, b in zip(resumed.traces, truth.traces):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_cli_run_records_catapult_summary(tmp_path, capsys):
    args = ["run", "data=synthetic", "model.width=8", "model.depth=2", "steps=12", "probe.every=4",
            "probe.batch_size=32", "probe.sharpness=false", "warmup_mode=catapult", "lr=0.5",
            f"results_dir={tmp_path}", "sweep_name=cat"]
    assert main(args) == 0
    (run,) = list((tmp_path / "cat" / "runs").iterdir())
    rec = json.loads((run / "record.json").read_text())
    s = rec["summary"]
    assert rec["config"]["warmup_mode"] == "catapult"
    assert s["catapult_searches"] >= 1 and s["catapult_forward_passes"] >= 2
    assert isinstance(s["catapults"], int) and (s["t_reach"] is None or s["t_reach"] >= 1)
    assert s["t_save"] is None and s["eta_c"] is None


def test_search_direction_from_the_optimizer_state():
    """catapult.direction=state searches along the optimizer's NEXT update (SGD momentum: g + beta m);
    fresh along its first update from a fresh state (g), as Section 6.1's search at theta_0."""
    import optax

    from sweep import optim
    from sweep.eta_c import one_step_direction

    h = optim.Hyper(*(jnp.asarray(v, jnp.float32) for v in (1.0, 0.0, 1.0, 0.5, 0.9, 0.999, 1e-8, 1.0, 0.1)))
    params = {"w": jnp.zeros(3)}
    g, m = {"w": jnp.asarray([1.0, -2.0, 3.0])}, {"w": jnp.asarray([4.0, 0.0, -2.0])}
    state = (optax.TraceState(trace=m),)
    np.testing.assert_allclose(one_step_direction(g, params, h, "sgd")["w"], g["w"])
    np.testing.assert_allclose(one_step_direction(g, params, h, "sgd", opt_state=state)["w"], g["w"] + 0.5 * m["w"])
