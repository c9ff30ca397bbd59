"""Against a real SLURM (start one with `bash scripts/slurm-cluster.sh up`, as .ci/run does):
submit, cancel a task, see status report it, resubmit, finish; preempt a running task (USR2, the
signal SLURM sends before a time limit), see it checkpoint, requeue and end with the very trace an
uninterrupted run gives. Skipped when no SLURM answers, unless SWEEP_REQUIRE_SLURM=1 (CI)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import submitit  # noqa: F401  first, at collection: its import runs logging.dictConfig, which closes
# every existing handler, e.g. absl's (via orbax) that holds pytest's capture stream

from sweep import store
from sweep.dispatch import manifest as mf

pytestmark = pytest.mark.slurm

TINY = ["data=synthetic", "data.n_train=64", "data.n_test=32", "model.width=16", "model.depth=2",
        "batch_size=16", "probe.batch_size=32", "probe.lanczos_iters=4", "cluster=slurm",
        "cluster.cpus_per_task=1"]


def _unreachable() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH"
    try:
        for cmd in (["sinfo", "-h"], ["sacct", "-n", "-X", "-S", "now"]):
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            if res.returncode != 0:
                return f"`{' '.join(cmd)}` failed: {res.stderr.strip()[:200]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"SLURM does not answer ({exc.__class__.__name__})"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    reason = _unreachable()
    if reason:
        message = f"no SLURM cluster reachable ({reason}); start one with `bash scripts/slurm-cluster.sh up`"
        if os.environ.get("SWEEP_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _wait(predicate, timeout: float, what: str, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _terminal(sweep: Path, run_ids) -> bool:
    return all(store.is_finished(sweep, r) for r in run_ids)


def test_submit_cancel_status_resubmit(tmp_path, capsys):
    from sweep.cli import main
    from sweep.dispatch.status import sweep_status
    from sweep.dispatch.submit import submit

    grid = TINY + ["steps=20", "lr=0.05,50", "warmup=1,4", "param=sp,mup", "cohort.max_size=4",
                   f"results_dir={tmp_path}", "sweep_name=grid"]
    sub = submit(grid)
    assert (sub.submitted, sub.cohorts, sub.tasks) == (8, 2, 2) and sub.job_id
    m = mf.read(sub.manifest)
    cancelled = m["tasks"][1]
    subprocess.run(["scancel", cancelled["job_id"]], check=True, timeout=30)
    kept = mf.run_ids(m["tasks"][0])
    lost = mf.run_ids(cancelled)

    def settled():
        st = sweep_status(sub.sweep)
        return st if st.counts["cancelled"] == 4 and _terminal(sub.sweep, kept) else None

    st = _wait(settled, 150, "task 0 to finish and task 1 to show as cancelled")
    assert all(st.states[r] == "cancelled" for r in lost)
    assert main(["status", str(sub.sweep), "--no-diagram"]) == 0
    out = capsys.readouterr().out
    assert "cancelled 4" in out and "4 runs to finish (4 cancelled); resubmit: sweep submit" in out

    again = submit(grid)  # finishes what was cancelled, nothing else
    assert (again.submitted, again.finished, again.tasks) == (4, 4, 1)
    _wait(lambda: _terminal(sub.sweep, kept + lost), 150, "the resubmitted runs")
    st = sweep_status(sub.sweep)
    assert sum(st.counts.values()) == 8 and sum(st.counts[s] for s in store.TERMINAL_OUTCOMES) == 8
    for rid in kept + lost:
        rec = store.read_record(sub.sweep, rid)
        assert (rec["outcome"] == "diverged") == (rec["config"]["lr"] == 50), rec["grid"]
        assert rec["grid"]["param.name"] == rec["config"]["param"]["name"]
    assert submit(grid).submitted == 0


def test_bad_partition_is_one_line(tmp_path, capsys):
    from sweep.cli import main

    rc = main(["submit", *TINY, "cluster.partition=nope", "lr=0.1", f"results_dir={tmp_path}", "sweep_name=p"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert re.search(r"sbatch refused the job array: .*partition.*cluster\.partition=nope.*sinfo", err), err
    assert not mf.all_manifests(tmp_path / "p")


def test_preempted_task_checkpoints_requeues_and_resumes_exactly(tmp_path):
    """`scancel --signal=USR2` is exactly what SLURM sends `signal_delay_s` before a time limit
    (and what submitit's own tests use to simulate preemption)."""
    from sweep.dispatch.submit import submit
    from sweep.grid import expand, make_cohorts
    from sweep.runner import run_cohort

    grid = TINY + ["steps=600", "probe.every=25", "lr=0.05,0.1", "cluster.checkpoint_every_s=100000",
                   f"results_dir={tmp_path}", "sweep_name=rq"]
    sub = submit(grid)
    job = mf.read(sub.manifest)["tasks"][0]["job_id"]
    logs = sub.manifest.parent / "logs"

    def log_text() -> str:
        return "".join(p.read_text(errors="replace") for p in logs.glob("*_log.out"))

    _wait(lambda: "cohort 1/1" in log_text(), 90, "the task to start its cohort", poll=0.3)
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)

    (cohort,) = make_cohorts(expand([g for g in grid if not g.startswith("cluster")]))
    truth = tmp_path / "truth"
    run_cohort(cohort, truth)  # the uninterrupted run, here, while the cluster works

    _wait(lambda: _terminal(sub.sweep, [r.run_id for r in cohort.runs]), 180, "the requeued task's records")
    text = log_text()
    assert "handing over to submitit for requeue" in text
    assert "Requeued job" in (logs / f"{job}_0_log.err").read_text() if (logs / f"{job}_0_log.err").exists() \
        else "Requeued job" in "".join(p.read_text() for p in logs.glob("*_log.err"))
    resumed = re.search(r"resumed from its checkpoint at step (\d+)", text)
    assert resumed and 0 < int(resumed.group(1)) < 601, text[-2000:]
    for r in cohort.runs:
        a = pd.read_parquet(store.run_dir(sub.sweep, r.run_id) / store.TRACE)
        b = pd.read_parquet(store.run_dir(truth, r.run_id) / store.TRACE)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not (sub.sweep / "checkpoints").exists() or not any((sub.sweep / "checkpoints").iterdir())


def test_killed_array_task_leaves_a_claim_that_a_resubmission_takes_over(tmp_path):
    """SIGKILL (OOM killer, node loss, `scancel -s KILL`) gives a task no chance to release its runs:
    the resubmitted task must see that the claim's job ended and train the runs, once."""
    from sweep.claims import CLAIMS, read_claim
    from sweep.dispatch.submit import submit

    grid = TINY + ["steps=200000", "probe.every=10000", "lr=0.05,0.1", f"results_dir={tmp_path}", "sweep_name=kill"]
    sub = submit(grid)
    job = mf.read(sub.manifest)["tasks"][0]["job_id"]
    claims_dir = sub.sweep / CLAIMS
    _wait(lambda: len(list(claims_dir.glob("*.claim"))) == 2, 120, "the task to claim its runs", poll=0.3)
    (pid,) = {read_claim(p)["pid"] for p in claims_dir.glob("*.claim")}
    os.kill(pid, 9)  # what the OOM killer does: no handler runs, nothing is released
    from sweep.dispatch import jobs

    _wait(lambda: jobs.slurm_states([job]).get(job) not in jobs.ACTIVE | {"RUNNING"}, 60, "the job to end")
    left = {p.stem: read_claim(p) for p in claims_dir.glob("*.claim")}
    assert len(left) == 2 and all(info["job"] == job for info in left.values())  # never released
    from sweep.dispatch.status import format_status, sweep_status

    st = sweep_status(sub.sweep)
    (failed,) = st.failed_tasks
    assert failed["job"] == job and failed["log"] and Path(failed["log"]).exists(), st.failed_tasks
    assert f"task 0 (job {job}) {failed['state']}: log {failed['log']}" in format_status(st)
    assert "2 runs to finish" in format_status(st)

    again = submit(grid)
    assert again.submitted == 2, "a killed job's runs must be submitted again"
    new_job = mf.read(again.manifest)["tasks"][0]["job_id"]
    new_logs = again.manifest.parent / "logs"
    _wait(lambda: "cohort 1/1" in "".join(p.read_text(errors="replace") for p in new_logs.glob("*_log.out")),
          120, "the resubmitted task to start training", poll=0.5)
    owners = {read_claim(p)["job"] for p in claims_dir.glob("*.claim") if read_claim(p)}
    assert owners == {new_job}, owners  # taken over, not skipped as "held by another process"
    subprocess.run(["scancel", new_job], timeout=30)


def test_any_sbatch_option_reaches_sbatch(tmp_path):
    """cluster.additional_parameters.OPTION=VALUE from the command line is on the submitted job
    (here --comment, which `squeue -o %k` reports back)."""
    from sweep.dispatch.submit import submit

    sub = submit(TINY + ["steps=2", "lr=0.1", "cluster.additional_parameters.comment=sweep_extra_option",
                         f"results_dir={tmp_path}", "sweep_name=extra"])
    job = mf.read(sub.manifest)["tasks"][0]["job_id"]
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%k"], capture_output=True, text=True, timeout=30).stdout
    if not out.strip():  # already finished: the accounting database keeps the comment
        out = subprocess.run(["sacct", "-n", "-X", "-j", job, "--format=Comment%40"], capture_output=True,
                             text=True, timeout=30).stdout
    assert "sweep_extra_option" in out, out
    _wait(lambda: _terminal(sub.sweep, mf.run_ids(mf.read(sub.manifest)["tasks"][0])), 150, "the run")
