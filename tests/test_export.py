"""`sweep export tensorboard`: the exported event files, read back with TensorBoard's own reader, hold each
run's trace and summary exactly (float32, TensorBoard's scalar type); without the extra, one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from record_factory import realistic_sweep, toy_trace, write_run

from sweep.cli import main

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the [tensorboard] extra is part of [test]: pip install -e '.[test]'")


def _read(folder: Path):
    ea = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


@pytest.fixture
def toy_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "toy"
    realistic_sweep(sweep, lr_exponents=range(0, 3), warmup_exponents=(0, 4), steps=40)
    return sweep


def test_export_reads_back_with_tensorboard(toy_sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tb"
    assert main(["export", "tensorboard", str(toy_sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = {p.name: json.loads((p / "record.json").read_text()) for p in (toy_sweep / "runs").iterdir()}
    assert f"exported {len(records)} runs" in printed and f"tensorboard --logdir {out}" in printed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(records)

    checked_points = 0
    for run_id, record in records.items():
        ea = _read(out / run_id)
        scalars = set(ea.Tags()["scalars"])
        trace_path = toy_sweep / "runs" / run_id / "trace.parquet"
        if trace_path.exists():
            trace = pd.read_parquet(trace_path)
            for column in trace.columns.drop("step"):
                rows = trace[trace[column].notna()]
                if rows.empty:  # precond_sharpness/test_* of SGD toy runs: never measured, not exported
                    assert f"trace/{column}" not in scalars
                    continue
                events = ea.Scalars(f"trace/{column}")
                assert [e.step for e in events] == rows["step"].tolist()
                np.testing.assert_array_equal([e.value for e in events],
                                              rows[column].to_numpy(np.float64).astype(np.float32))
                checked_points += len(events)
        else:
            assert record["outcome"] == "error"
            assert not any(t.startswith("trace/") for t in scalars)
        for name, value in record["summary"].items():
            if isinstance(value, (int, float)) and value is not None and np.isfinite(value):
                (event,) = ea.Scalars(f"summary/{name}")
                assert event.value == np.float32(value)
        # hparams: the HParams tab's session of this run, with its swept values and outcome
        from tensorboard.plugins.hparams import plugin_data_pb2

        content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert info.group_name == run_id
        assert info.hparams["outcome"].string_value == record["outcome"]
        assert info.hparams["param"].string_value == record["config"]["param"]["name"]
        assert info.hparams["warmup"].number_value == record["config"]["warmup"]
        (text,) = ea.Tensors("record/text_summary")
        assert record["outcome"] in text.tensor_proto.string_val[0].decode()
    assert checked_points > 1000

    experiment = _read(out)  # the experiment-level hparams config lists the summary metrics
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = plugin_data_pb2.HParamsPluginData.FromString(
        experiment.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    assert "summary/best_test_acc" in {m.name.tag for m in config.metric_infos}
    assert {"param", "warmup", "outcome"} <= {h.name for h in config.hparam_infos}


def test_reexport_replaces_event_files(toy_sweep: Path) -> None:
    for _ in range(2):
        assert main(["export", "tensorboard", str(toy_sweep)]) == 0
    out = toy_sweep / "tensorboard"
    for run in (p for p in out.iterdir() if p.is_dir()):
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        ea = _read(run)
        if "trace/lr" in ea.Tags()["scalars"]:
            steps = [e.step for e in ea.Scalars("trace/lr")]
            assert len(steps) == len(set(steps))  # no duplicate points from the first export


def test_diverged_run_keeps_its_last_finite_points(tmp_path: Path) -> None:
    sweep = tmp_path / "div"
    trace = toy_trace(1.0, 1, 50.0, steps=20, diverge_at=10)
    trace.loc[trace.index[-1], "train_loss"] = float("inf")
    trace.loc[trace.index[-1], "sharpness"] = float("nan")
    write_run(sweep, "r1", lr=1.0, warmup=1, outcome="diverged", trace=trace, metrics={"divergence_step": 10})
    assert main(["export", "tensorboard", str(sweep)]) == 0
    ea = _read(sweep / "tensorboard" / "r1")
    assert ea.Scalars("trace/train_loss")[-1].value == np.inf and ea.Scalars("trace/train_loss")[-1].step == 10
    assert ea.Scalars("trace/sharpness")[-1].step == 9
    assert ea.Scalars("summary/divergence_step")[0].value == 10


def test_not_a_sweep_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["export", "tensorboard", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_without_the_extra_one_line_with_the_install_command(toy_sweep: Path) -> None:
    code = ("import sys; sys.modules['tensorboard'] = None\n"  # as if the extra were not installed
            "from sweep.cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "export", "tensorboard", str(toy_sweep)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "pip install 'tensorboard>=2.14'" in out.stderr
    assert not (toy_sweep / "tensorboard").exists()
