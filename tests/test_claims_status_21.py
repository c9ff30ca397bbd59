"""Issue 21, items 6-9: `sweep status` after a killed local sweep, claims on a full disk, force=true
in two shells at once, and the finishing hint of a copied sweep folder."""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import subprocess
import time

import pytest
from record_factory import write_run

from sweep import claims as cl
from sweep.claims import Claims, Owner
from sweep.commands.status import render
from sweep.dispatch import manifest as mf
from sweep.dispatch.status import format_status, record_local_command, sweep_status
from sweep.grid import Cohort, RunSpec, expand
from sweep.runner import claim_pending

GRID = ["data=synthetic", "steps=10", "lr=0.01,0.02,0.03,0.04", "warmup=1,2,4,8", "sweep_name=k0"]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _killed_local_sweep(sweep, finished: int = 8) -> list[str]:
    """A `sweep run` of GRID killed with SIGKILL after `finished` records: its claims and progress
    report stay behind, owned by a pid that no longer runs. Returns the grid's run ids."""
    runs = expand(GRID)
    record_local_command(sweep, GRID)
    for spec in runs[:finished]:
        write_run(sweep, spec.run_id, lr=spec.grid["lr"], warmup=spec.grid["warmup"])
    left = [r.run_id for r in runs[finished:finished + 2]]
    owner = {"host": Owner().host, "pid": _dead_pid(), "start": None, "job": None, "token": "dead0"}
    (sweep / cl.CLAIMS).mkdir(parents=True, exist_ok=True)
    for rid in left:
        (sweep / cl.CLAIMS / f"{rid}.claim").write_text(json.dumps(owner))
    (sweep / cl.CLAIMS / "dead0.progress").write_text(json.dumps(
        {**owner, "runs": left, "step": 3, "total": 11, "started": time.time() - 5, "updated": time.time()}))
    return [r.run_id for r in runs]


def _args(sweep) -> argparse.Namespace:
    return argparse.Namespace(sweep_dir=str(sweep), metric="best_test_acc", no_diagram=True, watch=None)


# ----------------------------------------------------------------------------- item 6
def test_a_killed_local_sweep_counts_its_unstarted_grid_runs_as_pending_and_says_re_run(tmp_path):
    sweep = tmp_path / "results" / "k0"
    _killed_local_sweep(sweep)
    status = sweep_status(sweep)
    assert sum(status.counts.values()) == 16
    assert status.counts["converged"] == 8 and status.counts["pending"] == 8 and status.counts["running"] == 0
    text, busy = render(_args(sweep))
    assert "sweep k0: 16 runs" in text and "pending 8  running 0" in text
    assert "8 runs to finish (8 pending); re-run: sweep run " in text
    assert not busy  # nothing will train them until a re-run: --watch must not wait forever


def test_pending_runs_of_a_live_local_sweep_get_no_re_run_hint(tmp_path):
    sweep = tmp_path / "results" / "k0"
    ids = _killed_local_sweep(sweep)
    with Claims(sweep) as live:  # this process is the sweep that still runs
        assert live.claim(ids[10])
        live.report([ids[10]], 2, 11, time.time())
        status = sweep_status(sweep)
        text, busy = render(_args(sweep))
    assert status.counts["running"] == 1 and status.counts["pending"] == 7
    assert "to finish" not in text and busy


# ----------------------------------------------------------------------------- item 7
def test_a_full_disk_while_claiming_leaves_no_claim_behind(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    c = Claims(tmp_path)
    monkeypatch.setattr(cl.os, "fsync", full)
    with pytest.raises(OSError) as exc:
        c.claim("r1")
    monkeypatch.undo()
    assert exc.value.errno == errno.ENOSPC and not c.held
    assert list((tmp_path / cl.CLAIMS).iterdir()) == []  # no claim, no temp file
    assert Claims(tmp_path).claim("r1")  # the re-run is not told another process trains it


@pytest.mark.parametrize("garbage", ["", "{not json"])
def test_an_empty_or_unparsable_claim_left_behind_is_stale(tmp_path, monkeypatch, garbage):
    monkeypatch.setenv("SWEEP_CLAIM_STALE_S", "300")
    path = tmp_path / cl.CLAIMS / "r1.claim"
    path.parent.mkdir(parents=True)
    path.write_text(garbage)  # what a full disk left before claims were written whole
    os.utime(path, (time.time() - 10,) * 2)  # seconds ago: far from the 300 s heartbeat limit
    c = Claims(tmp_path)
    assert c.owner_gone(path, None) is not None
    assert c.claim("r1") and "r1" not in c.busy


# ----------------------------------------------------------------------------- item 8
def test_force_in_two_shells_still_trains_each_run_once(tmp_path):
    sweep = tmp_path / "f"
    old = write_run(sweep, "old", lr=0.1, warmup=1)  # finished before either shell started
    os.utime(old / "record.json", (time.time() - 100,) * 2)
    cohort = Cohort("k", [RunSpec(r, {}, {}) for r in ("old", "r1", "r2")])
    a, b = Claims(sweep), Claims(sweep)
    mine = [s.run_id for s in claim_pending(cohort, sweep, True, a)]
    assert mine == ["old", "r1", "r2"]  # force retrains finished runs too
    assert claim_pending(cohort, sweep, True, b) == [] and set(b.busy) == set(mine)  # held by a
    for rid in mine:  # a trains them and lets go
        write_run(sweep, rid, lr=0.1, warmup=1)
    a.release(mine)
    assert claim_pending(cohort, sweep, True, b) == []  # b must not train them a second time
    assert not b.held


# ----------------------------------------------------------------------------- item 9
def _error_sweep(sweep, overrides: list[str]) -> None:
    write_run(sweep, "aaaa", lr=0.1, warmup=1)
    write_run(sweep, "bbbb", lr=0.2, warmup=1, outcome="error")
    record_local_command(sweep, overrides)


def _hint(text: str) -> str:
    return next(ln for ln in text.splitlines() if "to finish" in ln)


def test_the_hint_of_a_copied_sweep_names_the_copy_not_the_original(tmp_path, monkeypatch):
    _error_sweep(tmp_path / "results" / "k0", ["lr=0.1,0.2", "sweep_name=k0"])
    shutil.copytree(tmp_path / "results" / "k0", tmp_path / "results" / "c1")
    shutil.copytree(tmp_path / "results" / "k0", tmp_path / "elsewhere" / "c2")
    monkeypatch.chdir(tmp_path)
    hint = _hint(format_status(sweep_status("results/c1")))
    assert hint.endswith("re-run: sweep run lr=0.1,0.2 sweep_name=c1"), hint
    hint = _hint(format_status(sweep_status(tmp_path / "elsewhere" / "c2")))
    assert hint.endswith(f"re-run: sweep run lr=0.1,0.2 sweep_name=c2 results_dir={tmp_path / 'elsewhere'}"), hint


def test_the_hint_of_a_copied_experiment_sweep_names_the_copy(tmp_path, monkeypatch):
    _error_sweep(tmp_path / "results" / "demo", ["experiment=demo", "results_dir=/scratch/orig"])
    shutil.copytree(tmp_path / "results" / "demo", tmp_path / "results" / "c1")
    monkeypatch.chdir(tmp_path)
    hint = _hint(format_status(sweep_status("results/c1")))
    assert hint.endswith("re-run: sweep run experiment=demo sweep_name=c1"), hint  # not the yaml's name


def test_the_resubmit_hint_of_a_copied_sweep_names_the_copy(tmp_path, monkeypatch):
    k0 = tmp_path / "results" / "k0"
    write_run(k0, "bbbb", lr=0.2, warmup=1, outcome="error")
    sub = mf.new_submission_dir(k0)
    mf.write(sub / mf.MANIFEST, mf.build(k0, [], overrides=["lr=0.1,0.2", "sweep_name=k0", "cluster=slurm"],
                                         cluster={"executor": "slurm"}, force=False, submission=sub.name))
    shutil.copytree(k0, tmp_path / "results" / "c1")
    monkeypatch.chdir(tmp_path)
    hint = _hint(format_status(sweep_status("results/c1")))
    assert hint.endswith("resubmit: sweep submit lr=0.1,0.2 sweep_name=c1 cluster=slurm"), hint
