"""Aggregation: records -> summary/traces tables, incremental, robust to corrupt records."""
from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from record_factory import toy_trace, write_run
from sweep import aggregate as agg
from sweep.cli import main


@pytest.fixture
def sweep_dir(tmp_path):
    d = tmp_path / "demo"
    write_run(d, "a", lr=0.02, warmup=1, trace=toy_trace(0.02, 1, 50.0, steps=10))
    write_run(d, "b", lr=0.04, warmup=4, trace=toy_trace(0.04, 4, 50.0, steps=10))
    write_run(d, "c", lr=1.28, warmup=1, outcome="diverged", metrics={"divergence_step": 3},
              trace=toy_trace(1.28, 1, 50.0, steps=10, diverge_at=3))
    return d


@pytest.fixture
def read_spy(monkeypatch):
    """Records which run directories aggregate() actually reads."""
    calls: list[str] = []
    real = agg.read_run

    def spy(run_dir):
        calls.append(run_dir.name)
        return real(run_dir)

    monkeypatch.setattr(agg, "read_run", spy)
    return calls


def bump_mtime(path):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_summary_has_one_row_per_run_with_grid_and_standard_columns(sweep_dir):
    summary, traces = agg.aggregate(sweep_dir)
    assert sorted(summary["run_id"]) == ["a", "b", "c"]
    for col in ("lr", "warmup", "param.name", "model", "param", "optimizer", "loss", "data", "batch_size",
                "seed", "momentum", "lr_over_lambda0", "outcome", "divergence_step", "best_test_acc",
                "final_test_loss", "final_train_loss", "lambda0", "max_sharpness", "eta_c", "t_reach", "t_save"):
        assert col in summary, col
    row = summary.set_index("run_id").loc["c"]
    assert row["outcome"] == "diverged" and row["divergence_step"] == 3
    assert row["lr"] == pytest.approx(1.28) and row["lr_over_lambda0"] == pytest.approx(1.28 * 50.0)
    assert (row["model"], row["param"], row["optimizer"], row["loss"]) == ("fcn", "sp", "sgd", "mse")
    assert (summary.set_index("run_id")["warmup"].to_dict()) == {"a": 1, "b": 4, "c": 1}


def test_traces_are_long_format_copies_of_the_trace_files(sweep_dir):
    _, traces = agg.aggregate(sweep_dir)
    written = pd.read_parquet(sweep_dir / "runs" / "b" / "trace.parquet")
    got = traces[traces["run_id"] == "b"].sort_values("step")
    np.testing.assert_array_equal(got["step"], written["step"])
    np.testing.assert_allclose(got["loss"], written["train_loss"])
    np.testing.assert_allclose(got["accuracy"], written["train_acc"])
    np.testing.assert_allclose(got["lr"], written["lr"])  # per-step lr, not the target
    np.testing.assert_allclose(got["threshold"], written["threshold"])
    assert (got["target_lr"] == 0.04).all() and (got["warmup"] == 4).all()
    assert (got["loss_fn"] == "mse").all() and (got["param"] == "sp").all()
    assert len(traces) == sum(len(pd.read_parquet(p)) for p in sweep_dir.glob("runs/*/trace.parquet"))


def test_second_call_is_identical_and_reads_no_records(sweep_dir, read_spy):
    first = agg.aggregate(sweep_dir)
    assert sorted(read_spy) == ["a", "b", "c"]
    read_spy.clear()
    summary_mtime = (sweep_dir / agg.SUMMARY_FILE).stat().st_mtime_ns
    second = agg.aggregate(sweep_dir)
    assert read_spy == []
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])
    assert (sweep_dir / agg.SUMMARY_FILE).stat().st_mtime_ns == summary_mtime  # nothing rewritten
    pd.testing.assert_frame_equal(agg.load_summary(sweep_dir), first[0])


def test_new_changed_and_removed_runs_are_the_only_ones_read(sweep_dir, read_spy):
    agg.aggregate(sweep_dir)
    read_spy.clear()
    write_run(sweep_dir, "d", lr=0.08, warmup=16, trace=toy_trace(0.08, 16, 50.0, steps=5))
    summary, traces = agg.aggregate(sweep_dir)
    assert read_spy == ["d"]
    assert sorted(summary["run_id"]) == ["a", "b", "c", "d"] and (traces["run_id"] == "d").sum() == 6

    read_spy.clear()
    record = sweep_dir / "runs" / "a" / "record.json"
    data = json.loads(record.read_text())
    data["summary"]["best_test_acc"] = 0.123
    record.write_text(json.dumps(data))
    bump_mtime(record)
    shutil.rmtree(sweep_dir / "runs" / "b")
    summary, traces = agg.aggregate(sweep_dir)
    assert read_spy == ["a"]
    assert sorted(summary["run_id"]) == ["a", "c", "d"] and "b" not in set(traces["run_id"])
    assert summary.set_index("run_id").loc["a", "best_test_acc"] == pytest.approx(0.123)
    assert (traces["run_id"] == "a").sum() == 11  # replaced, not duplicated


def test_runs_still_in_progress_appear_when_their_record_does(tmp_path, read_spy):
    d = tmp_path / "live"
    write_run(d, "a", lr=0.1, warmup=1)
    (d / "runs" / "pending").mkdir()  # started, no record yet
    summary, traces = agg.aggregate(d)
    assert list(summary["run_id"]) == ["a"] and traces.empty
    trace = toy_trace(0.1, 1, 50.0, steps=4)
    trace.to_parquet(d / "runs" / "a" / "trace.parquet")  # the trace lands after the record
    read_spy.clear()
    _, traces = agg.aggregate(d)
    assert read_spy == ["a"] and len(traces) == 5


@pytest.mark.parametrize("damage", ["json", "keys", "parquet"])
def test_corrupt_record_is_reported_once_and_skipped(sweep_dir, caplog, damage):
    run = sweep_dir / "runs" / "b"
    if damage == "json":
        (run / "record.json").write_text('{"run_id": "b", ')
        bad = run / "record.json"
    elif damage == "keys":
        (run / "record.json").write_text(json.dumps({"run_id": "b", "config": {}}))
        bad = run / "record.json"
    else:
        (run / "trace.parquet").write_bytes(b"PAR1 not really parquet")
        bad = run / "trace.parquet"
    with caplog.at_level(logging.WARNING, logger="sweep.aggregate"):
        summary, traces = agg.aggregate(sweep_dir)
    assert sorted(summary["run_id"]) == ["a", "c"] and "b" not in set(traces["run_id"])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and str(bad) in messages[0] and "\n" not in messages[0]
    if damage == "keys":
        assert "missing keys outcome, grid, summary" in messages[0]


def test_repaired_record_is_picked_up(sweep_dir, read_spy):
    record = sweep_dir / "runs" / "b" / "record.json"
    good = record.read_text()
    record.write_text("not json")
    assert "b" not in set(agg.aggregate(sweep_dir)[0]["run_id"])
    read_spy.clear()
    record.write_text(good)
    bump_mtime(record)
    assert "b" in set(agg.aggregate(sweep_dir)[0]["run_id"]) and read_spy == ["b"]


def test_outputs_are_written_without_leftover_temp_files(sweep_dir):
    agg.aggregate(sweep_dir)
    names = sorted(p.name for p in sweep_dir.iterdir())
    assert names == sorted([agg.INDEX_FILE, agg.LOCK_FILE, "runs", agg.SUMMARY_FILE, agg.TRACES_FILE])
    pd.testing.assert_frame_equal(pd.read_parquet(sweep_dir / agg.SUMMARY_FILE), agg.aggregate(sweep_dir)[0])


def test_deleted_tables_force_a_full_reread(sweep_dir, read_spy):
    agg.aggregate(sweep_dir)
    (sweep_dir / agg.TRACES_FILE).unlink()
    read_spy.clear()
    _, traces = agg.aggregate(sweep_dir)
    assert sorted(read_spy) == ["a", "b", "c"] and len(traces) > 0


def test_grid_key_mixing_strings_and_numbers_is_stored(tmp_path):
    d = tmp_path / "mixed"
    write_run(d, "a", lr=0.1, warmup=1, extra_grid={"probe.dtype": "float32", "tag": 1})
    write_run(d, "b", lr=0.1, warmup=2, extra_grid={"probe.dtype": "float64", "tag": "x"})
    summary, _ = agg.aggregate(d)
    assert sorted(summary["tag"].astype(str)) == ["1", "x"]


def test_not_a_sweep_directory_is_a_one_line_user_error(tmp_path, capsys):
    with pytest.raises(agg.SweepDirError):
        agg.aggregate(tmp_path)
    assert main(["aggregate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "runs/" in err and "\n" not in err


def test_command_reports_counts_and_corrupt_files(sweep_dir, capsys):
    (sweep_dir / "runs" / "a" / "record.json").write_text("{")
    assert main(["aggregate", str(sweep_dir)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("2 runs (1 converged, 1 diverged)")
    assert f"{sweep_dir / 'summary.parquet'}: 2 rows" in out
    assert err.count("\n") == 1 and "runs/a/record.json" in err


@pytest.mark.parametrize("lr_unit, column", [("sharpness", "lr_over_lambda0"), ("absolute", "lr")])
def test_error_record_without_summary_keeps_its_grid_position(tmp_path, lr_unit, column):
    d = tmp_path / "err"
    run = write_run(d, "e", lr=0.08, warmup=4, outcome="error", lr_unit=lr_unit)
    record = json.loads((run / "record.json").read_text())
    record["summary"] = {}  # what the engine writes for a crashed run
    (run / "record.json").write_text(json.dumps(record))
    row = agg.aggregate(d)[0].iloc[0]
    assert row["outcome"] == "error" and row["error_type"] == "RuntimeError"
    assert row[column] == pytest.approx(0.08 * 50.0 if lr_unit == "sharpness" else 0.08)
