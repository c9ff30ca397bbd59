"""`sweep status` while a sweep runs (issue 10.8): live cohorts with step, ETA and owner from the
claims' progress reports; error runs with their message and log; failed array tasks with their
logs; a finishing hint that matches how the sweep was run, in correct grammar."""
from __future__ import annotations

import json
import signal
import time

from record_factory import write_run
from test_faults import TINY, _cli, _start

from sweep.claims import CLAIMS
from sweep.dispatch.status import format_status, record_local_command, sweep_status


def test_a_running_local_cohort_shows_its_step_eta_and_owner(tmp_path):
    args = TINY + ["steps=400000", "probe.every=100000", "lr=0.01,0.02", "sweep_name=live"]
    proc = _start(args, tmp_path)
    sweep = tmp_path / "results" / "live"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            reports = list((sweep / CLAIMS).glob("*.progress")) if (sweep / CLAIMS).is_dir() else []
            if reports and json.loads(reports[0].read_text())["step"] > 0:
                break
            time.sleep(0.3)
        res = _cli(["status", str(sweep), "--no-diagram"], tmp_path)
        assert res.returncode == 0, res.stderr
        assert "running 2" in res.stdout
        line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("running: 2 runs on"))
        assert f"pid {proc.pid}" in line and "/400001" in line and "ETA" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    after = sweep_status(sweep)
    assert after.counts["running"] == 0 and not after.progress  # released on SIGTERM


def test_error_runs_show_message_and_log_and_the_hint_matches_a_local_run(tmp_path):
    sweep = tmp_path / "s"
    write_run(sweep, "aaaa", lr=0.1, warmup=1)
    run = write_run(sweep, "bbbb", lr=0.2, warmup=1, outcome="error")
    rec = json.loads((run / "record.json").read_text())
    rec["error"] = {"type": "XlaRuntimeError", "message": "RESOURCE_EXHAUSTED: out of memory\nmore detail",
                    "log": "/scratch/logs/17_0_log.out", "traceback": ""}
    (run / "record.json").write_text(json.dumps(rec))
    record_local_command(sweep, ["lr=0.1,0.2", "sweep_name=s"])
    text = format_status(sweep_status(sweep))
    assert "error bbbb: XlaRuntimeError: RESOURCE_EXHAUSTED: out of memory; log /scratch/logs/17_0_log.out" in text
    # the local grid expands to two run ids these hand-made records do not have: 2 pending too; the
    # hint writes into this folder (results_dir), not ./results
    assert f"3 runs to finish (1 error, 2 pending); re-run: sweep run lr=0.1,0.2 sweep_name=s results_dir={tmp_path}" in text
    assert "more detail" not in text
