"""Integrity that is really checked, and aggregation under concurrency (issue 21, items 1-5): a
changed trace byte or a record in the wrong folder is not "finished"; two aggregations take turns and
the three tables are one generation; damaged tables are rebuilt from the records; one unreadable run
folder does not hide the sweep."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from record_factory import toy_trace, write_run
from sweep import aggregate as agg
from sweep import store
from sweep.cli import main


def _stored_run(sweep: Path, run_id: str, lr: float = 0.02) -> Path:
    """A run written the way the engine writes it (store.write_run: size and sha256 in the record)."""
    run_dir = write_run(sweep, run_id, lr=lr, warmup=1)
    record = json.loads((run_dir / store.RECORD).read_text())
    (run_dir / store.RECORD).unlink()
    store.write_run(sweep, run_id, record, toy_trace(lr, 1, 50.0, steps=20))
    return run_dir


def _flip_a_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_changed_trace_byte_of_the_same_size_is_not_finished(tmp_path):
    sweep = tmp_path / "s"
    run_dir = _stored_run(sweep, "r1")
    assert store.is_finished(sweep, "r1")
    size = (run_dir / store.TRACE).stat().st_size
    _flip_a_middle_byte(run_dir / store.TRACE)
    assert (run_dir / store.TRACE).stat().st_size == size
    state, why = store.run_state(sweep, "r1")
    assert state == "corrupt" and "sha256" in why
    assert not store.is_finished(sweep, "r1")


def test_the_digest_cache_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path):
    sweep = tmp_path / "s"
    run_dir = _stored_run(sweep, "r1")
    trace = run_dir / store.TRACE
    assert store.is_finished(sweep, "r1")  # digest now cached
    st = trace.stat()
    _flip_a_middle_byte(trace)
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: only ctime tells
    assert not store.is_finished(sweep, "r1")


def test_a_record_copied_into_another_runs_folder_is_not_finished_nor_aggregated_twice(tmp_path, caplog):
    sweep = tmp_path / "s"
    a = _stored_run(sweep, "aaaa", lr=0.02)
    b = _stored_run(sweep, "bbbb", lr=0.04)
    for name in (store.RECORD, store.TRACE):
        shutil.copy(a / name, b / name)
    state, why = store.run_state(sweep, "bbbb")
    assert state == "corrupt" and "holds run aaaa" in why
    summary, _ = agg.aggregate(sweep)
    assert list(summary["run_id"]) == ["aaaa"]
    assert "holds run aaaa, not bbbb" in caplog.text


def test_a_sweep_run_trains_a_run_whose_trace_changed_again(tmp_path):
    args = ["run", "data=synthetic", "data.n_train=64", "data.n_test=32", "model.width=16", "model.depth=2",
            "batch_size=16", "probe.sharpness=false", "steps=5", "lr=0.01,0.02", "sweep_name=flip"]
    env = {**os.environ, "SWEEP_JAX_CACHE": os.environ.get("SWEEP_JAX_CACHE", str(tmp_path / "jax"))}
    first = subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    sweep = tmp_path / "results" / "flip"
    victim = sorted(p.name for p in (sweep / "runs").iterdir())[0]
    _flip_a_middle_byte(sweep / "runs" / victim / store.TRACE)
    status = subprocess.run([sys.executable, "-m", "sweep.cli", "status", str(sweep), "--no-diagram"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "1 corrupt" in status.stdout or "corrupt 1" in status.stdout, status.stdout
    again = subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert store.is_finished(sweep, victim)
    assert list((sweep / "runs" / victim).glob("corrupt-*")), "the changed files are moved aside, not lost"


def test_two_aggregations_take_turns(tmp_path):
    sweep = tmp_path / "s"
    _stored_run(sweep, "r1")
    fd = os.open(sweep / agg.LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another aggregation is writing
    done = threading.Event()
    worker = threading.Thread(target=lambda: (agg.aggregate(sweep), done.set()))
    worker.start()
    try:
        assert not done.wait(1.0), "aggregate must wait for the one that holds the sweep's tables"
    finally:
        os.close(fd)
    worker.join(30)
    assert done.is_set()


AGGREGATE_LOOP = """
import sys
from sweep import aggregate as agg
for _ in range(int(sys.argv[2])):
    agg.aggregate(sys.argv[1])
"""


def test_concurrent_aggregations_while_runs_land_lose_no_run(tmp_path):
    sweep = tmp_path / "s"
    _stored_run(sweep, "r00")
    procs = [subprocess.Popen([sys.executable, "-c", AGGREGATE_LOOP, str(sweep), "15"], stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    for i in range(1, 12):
        _stored_run(sweep, f"r{i:02d}", lr=0.01 * (i + 1))
        time.sleep(0.05)
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "Traceback" not in err
    summary, traces = agg.aggregate(sweep)  # incremental, not --full
    assert sorted(summary["run_id"]) == [f"r{i:02d}" for i in range(12)]
    assert sorted(traces["run_id"].unique()) == sorted(summary["run_id"])


def test_tables_of_two_generations_are_rebuilt_not_mixed(tmp_path, caplog):
    sweep = tmp_path / "s"
    _stored_run(sweep, "r1")
    agg.aggregate(sweep)
    old_summary = (sweep / agg.SUMMARY_FILE).read_bytes()
    _stored_run(sweep, "r2", lr=0.04)
    agg.aggregate(sweep)
    (sweep / agg.SUMMARY_FILE).write_bytes(old_summary)  # a writer without the lock, or a half copy
    summary, traces = agg.aggregate(sweep)
    assert sorted(summary["run_id"]) == ["r1", "r2"]
    assert sorted(traces["run_id"].unique()) == ["r1", "r2"]
    assert "rebuilt the tables" in caplog.text


@pytest.mark.parametrize("damage", ["garbage summary", "truncated traces", "index [1]", "index garbage"])
def test_damaged_tables_are_rebuilt_from_the_records(tmp_path, capsys, damage):
    sweep = tmp_path / "s"
    _stored_run(sweep, "r1")
    _stored_run(sweep, "r2", lr=0.04)
    agg.aggregate(sweep)
    if damage == "garbage summary":
        (sweep / agg.SUMMARY_FILE).write_bytes(b"not a parquet file at all" * 10)
    elif damage == "truncated traces":
        data = (sweep / agg.TRACES_FILE).read_bytes()
        (sweep / agg.TRACES_FILE).write_bytes(data[: len(data) // 2])
    elif damage == "index [1]":
        (sweep / agg.INDEX_FILE).write_text("[1]")
    else:
        (sweep / agg.INDEX_FILE).write_text(json.dumps({"version": agg.INDEX_VERSION, "runs": {"r1": 3},
                                                        "generation": "x"}))
    assert main(["aggregate", str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "2 runs" in out
    assert err.count("\n") <= 1 and "rebuilt the tables" in err
    assert main(["plot", str(sweep), "--kind", "heatmap", "--format", "png"]) == 0
    assert sorted(agg.load_summary(sweep)["run_id"]) == ["r1", "r2"]


def test_one_unreadable_run_folder_does_not_hide_the_sweep(tmp_path, capsys, monkeypatch):
    sweep = tmp_path / "s"
    _stored_run(sweep, "r1")
    _stored_run(sweep, "r2", lr=0.04)
    locked = sweep / "runs" / "r2"
    if os.geteuid() != 0:
        locked.chmod(0o000)
    else:  # root reads through file modes: make its folder unreadable the way chmod 000 does for a user
        real_stat = Path.stat

        def stat(self, *a, **k):
            if self.parent == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real_stat(self, *a, **k)

        monkeypatch.setattr(Path, "stat", stat)
    try:
        assert main(["aggregate", str(sweep)]) == 0
        out, err = capsys.readouterr()
        assert "1 runs" in out or "1 run " in out, out
        assert "skipped unreadable run folder" in err and "cannot write" not in err
        assert main(["plot", str(sweep), "--kind", "heatmap", "--format", "png"]) == 0
    finally:
        locked.chmod(0o755)
