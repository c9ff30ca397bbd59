"""sweep submit/status without a SLURM cluster: manifests, task grouping, what gets (re)submitted,
one-line errors, job-state mapping (with stand-in sacct/sbatch/sinfo commands on PATH), and the
whole path end to end with cluster=local and cluster=submitit_local."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import submitit  # noqa: F401  first, at collection: its import runs logging.dictConfig, which closes
# every existing handler, e.g. absl's (via orbax) that holds pytest's capture stream

from sweep import store
from sweep.dispatch import manifest as mf
from sweep.errors import GridError, SlurmError

TINY = ["data=synthetic", "data.n_train=64", "data.n_test=32", "model.width=8", "model.depth=2", "steps=10",
        "batch_size=16", "probe.every=5", "probe.batch_size=32", "probe.lanczos_iters=4"]


def _grid(tmp_path, *extra):
    return TINY + [f"results_dir={tmp_path}", "sweep_name=s", *extra]


def _fake_record(sweep: Path, spec, outcome: str) -> None:
    store.write_run(sweep, spec.run_id, {"run_id": spec.run_id, "outcome": outcome, "status": "done",
                                         "config": {}, "grid": spec.grid, "summary": {}}, None)


def _fake_bin(tmp_path: Path, monkeypatch, **scripts: str) -> None:
    """Make PATH hold only these stand-in commands (name -> shell body; builtins only)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = bindir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))


# ----------------------------------------------------------------------------- manifest
def test_group_tasks_packs_cohorts():
    cohorts = list(range(7))
    assert mf.group_tasks(cohorts, 1) == [[c] for c in cohorts]
    assert mf.group_tasks(cohorts, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert mf.group_tasks(cohorts, 1, max_tasks=2) == [[0, 1, 2, 3], [4, 5, 6]]


def test_manifest_round_trip_keeps_run_identity(tmp_path):
    from sweep.grid import expand, make_cohorts
    from sweep.identity import run_id, to_dict

    runs = expand(_grid(tmp_path, "lr=0.1,0.2", "warmup=1,4", "cohort.max_size=3"))
    tasks = mf.group_tasks(make_cohorts(runs), 1)
    sub = mf.new_submission_dir(tmp_path / "s")
    m = mf.build(tmp_path / "s", tasks, overrides=["lr=0.1,0.2"], cluster={"executor": "slurm"}, force=False,
                 submission=sub.name)
    mf.write(sub / mf.MANIFEST, m)
    back = mf.read(sub / mf.MANIFEST)
    assert [len(t["cohorts"][0]["runs"]) for t in back["tasks"]] == [3, 1]
    loaded = [r for i in range(len(tasks)) for c in mf.task_cohorts(back, i) for r in c.runs]
    assert [r.run_id for r in loaded] == [r.run_id for r in runs]
    for orig, new in zip(runs, loaded):
        assert run_id(new.cfg) == new.run_id  # a node recomputes the same id from the stored config
        assert to_dict(new.cfg) == to_dict(orig.cfg)
        assert new.grid == orig.grid
    assert mf.latest(tmp_path / "s") == sub / mf.MANIFEST


def test_only_unfinished_runs_are_submitted_and_errors_are_retried(tmp_path):
    from sweep.dispatch.submit import plan
    from sweep.grid import expand

    runs = expand(_grid(tmp_path, "lr=0.1,0.2,0.4", "warmup=1,4"))
    sweep = tmp_path / "s"
    outcomes = ["converged", "diverged", "failed", "error", None, None]
    for spec, outcome in zip(runs, outcomes):
        if outcome:
            _fake_record(sweep, spec, outcome)
    todo, finished, busy = plan(runs, sweep, force=False, executor="local")
    assert [r.run_id for r in todo] == [r.run_id for r in runs[3:]]  # error + the two without record
    assert (finished, busy) == (3, 0)
    todo, _, _ = plan(runs, sweep, force=True, executor="local")
    assert len(todo) == 6


def test_until_divergence_lines_grow_with_each_submit(tmp_path):
    from sweep.dispatch.submit import plan, with_extensions
    from sweep.grid import expand

    runs = expand(_grid(tmp_path, "lr=0.1,0.2", "extend.until_divergence=true"))
    sweep = tmp_path / "s"
    assert len(with_extensions(runs, sweep)) == 2  # no outcomes yet: nothing to extend
    for spec in runs:
        _fake_record(sweep, spec, "converged")
    grown = with_extensions(runs, sweep)
    assert [float(r.cfg.lr) for r in grown] == [0.1, 0.2, 0.4]
    todo, finished, _ = plan(grown, sweep, force=False, executor="local")
    assert [float(r.cfg.lr) for r in todo] == [0.4] and finished == 2


# ----------------------------------------------------------------------------- one-line errors
def _cli(capsys, *argv):
    from sweep.cli import main

    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def test_grid_larger_than_max_runs_is_one_line(tmp_path, capsys):
    rc, err = _cli(capsys, "submit", *_grid(tmp_path, "lr=0.1,0.2,0.3", "cluster.max_runs=2"))
    assert rc == 2 and len(err.splitlines()) == 1
    assert "3 runs" in err and "cluster.max_runs" in err
    with pytest.raises(GridError):
        from sweep.dispatch.submit import submit

        submit(_grid(tmp_path, "lr=0.1,0.2,0.3", "cluster.max_runs=2"))


def test_sbatch_missing_says_how_to_check(tmp_path, monkeypatch, capsys):
    _fake_bin(tmp_path, monkeypatch)  # an empty bin: no sbatch anywhere on PATH
    rc, err = _cli(capsys, "submit", "cluster=slurm", *_grid(tmp_path, "lr=0.1"))
    assert rc == 2 and len(err.splitlines()) == 1
    assert "sbatch" in err and "sinfo" in err
    assert not (tmp_path / "s" / "submissions").exists()


def test_controller_down_says_how_to_check(tmp_path, monkeypatch):
    from sweep.dispatch.jobs import check_slurm

    _fake_bin(tmp_path, monkeypatch, sbatch="exit 1",
              sinfo="echo 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2; exit 1")
    with pytest.raises(SlurmError, match=r"Unable to contact slurm controller.*sinfo"):
        check_slurm()


def test_bad_partition_is_condensed(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from sweep.dispatch.jobs import explain_submission_error

    _fake_bin(tmp_path, monkeypatch, sinfo="printf 'debug*\\ngpu\\n'")
    exc = RuntimeError("Traceback (most recent call last):\n  File x\nsubprocess.CalledProcessError: ...\n"
                       "sbatch: error: invalid partition specified: nope\n"
                       "sbatch: error: Batch job submission failed: Invalid partition name specified")
    msg = str(explain_submission_error(exc, OmegaConf.create({"partition": "nope"})))
    assert msg == ("sbatch refused the job array: Invalid partition name specified "
                   "(cluster.partition=nope; partitions here: debug, gpu; list them with `sinfo`)")


# ----------------------------------------------------------------------------- status
def test_status_maps_job_states_to_run_states(tmp_path, monkeypatch):
    from sweep.dispatch.status import sweep_status
    from sweep.grid import expand, make_cohorts

    runs = expand(_grid(tmp_path, "lr=0.1,0.2,0.4,0.8,1.6,3.2", "cohort.max_size=1"))
    sweep = tmp_path / "s"
    tasks = mf.group_tasks(make_cohorts(runs), 1)
    sub = mf.new_submission_dir(sweep)
    m = mf.build(sweep, tasks, overrides=["lr=..."], cluster={"executor": "slurm"}, force=False, submission=sub.name)
    for i, t in enumerate(m["tasks"]):
        t["job_id"] = f"7_{i}"
    mf.write(sub / mf.MANIFEST, m)
    _fake_record(sweep, runs[0], "converged")
    _fake_record(sweep, runs[1], "error")  # and its task is being retried right now: running
    sacct = ("printf 'JobID|State\\n7_0|COMPLETED\\n7_1|RUNNING\\n7_2|CANCELLED by 0\\n7_3|TIMEOUT\\n"
             "7_4|PREEMPTED\\n7_[5]|PENDING\\n'")
    _fake_bin(tmp_path, monkeypatch, sacct=sacct, squeue="exit 0")
    st = sweep_status(sweep)
    assert [st.states[r.run_id] for r in runs] == ["converged", "running", "cancelled", "timeout", "preempted",
                                                   "pending"]
    _fake_bin(tmp_path, monkeypatch, sacct="echo 'sacct: error: Problem talking to the database' >&2; exit 1",
              squeue="exit 1")
    st = sweep_status(sweep)
    assert st.job_error and "sinfo" in st.job_error
    assert st.states[runs[0].run_id] == "converged" and st.states[runs[1].run_id] == "error"
    assert st.states[runs[2].run_id] == "unknown"
    # squeue knows live jobs; a job known to neither squeue nor sacct was cancelled before it started
    _fake_bin(tmp_path, monkeypatch, sacct="printf 'JobID|State\\n7_0|COMPLETED\\n'",
              squeue="printf '7_1|RUNNING\\n7_5|PENDING\\n'")
    st = sweep_status(sweep)
    assert [st.states[r.run_id] for r in runs] == ["converged", "running", "cancelled", "cancelled", "cancelled",
                                                   "pending"]


def test_status_rejects_a_non_sweep_dir(tmp_path, capsys):
    rc, err = _cli(capsys, "status", str(tmp_path))
    assert rc == 2 and "not a sweep directory" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- end to end, no SLURM
def test_task_keeps_going_after_a_failing_cohort(tmp_path):
    """Cohort 1 cannot load its data: error records; cohort 2 still trains."""
    from sweep.dispatch.task import SweepTask
    from sweep.grid import expand, make_cohorts

    runs = expand(_grid(tmp_path, "lr=0.1,0.2", "cohort.max_size=1"))
    sweep = tmp_path / "s"
    sub = mf.new_submission_dir(sweep)
    m = mf.build(sweep, [make_cohorts(runs)], overrides=[], cluster={"executor": "local"}, force=False,
                 submission=sub.name)
    m["tasks"][0]["cohorts"][0]["runs"][0]["config"]["data"] = {"name": "npz", "path": str(tmp_path / "no.npz"),
                                                                "subset": 0}
    mf.write(sub / mf.MANIFEST, m)
    counts = SweepTask(sub / mf.MANIFEST)(0)
    assert counts["error"] == 1 and sum(counts.values()) == 2
    assert store.read_record(sweep, runs[0].run_id)["outcome"] == "error"
    assert store.read_record(sweep, runs[1].run_id)["outcome"] in store.TERMINAL_OUTCOMES


def test_submit_local_then_status_then_resubmit(tmp_path, capsys):
    from sweep.cli import main

    args = _grid(tmp_path, "lr=0.5,400", "cluster=local")
    assert main(["submit", *args]) == 0
    out = capsys.readouterr().out
    assert "ran 2 runs in 1 cohorts as 1 tasks" in out
    recs = [json.loads(p.read_text()) for p in (tmp_path / "s" / "runs").glob("*/record.json")]
    assert sorted(r["outcome"] for r in recs) == ["converged", "diverged"]
    assert main(["status", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "converged 1  diverged 1  failed 0  error 0  pending 0  running 0" in out
    assert "sweep plot" in out.splitlines()[-1]
    assert main(["submit", *args]) == 0
    assert "2 already finished; nothing to submit" in capsys.readouterr().out
    assert len(mf.all_manifests(tmp_path / "s")) == 1


def test_submit_submitit_local_returns_before_the_results(tmp_path):
    from sweep.dispatch.status import sweep_status
    from sweep.dispatch.submit import submit

    t0 = time.monotonic()
    sub = submit(_grid(tmp_path, "lr=0.4,0.5", "cluster=submitit_local"))
    returned_after = time.monotonic() - t0
    assert sub.tasks == 1 and sub.job_id and not list((tmp_path / "s" / "runs").glob("*/record.json"))
    assert sweep_status(sub.sweep).counts["running"] == 2
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list((tmp_path / "s" / "runs").glob("*/record.json"))) < 2:
        time.sleep(1)
    assert sweep_status(sub.sweep).counts["converged"] == 2, f"submit returned after {returned_after:.1f}s"


def test_hydra_main_entry_point_writes_the_same_run(tmp_path):
    import subprocess
    import sys

    from sweep.grid import compose
    from sweep.identity import run_id

    args = _grid(tmp_path, "lr=0.1")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "sweep.train", *args, f"hydra.run.dir={tmp_path}/hydra"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rid = run_id(compose(args))
    rec = store.read_record(tmp_path / "s", rid)
    assert rec is not None and rec["outcome"] == "converged"
    assert rec["grid"]["lr"] == 0.1 and rec["grid"]["data.name"] == "synthetic" and "results_dir" not in rec["grid"]


def test_swept_keys_of_hydra_overrides():
    from sweep.train import swept_keys

    assert swept_keys(["lr=0.1", "param=mup", "model.width=8", "results_dir=/x", "hydra.run.dir=y",
                       "cluster.partition=gpu"]) == ["lr", "param.name", "model.width"]
