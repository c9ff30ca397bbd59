"""The probe-metric registry end to end: cheap to load, switches add exactly their columns, and the
columns flow into run records (summary reductions), the aggregated tables and never into facets."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sweep import columns, probes

SWITCHES = {
    "hessian_trace": ["hessian_trace"],
    "grad_cov": ["grad_cov_top", "grad_cov_trace"],
    "ntk_trace": ["ntk_trace"],
}
DIAG = [c for cols in SWITCHES.values() for c in cols]
TINY = ["data=synthetic", "data.n_train=128", "data.n_test=64", "model.width=8", "model.depth=2",
        "steps=8", "probe.every=4", "probe.batch_size=16", "batch_size=32", "probe.lanczos_iters=10"]


def test_registry_loads_without_jax():
    """aggregate and plot load the registry for labels: importing sweep.probes and registering every
    shipped metric must not import jax (metric modules import it inside their functions)."""
    code = ("import sys, sweep.probes as p; p.load_all(); "
            f"missing = [n for n in {list(SWITCHES)!r} if p.get(n) is None]; "
            "assert not missing, missing; "
            "bad = sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.') or m == 'jaxlib'); "
            "assert not bad, bad; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_each_switch_adds_exactly_its_columns(compose_cfg):
    assert probes.enabled_columns(compose_cfg(*TINY).probe) == []
    for switch, cols in SWITCHES.items():
        cfg = compose_cfg(*TINY, f"probe.{switch}=4")
        assert probes.enabled_columns(cfg.probe) == cols, switch
        for col in cols:
            c = columns.get(col)
            assert c is not None and c.kind == "trace"
            assert {c.summary_name("max"), c.summary_name("final")} <= set(columns.summary_metrics())
    on = compose_cfg(*TINY, *(f"probe.{s}=4" for s in SWITCHES))
    assert probes.enabled_columns(on.probe) == DIAG


@pytest.mark.parametrize("override,fragment", [
    ("probe.hessian_trace=-1", "probe.hessian_trace=-1: must be >= 0"),
    ("probe.grad_cov=1", "probe.grad_cov=1: must be 0 (off) or between 2 and probe.batch_size"),
    ("probe.grad_cov=17", "probe.grad_cov=17: must be 0 (off) or between 2 and probe.batch_size"),
    ("probe.ntk_trace=-2", "probe.ntk_trace=-2: must be 0 (off) or between 1 and probe.batch_size"),
])
def test_switch_validation(compose_cfg, override, fragment):
    from sweep.config import ConfigError

    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        compose_cfg(*TINY, override)


def test_switches_keep_run_ids(compose_cfg):
    """Off at their default (config.added(0)): a run id is the same as before the switches existed."""
    from sweep.identity import run_id

    base = compose_cfg(*TINY)
    assert all(run_id(compose_cfg(*TINY, f"probe.{s}=0")) == run_id(base) for s in SWITCHES)
    assert all(run_id(compose_cfg(*TINY, f"probe.{s}=4")) != run_id(base) for s in SWITCHES)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """Two runs with every switch on and one with all off, trained through runner.run_cohort."""
    from sweep.grid import Cohort, RunSpec, compose
    from sweep.identity import run_id
    from sweep.runner import run_cohort

    on = [*TINY, "probe.hessian_trace=4", "probe.grad_cov=8", "probe.ntk_trace=8"]
    path = tmp_path_factory.mktemp("registry") / "diag"
    cfgs = [compose([*on, "lr=0.05"]), compose([*on, "lr=0.2", "seed=2"])]
    records = run_cohort(Cohort("on", [RunSpec(run_id(c), c, {"group": "on"}) for c in cfgs]), path)
    off = compose([*TINY, "lr=0.1"])
    records += run_cohort(Cohort("off", [RunSpec(run_id(off), off, {"group": "off"})]), path)
    return path, records


def test_summary_reductions_in_run_record(sweep_dir):
    """max_/final_ of every diagnostic are in record["summary"], equal to the reductions of its trace;
    a run with the switches off records None for them."""
    from sweep import store

    path, records = sweep_dir
    for rec in records[:2]:
        trace = pd.read_parquet(path / "runs" / rec["run_id"] / store.TRACE)
        for col in DIAG:
            values = trace[col].dropna()
            assert len(values) >= 2
            assert rec["summary"][f"max_{col}"] == pytest.approx(float(values.max()))
            assert rec["summary"][f"final_{col}"] == pytest.approx(float(values.iloc[-1]))
    assert all(records[2]["summary"][f"{r}_{col}"] is None for col in DIAG for r in ("max", "final"))


def test_aggregate_carries_the_columns(sweep_dir):
    from sweep.aggregate import aggregate

    path, records = sweep_dir
    summary, traces = aggregate(path, full=True)
    for col in DIAG:
        assert {f"max_{col}", f"final_{col}"} <= set(summary.columns)
        assert col in traces.columns
    on = summary[summary["group"] == "on"]
    off = summary[summary["group"] == "off"]
    assert len(on) == 2 and np.isfinite(on[[f"max_{c}" for c in DIAG]].to_numpy(float)).all()
    assert off[[f"max_{c}" for c in DIAG]].isna().all().all()
    probed = traces[(traces["group"] == "on") & traces["probe_loss"].notna()]
    assert len(probed) >= 4 and np.isfinite(probed[DIAG].to_numpy(float)).all()
    assert traces.loc[traces["group"] == "off", DIAG].isna().all().all()


def test_default_facets_never_propose_them(sweep_dir):
    from sweep import plot
    from sweep.aggregate import aggregate

    path, _ = sweep_dir
    summary, traces = aggregate(path)
    measured = set(DIAG) | {f"{r}_{c}" for c in DIAG for r in ("max", "final")}
    on = summary[summary["group"] == "on"]
    assert on[[f"{r}_{c}" for c in DIAG for r in ("max", "final")]].nunique().min() == 2  # they vary
    facets = plot.default_facets(summary)
    assert "group" in facets  # a varying config column is proposed ...
    assert not measured & set(facets)  # ... the measurements never
    assert not measured & set(plot.default_facets(traces))
    assert measured <= plot.not_facets()
