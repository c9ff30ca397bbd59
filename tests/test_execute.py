"""The one cohort executor (sweep/execute.py) under `sweep run`, `sweep figures` and array tasks:
what a failure leaves behind, attended (a terminal) and unattended (a job array task)."""
from __future__ import annotations

import json

import pytest

from sweep import store
from sweep.claims import Claims
from sweep.errors import DataError
from sweep.execute import execute_cohort
from sweep.grid import expand, make_cohorts

TINY = ["data=synthetic", "model.width=8", "model.depth=2", "steps=4", "probe.every=2", "probe.batch_size=32",
        "lr=0.01,0.02"]


def _cohort(tmp_path, *extra):
    runs = expand([*TINY, *extra, f"results_dir={tmp_path}", "sweep_name=x"])
    (cohort,) = make_cohorts(runs)
    return cohort, store.sweep_dir(tmp_path, "x")


def _outcomes(sweep, cohort):
    return [json.loads((store.run_dir(sweep, r.run_id) / store.RECORD).read_text())["outcome"]
            for r in cohort.runs]


def test_trains_and_returns_records(tmp_path):
    cohort, sweep = _cohort(tmp_path)
    with Claims(sweep) as claims:
        result = execute_cohort(cohort, sweep, force=False, claims=claims)
    assert result.errors == 0 and result.message is None
    assert sorted(result.outcomes) == sorted(_outcomes(sweep, cohort)) and len(result.records) == 2


def test_a_training_failure_becomes_error_records_and_one_line(tmp_path, monkeypatch):
    import sweep.runner as runner

    def boom(*_a, **_k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runner, "build_workload", boom)
    cohort, sweep = _cohort(tmp_path)
    for unattended in (False, True):
        with Claims(sweep) as claims:
            result = execute_cohort(cohort, sweep, force=False, claims=claims, unattended=unattended)
        assert result.errors == 2 and not result.records
        assert result.message == (f"cohort {cohort.key} failed: RuntimeError: boom "
                                  f"(2 error records written; a re-run retries them)")
        assert _outcomes(sweep, cohort) == ["error", "error"]


def test_a_missing_data_set_stops_a_terminal_but_is_recorded_by_a_task(tmp_path):
    cohort, sweep = _cohort(tmp_path, "data=npz", f"data.path={tmp_path}/nope.npz")
    with Claims(sweep) as claims, pytest.raises(DataError, match="nope.npz"):
        execute_cohort(cohort, sweep, force=False, claims=claims)
    assert not any(store.run_dir(sweep, r.run_id).exists() for r in cohort.runs)  # nothing recorded
    with Claims(sweep) as claims:
        result = execute_cohort(cohort, sweep, force=False, claims=claims, unattended=True)
    assert result.errors == 2 and "DataError" in result.message and "nope.npz" in result.message
    assert _outcomes(sweep, cohort) == ["error", "error"]  # `sweep status` shows them; a resubmit retries
