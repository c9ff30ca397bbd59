"""Run claims (sweep/claims.py): one owner per run, dead owners reclaimed, live ones respected."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import time

import pytest

from sweep import claims as cl
from sweep.claims import Claims, Owner


def _write_claim(sweep, run_id, age_s=0.0, **owner):
    path = sweep / cl.CLAIMS / f"{run_id}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"host": "elsewhere", "pid": 12345, "start": None, "job": None, "token": "t0", **owner}
    path.write_text(json.dumps(info))
    if age_s:
        past = time.time() - age_s
        os.utime(path, (past, past))
    return path


def test_a_live_claim_is_respected_and_released(tmp_path):
    a, b = Claims(tmp_path), Claims(tmp_path)  # two owners in one live process
    assert a.claim("r1") and a.claim("r1")  # re-entrant
    assert not b.claim("r1")
    assert "pid" in b.busy["r1"] and str(os.getpid()) in b.busy["r1"]
    b.release(["r1"])  # not b's: nothing happens
    assert (tmp_path / cl.CLAIMS / "r1.claim").exists()
    a.release(["r1"])
    assert b.claim("r1") and "r1" not in b.busy


def test_claim_of_an_exited_process_on_this_host_is_taken_at_once(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _write_claim(tmp_path, "r1", host=Owner().host, pid=dead.pid)
    assert Claims(tmp_path).claim("r1")


def test_claim_of_a_silent_remote_owner_is_taken_only_when_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_CLAIM_STALE_S", "100")
    _write_claim(tmp_path, "fresh", age_s=10)
    _write_claim(tmp_path, "stale", age_s=1000)
    c = Claims(tmp_path)
    assert not c.claim("fresh")
    assert c.claim("stale")
    info = cl.read_claim(tmp_path / cl.CLAIMS / "stale.claim")
    assert info["token"] == c.owner.token


def test_heartbeat_keeps_held_claims_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_CLAIM_HEARTBEAT_S", "0.05")
    with Claims(tmp_path) as c:
        assert c.claim("r1")
        path = tmp_path / cl.CLAIMS / "r1.claim"
        os.utime(path, (time.time() - 1000,) * 2)
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5
    assert not path.exists()  # released on exit


def test_ended_slurm_job_frees_its_claims_and_a_requeued_task_takes_its_own(tmp_path, monkeypatch):
    from sweep.dispatch import jobs

    states = {"88_0": "CANCELLED", "88_1": "RUNNING"}
    monkeypatch.setattr(jobs, "slurm_states", lambda ids: {i: states[i] for i in ids})
    _write_claim(tmp_path, "cancelled", job="88_0")
    _write_claim(tmp_path, "running", job="88_1")
    c = Claims(tmp_path, Owner(job="99_0"))
    assert c.claim("cancelled")
    assert not c.claim("running") and "SLURM job 88_1" in c.busy["running"]
    # the same array task after a requeue: same job id, new process
    assert Claims(tmp_path, Owner(job="88_1")).claim("running")


def _race(sweep: str, barrier, out) -> None:
    c = Claims(sweep)
    barrier.wait()
    out.put(c.claim("contested"))
    time.sleep(0.5)  # hold it while the others try


def test_exactly_one_of_many_racing_processes_wins(tmp_path):
    ctx = mp.get_context("fork")
    n = 8
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    wins = [out.get(timeout=5) for _ in range(n)]
    assert sum(wins) == 1


@pytest.mark.parametrize("garbage", ["", "{not json"])
def test_an_unreadable_claim_counts_as_live_until_stale(tmp_path, monkeypatch, garbage):
    monkeypatch.setenv("SWEEP_CLAIM_STALE_S", "100")
    path = tmp_path / cl.CLAIMS / "r1.claim"
    path.parent.mkdir(parents=True)
    path.write_text(garbage)  # a writer killed between create and write
    assert not Claims(tmp_path).claim("r1")
    os.utime(path, (time.time() - 1000,) * 2)
    assert Claims(tmp_path).claim("r1")
