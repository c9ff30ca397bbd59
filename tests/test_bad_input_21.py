"""Issue 21: inputs that trained silently, or failed with a traceback or the wrong culprit, now fail
(or warn) in one line: cluster=slurm under `sweep run` (10), data=npz without data.path (11), an
npz without features (12), a grid parse error that named another override (13), warmup > steps (14)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sweep.cli import main

TINY = ["data=synthetic", "data.n_train=64", "data.n_test=32", "model.width=8", "model.depth=2", "steps=4",
        "probe.every=2", "probe.batch_size=32", "probe.lanczos_iters=4"]


def _one_error_line(capsys, progress_bar: bool = False) -> str:
    """The error as one line on stderr. With `progress_bar`, `sweep run` may have drawn its cohort bar
    before the data set was loaded (sweep/commands/run.py): that line is allowed, nothing else."""
    err = capsys.readouterr().err
    if progress_bar:
        lines = err.split("\n")
        err = "\n".join(ln for ln in lines if not ln.startswith("\rcohort 1/1"))
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err


def _records(sweep: Path) -> list[dict]:
    runs = sweep / "runs"
    return [json.loads((d / "record.json").read_text()) for d in runs.iterdir()] if runs.is_dir() else []


# ----------------------------------------------------------------------------- 10: cluster=slurm
@pytest.mark.parametrize("overrides, where", [
    (["cluster=slurm"], "sweep submit cluster=slurm"),
    (["cluster=slurm_a100"], "sweep submit cluster=slurm_a100"),
    (["cluster=submitit_local"], "sweep submit cluster=submitit_local"),
    (["cluster=local,slurm"], "sweep submit"),
    (["cluster.executor=slurm"], "sweep submit"),
])
def test_run_refuses_a_remote_cluster_and_points_to_submit(capsys, tmp_path, overrides, where):
    rc = main(["run", *TINY, *overrides, f"results_dir={tmp_path}", "sweep_name=s"])
    err = _one_error_line(capsys)
    assert rc == 2
    assert where in err and "sweep run trains in this process" in err
    assert not (tmp_path / "s").exists()  # nothing trained, nothing recorded


def test_run_with_cluster_local_still_trains(capsys, tmp_path):
    assert main(["run", *TINY, "cluster=local", f"results_dir={tmp_path}", "sweep_name=s"]) == 0
    (rec,) = _records(tmp_path / "s")
    assert rec["outcome"] in ("converged", "failed")


# ----------------------------------------------------------------------------- 11: data=npz, no path
@pytest.mark.parametrize("dry", [["--dry-run"], []])
def test_npz_without_path_is_one_line_naming_data_path(capsys, tmp_path, dry):
    rc = main(["run", *dry, "data=npz", f"results_dir={tmp_path}"])
    err = _one_error_line(capsys)
    assert rc == 2
    assert "data.path" in err and "data.path=FILE.npz" in err
    assert "MissingMandatoryValue" not in err


def test_npz_paths_may_be_swept(capsys, tmp_path):
    """A key without a default may be given by a sweep: the grid's cells set it."""
    rc = main(["run", "--dry-run", "data=npz", "data.path=a.npz,b.npz", f"results_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 runs" in out


# ----------------------------------------------------------------------------- 12: no features
@pytest.mark.parametrize("shape", [(10, 0), (10, 4, 4, 0)])
def test_npz_without_features_is_a_data_error_before_training(capsys, tmp_path, shape):
    dtype = np.uint8 if len(shape) == 4 else np.float32
    path = tmp_path / "empty_features.npz"
    np.savez(path, x_train=np.zeros(shape, dtype), y_train=np.arange(10) % 2,
             x_test=np.zeros((4, *shape[1:]), dtype), y_test=np.arange(4) % 2)
    with _no_warnings():
        rc = main(["run", "data=npz", f"data.path={path}", "steps=4", f"results_dir={tmp_path}", "sweep_name=s"])
    err = _one_error_line(capsys, progress_bar=True)
    assert rc == 2
    assert "no features" in err and "x_train" in err and str(path) in err
    assert _records(tmp_path / "s") == []  # nothing recorded: a re-run with a fixed file trains


def test_load_dataset_refuses_examples_without_features(tmp_path):
    from sweep.data.base import DataError, load_dataset

    path = tmp_path / "e.npz"
    np.savez(path, x_train=np.zeros((6, 0)), y_train=np.arange(6) % 2, x_test=np.zeros((2, 0)),
             y_test=np.arange(2) % 2)
    with pytest.raises(DataError, match="no features"):
        load_dataset(type("Cfg", (), {"name": "npz", "path": str(path), "subset": 0, "standardize": "per_image"}))


class _no_warnings:
    """Fail on any warning (numpy's 'invalid value encountered in divide' came before the error)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


# ----------------------------------------------------------------------------- 13: which override
def test_parse_error_names_the_override_that_failed(capsys, tmp_path):
    rc = main(["run", "--dry-run", "model.depth=2", "sweep_name=run2`x", f"results_dir={tmp_path}"])
    err = _one_error_line(capsys)
    assert rc == 2
    assert "'sweep_name=run2`x'" in err
    assert "model.depth" not in err
    assert "LexerNoViableAltException" not in err and "'`'" in err  # the character, in words


def test_hydra_override_parse_error_gives_the_reason(capsys, tmp_path):
    rc = main(["run", "--dry-run", "lr=0.1", "hydra.run.dir=a`b"])
    err = _one_error_line(capsys)
    assert rc == 2
    assert "cannot parse override 'hydra.run.dir=a`b': the character '`'" in err
    assert "See https" not in err


def test_parse_error_message_picks_the_failing_override():
    from hydra.errors import HydraException

    from sweep.grid import override_parser, parse_error_message

    overrides = ["lr=2", "warmup=2", "sweep_name=a2`b", "steps=4"]
    with pytest.raises(HydraException) as info:
        override_parser().parse_overrides(overrides)
    message = parse_error_message(info.value, overrides)
    assert message.startswith("cannot parse override 'sweep_name=a2`b': ")


# ----------------------------------------------------------------------------- 14: warmup > steps
def test_warmup_longer_than_steps_warns_once_per_sweep(capsys, tmp_path):
    rc = main(["run", "--dry-run", *TINY, "steps=10", "warmup=100,200", "lr=0.1,0.2", f"results_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(lines) == 1, err
    assert "warmup=100" in lines[0] and "warmup=200" in lines[0] and "steps=10" in lines[0]
    assert "max_lr" in lines[0]


def test_warmup_within_steps_does_not_warn(capsys, tmp_path):
    assert main(["run", "--dry-run", *TINY, "steps=10", "warmup=1,10", f"results_dir={tmp_path}"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_summary_records_the_largest_lr_used(capsys, tmp_path):
    """warmup=100, steps=10, lr=1: updates t = 1..10 (the schedule counts from 1, sweep/optim.py), so
    the last and largest lr is 1 * 10/100, never the target 1."""
    rc = main(["run", *TINY, "steps=10", "warmup=100", "lr=1", f"results_dir={tmp_path}", "sweep_name=s"])
    assert rc == 0
    (rec,) = _records(tmp_path / "s")
    assert rec["summary"]["steps_run"] == 10
    assert rec["summary"]["lr"] == 1.0  # the target lr stays what was asked
    assert rec["summary"]["max_lr"] == pytest.approx(10 / 100, rel=1e-6)  # float32, as the engine; not 11/100


def test_max_learning_rates_follow_the_engine_schedule(compose_cfg):
    from sweep.plan import max_learning_rates, plan_cohort

    cfgs = [compose_cfg("steps=10", "warmup=100", "lr=1"), compose_cfg("steps=10", "warmup=4", "lr=2"),
            compose_cfg("steps=10", "warmup=100", "lr=1", "lr_init=0.5"), compose_cfg("steps=10", "warmup=1", "lr=3")]
    plan = plan_cohort(cfgs)
    got = max_learning_rates(plan, steps_run=[10, 10, 10, 10])
    assert got == pytest.approx([10 / 100, 2.0, 0.5 + 0.5 * 10 / 100, 3.0], rel=1e-6)
    # a member that diverged after 3 updates only used t = 1..3; one that made none used no lr
    assert max_learning_rates(plan, steps_run=[3, 0, 10, 10])[:2] == pytest.approx([3 / 100, None])
    cosine = plan_cohort([compose_cfg("steps=10", "warmup=4", "lr=2", "decay=cosine")])
    assert max_learning_rates(cosine, steps_run=[10]) == pytest.approx([2.0], rel=1e-6)


# ----------------------------------------------------------------------------- 16: smaller ones
def test_status_without_a_folder_lists_the_sweeps_under_results(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 0
    assert "no sweeps under results/" in capsys.readouterr().out
    assert main(["run", *TINY, "sweep_name=first"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "1 sweeps under results/" in out and "results/first" in out and "1 runs:" in out


def test_hydra_refusal_under_run_names_only_what_run_honours(capsys):
    assert main(["run", "hydra.verbose=true"]) == 2
    err = _one_error_line(capsys)
    assert "hydra/launcher=basic)" in err and "submitit_slurm" not in err
    assert main(["submit", "hydra.verbose=true", "--dry-run"]) == 2
    assert "submitit_slurm" in _one_error_line(capsys)


def test_hydra_entry_point_prints_no_tpu_backend_line(tmp_path):
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "sweep.train", "-m", *TINY, "probe.sharpness=false"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": ""})
    assert res.returncode == 0, res.stderr
    assert "Launching 1 jobs" in res.stdout + res.stderr
    assert "backend 'tpu'" not in res.stdout + res.stderr


def test_max_lr_is_a_measurement_not_a_facet():
    import pandas as pd

    from sweep import plot

    assert "max_lr" in plot.not_facets()
    df = pd.DataFrame({"param": ["sp", "sp", "mup"], "max_lr": [0.1, 0.2, 0.3], "lr": [0.1, 0.2, 0.3],
                       "warmup": [1, 1, 1]})
    assert plot.default_facets(df) == ["param"]
