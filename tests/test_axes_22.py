"""Issue 22: one spec per axis. The engine's math is pure functions of a frozen context, an optimizer is
one registered spec, an execution backend one registered object, a plot kind one registered entry,
and lr units are decoded once, by the aggregate. Checked by behaviour (a spec the engine has never
seen trains; a backend the claims have never seen answers their liveness check) and by a scan of
the source (no optimizer or backend name is compared outside its registry)."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweep import member_step, optim, optimizers
from sweep.dispatch import backends
from sweep.engine import CohortTrainer, plan_cohort
from sweep.runner import dataset_for
from sweep.workload import build_workload

SWEEP = Path(__file__).resolve().parents[1] / "sweep"
TINY = ["data=synthetic", "model.width=16", "model.depth=2", "steps=4", "probe.every=1", "batch_size=32",
        "probe.batch_size=64", "optimizer=adam", "lr=0.01"]


def _trainer(compose_cfg, *extra):
    cfg = compose_cfg(*TINY, *extra)
    return CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg]))


# ----------------------------------------------------------------------------- the engine's context
def test_context_is_frozen_and_binding_returns_a_new_one(compose_cfg):
    tr = _trainer(compose_cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.ctx.steps = 7
    bound = tr.ctx.bind(tr.consts)
    assert bound is not tr.ctx and tr.ctx.lr_scale is None and bound.lr_scale is not None
    assert tr.ctx.rep_of is None and bound.rep_of.tolist() == [0]


class OnesAdam(optimizers.Adam):
    """A new optimizer with a seeded state: Adam whose second moment starts at 1 everywhere."""

    name = "ones_adam"

    def seeded(self, cfg):
        return True

    def seed_nu(self, g0, seed):
        return jax.tree.map(jnp.ones_like, g0)


def test_a_new_seeded_optimizer_is_one_spec_the_engine_follows(compose_cfg):
    """The engine reads only the spec: a spec it has never seen seeds the state and steps like optax's
    Adam from that state (independent truth)."""
    tr = _trainer(compose_cfg)
    ctx = dataclasses.replace(tr.ctx, optimizer=OnesAdam())
    h = jax.tree.map(lambda a: a[0], tr.plan.hyper)
    m, _, _ = member_step.init_member(ctx, jnp.asarray(0), jnp.asarray(1.0), h, jnp.asarray(0.0))
    nu0 = optim.adam_state(m.opt_state).nu
    assert all(bool(jnp.all(x == 1.0)) for x in jax.tree.leaves(nu0))
    x, y = ctx.w.data.x_train[:32], ctx.w.data.y_train[:32]
    new, loss, _ = member_step.train_member(ctx, m, h, x, y, jnp.asarray(0))
    g = jax.grad(lambda p: ctx.w.loss_and_accuracy(p, x, y, True)[0])(m.params)
    adam = optax.scale_by_adam(b1=float(h.b1), b2=float(h.b2), eps=float(h.eps))
    d, _ = adam.update(g, adam.init(m.params)._replace(nu=nu0), m.params)
    for p0, p1, di in zip(jax.tree.leaves(m.params), jax.tree.leaves(new.params), jax.tree.leaves(d)):
        np.testing.assert_allclose(p1, p0 - 0.01 * di, rtol=1e-5, atol=1e-8)
    assert np.isfinite(float(loss))


def test_hyper_scalars_and_thresholds_come_from_the_spec(compose_cfg):
    sgd = compose_cfg("optimizer.momentum=0.5").optimizer
    adam = compose_cfg("optimizer=adam", "optimizer.b1=0.8").optimizer
    assert optimizers.hyper_scalars(sgd) == {"momentum": 0.5, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
    assert optimizers.hyper_scalars(adam)["b1"] == pytest.approx(0.8) and optimizers.hyper_scalars(adam)["momentum"] == 0
    h = optim.Hyper(*(jnp.asarray(v) for v in (0.1, 0.0, 1.0, 0.5, 0.8, 0.999, 1e-8, 1.0, 0.1)))
    assert float(optimizers.get("sgd").threshold(0.1, h)) == pytest.approx(30.0)  # (2 + 2 beta) / lr
    assert float(optimizers.get("adam").threshold(0.1, h)) == pytest.approx(180.0)  # (2 + 2 b1) / (lr (1 - b1))
    assert optimizers.adaptive_names() == ("adam", "gi_adam", "ri_adam")
    with pytest.raises(ValueError, match="^optimizer=lion: allowed sgd, adam, gi_adam, ri_adam$"):
        optimizers.get("lion")


def _compared_strings(path: Path) -> set[str]:
    """String constants that a comparison (==, !=, in) tests against, anywhere in a file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                elts = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
                out |= {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return out


def test_no_optimizer_or_backend_name_is_compared_outside_its_registry():
    optimizer_names, backend_names = set(optimizers.SPECS), set(backends.BACKENDS) - {"local"}
    offenders = []
    for path in SWEEP.rglob("*.py"):
        compared = _compared_strings(path)
        if path.name != "optimizers.py" and compared & optimizer_names:
            offenders.append(f"{path.relative_to(SWEEP)}: {sorted(compared & optimizer_names)}")
        if path.name != "backends.py" and compared & backend_names:
            offenders.append(f"{path.relative_to(SWEEP)}: {sorted(compared & backend_names)}")
    assert not offenders, offenders


# ----------------------------------------------------------------------------- backends
class FakeScheduler(backends.Backend):
    name, display, in_process = "fake", "Fake", False

    def job_states(self, job_ids):
        return {j: "CANCELLED" for j in job_ids}


def test_a_new_backend_answers_the_claims_liveness_check(tmp_path, monkeypatch):
    from sweep.claims import CLAIMS, Claims, Owner

    monkeypatch.setitem(backends.BACKENDS, "fake", FakeScheduler())
    (tmp_path / CLAIMS).mkdir(parents=True)
    info = {"host": "elsewhere", "pid": 1, "start": None, "job": "7", "backend": "fake", "token": "t"}
    (tmp_path / CLAIMS / "r1.claim").write_text(json.dumps(info))
    os.utime(tmp_path / CLAIMS / "r1.claim", (time.time(),) * 2)  # fresh heartbeat: only the job can free it
    c = Claims(tmp_path, Owner(job=None))
    assert c.owner_gone(tmp_path / CLAIMS / "r1.claim", info) == "its Fake job 7 is CANCELLED"
    assert c.claim("r1")


def test_backends_registry_and_one_line_errors(monkeypatch):
    assert list(backends.BACKENDS) == ["local", "submitit_local", "slurm"]
    assert backends.get("local").in_process and not backends.get("slurm").in_process
    with pytest.raises(Exception, match=r"^cluster.executor=pbs: allowed local, submitit_local, slurm$"):
        backends.get("pbs")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert backends.current_job() == ("slurm", "12_3")


# ----------------------------------------------------------------------------- plot kinds, lr units
def test_plot_kinds_are_registered_in_order_and_all_skips_what_the_data_cannot_show():
    import pandas as pd

    from sweep.commands.plot import add_arguments
    from sweep.plot_kinds import PLOT_KINDS, requested

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    kind_action = next(a for a in parser._actions if a.dest == "kind")
    assert list(kind_action.choices) == [*PLOT_KINDS, "all"]
    args = parser.parse_args(["x", "--kind", "all"])
    summary = pd.DataFrame({"best_test_acc": [0.5], "lambda0": [np.nan], "t_reach": [np.nan]})
    assert [name for name, _ in requested(args, summary, pd.DataFrame())] == ["heatmap_best_test_acc"]
    traces = pd.DataFrame({"grad_cov_top": [1.0]})
    assert [n for n, _ in requested(args, summary, traces)] == ["heatmap_best_test_acc", "trajectories", "grad_cov"]
    asked = parser.parse_args(["x", "--kind", "treach"])
    assert [n for n, _ in requested(asked, summary, traces)] == ["treach_tsave"]  # asked for: tried, not skipped


def test_lr_units_are_decoded_once_by_the_aggregate():
    from sweep.aggregate import lr_unit_name, standard_columns

    assert lr_unit_name("sharpness") == lr_unit_name("LrUnit.sharpness") == "lambda0"
    assert lr_unit_name("absolute") == lr_unit_name(None) == "absolute"
    assert standard_columns({"lr_unit": "sharpness"})["lr_unit"] == "lambda0"
    for module in ("plot.py", "dispatch/status.py", "plot_diagnostics.py"):
        assert "in_lambda0_units" not in (SWEEP / module).read_text(), module


def test_every_paper_figure_draws_registered_kinds():
    from sweep.figures import FIGURES
    from sweep.plot_kinds import PLOT_KINDS

    kinds = {call.kind for fig in FIGURES.values() for call in fig.plots}
    assert kinds and kinds <= set(PLOT_KINDS), kinds - set(PLOT_KINDS)
