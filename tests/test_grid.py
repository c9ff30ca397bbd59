"""Grid expansion, run ids, cohorts, lambda0 caching and the until-divergence extension."""
import numpy as np
import pytest

from sweep import store
from sweep.errors import GridError
from sweep.grid import expand, make_cohorts
from sweep.runner import dataset_for

TINY = ["data=synthetic", "model.width=8", "model.depth=2", "steps=6", "probe.every=3", "probe.batch_size=32"]


def test_cli_sweep_syntax_and_stable_ids():
    runs = expand(TINY + ["lr=0.1,0.2", "warmup=range(1,3)", "param=glob(*)"])
    assert len(runs) == 2 * 2 * 2
    assert len({r.run_id for r in runs}) == 8
    assert {r.grid["param.name"] for r in runs} == {"sp", "mup"}
    assert {r.grid["warmup"] for r in runs} == {1, 2}
    again = expand(TINY + ["lr=0.1,0.2", "warmup=range(1,3)", "param=glob(*)", "sweep_name=other",
                           "results_dir=/elsewhere"])
    assert [r.run_id for r in again] == [r.run_id for r in runs]  # ids ignore output paths


def test_pow2_and_experiment_grid_block():
    runs = expand(["lr=pow2(-1,1)"] + TINY)
    assert sorted(r.cfg.lr for r in runs) == [0.5, 1.0, 2.0]
    demo = expand(["experiment=demo", "steps=5"])
    assert len(demo) == 7 * 4 * 2 and demo[0].cfg.sweep_name == "demo"
    assert {"lr", "warmup", "param.name"} <= set(demo[0].grid)
    narrowed = expand(["experiment=demo", "lr=1.0"])  # the command line wins over the grid block
    assert len(narrowed) == 4 * 2


def test_cohorts_group_shapes_and_respect_max_size():
    runs = expand(TINY + ["lr=0.1,0.2,0.4", "warmup=1,4", "param=sp,mup", "cohort.max_size=4"])
    cohorts = make_cohorts(runs)
    assert sum(len(c.runs) for c in cohorts) == 12
    assert all(len(c.runs) <= 4 for c in cohorts)
    for c in cohorts:
        assert len({r.cfg.param.name for r in c.runs}) == 1  # param changes the program: never mixed
    assert [[r.run_id for r in c.runs] for c in cohorts] == \
        [[r.run_id for r in c.runs] for c in make_cohorts(runs)]  # deterministic


def test_grid_limits():
    with pytest.raises(GridError, match="more than the limit"):
        expand(TINY + ["lr=0.1,0.2,0.3", "cluster.max_runs=2"])


def test_lambda0_computed_once_per_group(tmp_path, monkeypatch):
    from sweep import engine
    from sweep.runner import run_cohort

    calls = []
    original = engine.measure_lambda0

    def spy(workload, plan):
        calls.append(plan.size)
        return original(workload, plan)

    monkeypatch.setattr(engine, "measure_lambda0", spy)
    runs = expand(TINY + ["lr_unit=sharpness", "lr=0.5,1.0", "warmup=1,2", "cohort.max_size=2"])
    cohorts = make_cohorts(runs)
    assert len(cohorts) == 2
    records = [rec for c in cohorts for rec in run_cohort(c, tmp_path)]
    assert calls == [1]  # one group, one seed: computed once, then read from the cache
    assert len({rec["summary"]["lambda0"] for rec in records}) == 1
    for rec in records:  # lr is c / lambda0
        assert rec["summary"]["lr"] == pytest.approx(rec["config"]["lr"] / rec["summary"]["lambda0"])
    assert len(list((tmp_path / "lambda0").glob("*.json"))) == 1


def test_until_divergence_on_a_quadratic(tmp_path):
    """Linear model + MSE + full batch GD: lr = c / lambda0 is stable for c < 2 and diverges for
    c > 2. Starting from c in {0.25, 0.5}, the extension must walk 1, 2, 4 (first divergence) and
    one margin point 8, then stop."""
    from sweep.commands.run import run_grid

    base = ["data=synthetic", "model.depth=1", "model.use_bias=false", "batch_size=0", "steps=200",
            "probe.every=100", "probe.lanczos_iters=40", "probe.lanczos_tol=1e-8", "lr_unit=sharpness",
            "extend.until_divergence=true", "extend.margin=1", f"results_dir={tmp_path}", "sweep_name=q"]
    runs = expand(base + ["lr=0.25,0.5"])
    sweep = tmp_path / "q"
    assert run_grid(runs, sweep, force=False) == 0  # the one until-divergence loop (grid.until_divergence)
    runs = [r for r in (store.read_record(sweep, p.name) for p in (sweep / "runs").iterdir()) if r]
    by_c = {float(r["config"]["lr"]): r["outcome"] for r in runs}
    assert sorted(by_c) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert [by_c[c] for c in (0.25, 0.5, 1.0)] == ["converged"] * 3
    assert by_c[4.0] == "diverged" and by_c[8.0] == "diverged"
    assert by_c[2.0] != "diverged"
    first = expand(base + ["lr=0.25"])[0]
    x = dataset_for(first.cfg).x_train.astype(np.float64)
    # L = 1/(2 N C) sum ||W x - y||^2 (mse_reduction=half_mean) has Hessian (1 / (N C)) X^T X (x) I_C
    lam = 1.0 / dataset_for(first.cfg).num_classes * np.linalg.eigvalsh(x.T @ x / len(x))[-1]
    rec = store.read_record(sweep, first.run_id)
    assert rec["summary"]["lambda0"] == pytest.approx(lam, rel=1e-4)


def test_stored_config_round_trips_and_survives_new_keys():
    """A manifest written by an older version (a key missing) still loads, with the default."""
    from sweep.config import from_dict
    from sweep.identity import run_id, to_dict

    spec = expand(TINY + ["optimizer=adam", "param=mup", "lr=0.3"])[0]
    stored = to_dict(spec.cfg)
    assert run_id(from_dict(stored)) == spec.run_id
    del stored["probe"]["eval_every"]
    restored = from_dict(stored)
    assert restored.probe.eval_every == 0 and restored.optimizer.b2 == 0.999 and restored.lr == 0.3
