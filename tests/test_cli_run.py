"""`sweep run`: one-line user errors, skip-if-finished, force, atomic records."""
import json
import os

import pytest

from sweep import store
from sweep.cli import main

TINY = ["data=synthetic", "model.width=8", "model.depth=2", "steps=4", "probe.every=2", "probe.batch_size=32"]


@pytest.mark.parametrize("override, expected", [
    ("lrr=0.1", "unknown config key 'lrr'; did you mean 'lr'?"),
    ("model.widht=3", "did you mean 'model.width'?"),
    ("model=foo", "unknown model 'foo'; allowed: fcn"),
    ("lr=-1", "lr=-1.0: the target learning rate must be > 0"),
    ("warmup=0", "warmup=0: must be >= 1"),
    ("lr=abc", "lr: Value 'abc'"),
    ("loss=hinge", "expected one of [mse, xent]"),
    ("optimizer=adam optimizer.momentum=0.9", "unknown config key 'optimizer.momentum'"),
])
def test_bad_overrides_give_one_line(capsys, override, expected):
    rc = main(["run", "--dry-run", *override.split()])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert expected in err
    assert "Traceback" not in err


def test_missing_dataset_is_one_line(capsys, tmp_path):
    rc = main(["run", "data=npz", f"data.path={tmp_path}/nope.npz", f"results_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert rc in (1, 2)
    assert "nope.npz" in err and "Traceback" not in err


def test_rerun_skips_finished_and_force_reruns(tmp_path, capsys):
    args = ["run", *TINY, f"results_dir={tmp_path}", "sweep_name=s"]
    assert main(args) == 0
    runs = list((tmp_path / "s" / "runs").iterdir())
    assert len(runs) == 1
    record = runs[0] / "record.json"
    rec = json.loads(record.read_text())
    assert rec["outcome"] in ("converged", "failed") and rec["config"]["steps"] == 4
    assert (runs[0] / "trace.parquet").exists()
    assert {"versions", "git_commit", "device", "timings"} <= set(rec)
    mtime = record.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "1 already finished, 0 to run" in capsys.readouterr().out
    assert record.stat().st_mtime_ns == mtime
    assert main(args + ["force=true"]) == 0
    assert record.stat().st_mtime_ns != mtime


def test_interrupted_write_leaves_no_half_record(tmp_path, monkeypatch):
    target = tmp_path / "runs" / "abc" / "record.json"
    real_replace = os.replace

    def crash(src, dst):
        raise KeyboardInterrupt  # the process is killed between writing and renaming

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.atomic_write_json(target, {"outcome": "converged"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # the temp file is removed too
    assert not store.is_finished(tmp_path, "abc")


def test_error_records_are_not_finished(tmp_path):
    base = {"config": {}, "grid": {}, "summary": {}}
    store.write_run(tmp_path, "r1", {"run_id": "r1", "outcome": "error", "status": "error", **base}, None)
    store.write_run(tmp_path, "r2", {"run_id": "r2", "outcome": "diverged", "status": "done", **base}, None)
    assert not store.is_finished(tmp_path, "r1")  # retried
    assert store.is_finished(tmp_path, "r2")  # divergence is a result, never retried
