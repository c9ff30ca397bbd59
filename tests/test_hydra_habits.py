"""Hydra habits (issue 10.2-10.4): `hydra.*` overrides honoured or refused in one line, `-m`,
`--cfg job|all [--cell]`, and `python -m sweep.train -m` running a whole grid (experiment `grid:`
block + pow2) under Hydra's own launchers with `sweep run`'s run ids and records, without chdir."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sweep import cli, store
from sweep.config import ConfigError
from sweep.hydra_compat import translate

SMALL = ["model.width=16", "model.depth=2", "batch_size=16", "probe.batch_size=32", "probe.lanczos_iters=4", "steps=5"]
TINY = ["data=synthetic", "data.n_train=64", "data.n_test=32", *SMALL]
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- hydra.* overrides
@pytest.mark.parametrize("command", ["run", "submit"])
def test_sweep_and_run_dir_become_the_sweep_folder(command):
    out = translate(["lr=0.1", "hydra.sweep.dir=/scratch/me/phase1"], command)
    assert out == ["lr=0.1", "results_dir='/scratch/me'", "sweep_name='phase1'"]
    assert translate(["hydra.run.dir=x"], command) == ["results_dir='.'", "sweep_name='x'"]
    # the same folder twice is fine; a contradiction is refused
    assert translate(["hydra.sweep.dir=/a/b", "hydra.run.dir=/a/b", "results_dir=/a/"], command) == \
        ["results_dir=/a/", "sweep_name='b'"]
    with pytest.raises(ConfigError, match="also sets sweep_name=c"):
        translate(["hydra.sweep.dir=/a/b", "sweep_name=c"], command)
    with pytest.raises(ConfigError, match="disagree"):
        translate(["hydra.sweep.dir=/a/b", "hydra.run.dir=/a/c"], command)


def test_launchers_map_to_clusters_for_submit_and_point_to_submit_from_run():
    assert translate(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                      "hydra.launcher.timeout_min=30"], "submit") == \
        ["cluster=slurm", "cluster.partition=gpu", "cluster.timeout_min=30"]
    assert translate(["hydra/launcher=submitit_local"], "submit") == ["cluster=submitit_local"]
    assert translate(["hydra/launcher=basic"], "submit") == ["cluster=local"]
    assert translate(["hydra/launcher=basic", "hydra/sweeper=basic", "hydra.job.chdir=false",
                      "hydra.mode=MULTIRUN"], "run") == []
    with pytest.raises(ConfigError, match="sweep submit cluster=slurm"):
        translate(["hydra/launcher=submitit_slurm"], "run")
    with pytest.raises(ConfigError, match="apply to sweep submit"):
        translate(["hydra.launcher.partition=gpu"], "run")
    with pytest.raises(ConfigError, match="also sets cluster=local"):
        translate(["hydra/launcher=submitit_slurm", "cluster=local"], "submit")
    with pytest.raises(ConfigError, match="no such cluster setting"):
        translate(["hydra.launcher.constraint=a100"], "submit")


@pytest.mark.parametrize("override, reason", [
    ("hydra.verbose=true", "not supported by sweep run"),
    ("hydra/job_logging=disabled", "not supported by sweep run"),
    ("hydra.sweep.subdir=x", "not supported by sweep run"),
    ("hydra/sweeper=optuna", "python -m sweep.train -m hydra/sweeper=optuna"),
    ("hydra/launcher=joblib", "unknown launcher"),
    ("hydra.job.chdir=true", "never changes the working directory"),
    ("hydra.mode=RUN", "always a multirun"),
    ("hydra.sweep.dir=/x/${now:%H-%M}", "interpolations"),
    ("hydra.sweep.dir=/x/..", "plain folder name"),
    ("hydra.sweep.dir=/a,/b", "cannot be swept"),
    ("~hydra.run.dir", "deleting"),
])
def test_other_hydra_overrides_are_refused_in_one_line(override, reason, capsys):
    with pytest.raises(ConfigError, match=reason.replace("(", r"\(").replace("$", r"\$")):
        translate([override], "run")
    assert cli.main(["run", override, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and override.lstrip("~") in err


def test_hydra_sweep_dir_through_the_cli(tmp_path, capsys):
    assert cli.main(["run", "-m", f"hydra.sweep.dir={tmp_path}/scratch/x", "lr=0.1,0.2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep 'x': 2 runs") and f"-> {tmp_path}/scratch/x" in out
    assert cli.main(["submit", "--multirun", "hydra/launcher=submitit_local", "hydra.launcher.array_parallelism=3",
                     "--cfg", "job"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["cluster"]["executor"] == "submitit_local" and cfg["cluster"]["array_parallelism"] == 3


# ----------------------------------------------------------------------------- --cfg
def _dry_run_ids(capsys, *overrides) -> list[str]:
    assert cli.main(["run", *overrides, "--dry-run"]) == 0
    return [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip().startswith("#")]


def test_cfg_job_prints_each_cell_as_yaml_that_hashes_to_its_run_id(capsys):
    from sweep.identity import run_id

    grid = ["lr=pow2(0,1)", "warmup=1,8", "param=sp,mup"]
    ids = _dry_run_ids(capsys, *grid)
    assert len(ids) == 8
    assert cli.main(["run", "-m", *grid, "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    docs = list(yaml.safe_load_all(out))
    assert [run_id(d) for d in docs] == ids  # numbered like --dry-run (#N), cohort by cohort
    assert out.startswith(f"# #0 {ids[0]} : ") and "hydra" not in docs[0] and "defaults" not in docs[0]
    assert {d["param"]["name"] for d in docs} == {"sp", "mup"} and {d["lr"] for d in docs} == {1.0, 2.0}

    assert cli.main(["run", *grid, "--cfg", "job", "--cell", "5"]) == 0
    one = capsys.readouterr().out
    assert run_id(yaml.safe_load(one)) == ids[5] and one.startswith(f"# #5 {ids[5]} : ")
    assert cli.main(["run", *grid, "--cfg", "all", "--cell", ids[3][:8]]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg.pop("hydra") == {"run": {"dir": f"results/default/runs/{ids[3]}"}, "sweep": {"dir": "results/default"},
                                "job": {"chdir": False}, "mode": "MULTIRUN"}
    assert run_id(cfg) == ids[3]


@pytest.mark.parametrize("args, message", [
    (["--cfg", "hydra"], "--cfg hydra does not apply"),
    (["--cell", "1"], "add --cfg job"),
    (["lr=1,2", "--cfg", "job", "--cell", "2"], "the grid has 2 runs (#0..#1)"),
    (["--cfg", "job", "--cell", "ffffffff"], "matches no run"),
])
def test_cfg_misuse_is_one_line(args, message, capsys):
    assert cli.main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- python -m sweep.train -m
def _tiny_npz(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)  # learnable: the sign of the first feature
    np.savez(path, x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])


def _train(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "sweep.train", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def _same_records(a: dict, b: dict) -> None:
    assert a["run_id"] == b["run_id"] and a["grid"] == b["grid"] and a["outcome"] == b["outcome"]
    ca, cb = dict(a["config"]), dict(b["config"])
    ca.pop("results_dir"), cb.pop("results_dir")
    assert ca == cb
    assert a["summary"].keys() == b["summary"].keys()
    for k, v in a["summary"].items():  # a cohort of one vs a vmapped cohort: float32 rounding only
        w = b["summary"][k]
        assert (v == w) or (isinstance(v, float) and math.isclose(v, w, rel_tol=1e-4, abs_tol=1e-6)), (k, v, w)


def test_hydra_multirun_runs_the_experiment_grid_with_sweep_runs_ids_and_records(tmp_path, capsys):
    """experiment=demo's grid: block (param.name=sp,mup) x a pow2 lr axis on the command line; a
    relative data.path; run from a temporary directory: no chdir, no ./outputs."""
    from sweep.grid import expand

    _tiny_npz(tmp_path / "tiny.npz")
    args = ["experiment=demo", "lr=pow2(-2,-1)", "warmup=1", "lr_unit=absolute", *SMALL, "data=npz",
            "data.path=tiny.npz", "sweep_name=h"]
    proc = _train(tmp_path, "-m", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "tiny.npz"]  # no outputs/, no chdir

    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        runs = expand(args)
        assert cli.main(["run", *args, "results_dir=ref"]) == 0  # the same grid through sweep run
    finally:
        os.chdir(cwd)
    assert len(runs) == 4 and {r.grid["param.name"] for r in runs} == {"sp", "mup"}
    sweep = tmp_path / "results" / "h"
    assert sorted(p.name for p in (sweep / "runs").iterdir()) == sorted(r.run_id for r in runs)
    for r in runs:
        rec = store.read_record(sweep, r.run_id)
        assert rec["grid"] == r.grid == {"param.name": rec["config"]["param"]["name"], "lr": rec["config"]["lr"]}
        assert rec["config"] == r.config_dict()
        assert rec["timings"]["cohort_size"] == 1
        _same_records(rec, store.read_record(tmp_path / "ref" / "h", r.run_id))
        assert f"{r.run_id} {rec['outcome']} -> {sweep / 'runs' / r.run_id}" in proc.stdout
    # Hydra's own outputs live under the sweep folder: one .hydra/ per job and multirun.yaml
    (stamp,) = (sweep / "hydra").iterdir()
    assert (stamp / "multirun.yaml").is_file() and sorted(p.name for p in stamp.iterdir() if p.is_dir()) == \
        ["0", "1", "2", "3"]

    again = _train(tmp_path, "-m", *args)  # finished runs are not launched again
    assert again.returncode == 0 and "4 runs, 4 already finished, 0 to run" in again.stdout + again.stderr


def test_hydra_without_m_refuses_an_experiment_grid_and_a_bad_pow2_is_reported(tmp_path):
    proc = _train(tmp_path, "experiment=demo", *TINY)
    assert proc.returncode == 2 and proc.stderr.startswith("error: this experiment is a grid") \
        and proc.stderr.count("\n") == 1 and "add -m" in proc.stderr
    assert not (tmp_path / "outputs").exists()
    bad = _train(tmp_path, "-m", "lr=pow2(0,1", *TINY)
    assert bad.returncode == 1 and "pow2" in bad.stderr


def test_hydra_submitit_local_launcher_runs_the_grid(tmp_path):
    from sweep.grid import expand

    args = ["lr=pow2(-1,0)", *TINY, "sweep_name=sl"]
    proc = _train(tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    sweep = tmp_path / "results" / "sl"
    runs = expand([*args, f"results_dir={tmp_path / 'results'}"])
    for r in runs:
        rec = store.read_record(sweep, r.run_id)
        assert rec["outcome"] == "converged" and rec["grid"] == r.grid == {"lr": rec["config"]["lr"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert list((sweep / "hydra").glob("*/.submitit"))  # submitit's folder sits under the sweep, too


def _slurm_missing() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH"
    try:
        ok = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return None if ok else "SLURM does not answer"


@pytest.mark.slurm
def test_hydra_submitit_slurm_launcher_runs_the_grid(tmp_path):
    reason = _slurm_missing()
    if reason:
        if os.environ.get("SWEEP_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(f"no SLURM cluster reachable ({reason}); start one with `bash scripts/slurm-cluster.sh up`")
    from sweep.grid import expand

    args = ["lr=0.4,0.5", *TINY, "sweep_name=ss"]
    proc = _train(tmp_path, "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=10",
                  "hydra.launcher.cpus_per_task=1", *args, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = expand([*args, f"results_dir={tmp_path / 'results'}"])
    for r in runs:
        rec = store.read_record(tmp_path / "results" / "ss", r.run_id)
        assert rec["outcome"] == "converged" and rec["grid"] == {"lr": r.cfg.lr}
        assert json.loads(json.dumps(rec["config"])) == r.config_dict() | {"results_dir": "results"}


def test_each_hydra_job_composes_to_its_runs_id():
    """The sweep_grid sweeper's job overrides (grid block + command-line sweeps, tiny floats,
    strings, group sweeps, `+key`) compose, through Hydra, to the very run `sweep run` expands."""
    from sweep.grid import compose
    from sweep.hydra_compat import grid_jobs
    from sweep.identity import run_id

    runs, jobs = grid_jobs(["experiment=demo", "lr=pow2(-20,-19)", "loss=mse,xent", "optimizer=sgd,adam",
                            "+seed=3", "warmup=1"])
    assert len(runs) == len(jobs) == 16
    for spec, job in zip(runs, jobs):
        assert f"hydra.sweeper.run_id='{spec.run_id}'" in job
        assert run_id(compose([o for o in job if not o.startswith("hydra.")])) == spec.run_id
    assert jobs[0][:2] == ["experiment=demo", "seed=3"]
