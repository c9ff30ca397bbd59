"""Faults a paper-scale sweep meets, through the real CLI in subprocesses (issue 9): two `sweep run`
of one sweep at once, SIGKILL during a record write, SIGTERM, a corrupt trace, a read-only results
folder. Each run must be trained by one process only, and nothing finished may be lost."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sweep import store
from sweep.claims import CLAIMS

TINY = ["data=synthetic", "data.n_train=64", "data.n_test=32", "model.width=16", "model.depth=2",
        "batch_size=16", "probe.batch_size=32", "probe.lanczos_iters=4"]
RECORD_LINE = re.compile(r"^\s+([0-9a-f]{16})\s+(converged|diverged|failed)\b", re.M)
KILL_IN_RECORD_WRITE = """
import os, signal, sys
real = os.replace
def replace(src, dst):
    if str(dst).endswith("record.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed between writing the record and renaming it
    return real(src, dst)
os.replace = replace
from sweep.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("SWEEP_JAX_CACHE", str(Path.home() / ".cache" / "sweep" / "jax"))
    env.pop("PYTHONIOENCODING", None)
    return env


def _start(args: list[str], cwd: Path, script: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", script, "run", *args] if script else [sys.executable, "-m", "sweep.cli", "run", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cli(args: list[str], cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "sweep.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


def _trained(stdout: str) -> list[str]:
    return RECORD_LINE.findall(stdout) and [m[0] for m in RECORD_LINE.findall(stdout)]


def _leftovers(sweep: Path) -> list[Path]:
    return list((sweep / CLAIMS).glob("*")) + list((sweep / "runs").glob("*/.*.tmp"))


def test_two_concurrent_runs_of_one_sweep_train_each_run_once(tmp_path):
    args = TINY + ["steps=1500", "lr=0.01,0.02,0.03,0.04,0.05,0.06", "cohort.max_size=1", "sweep_name=conc"]
    first = _start(args, tmp_path)
    time.sleep(2.0)
    overlapped = first.poll() is None
    second = _start(args, tmp_path)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    for p, (out, err) in zip((first, second), outs):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    a, b = _trained(outs[0][0]) or [], _trained(outs[1][0]) or []
    sweep = tmp_path / "results" / "conc"
    assert not set(a) & set(b), "a run was trained by both processes"
    assert sorted(a + b) == sorted(p.name for p in (sweep / "runs").iterdir())
    assert len(a + b) == 6 and all(store.is_finished(sweep, r) for r in a + b)
    assert overlapped and not _leftovers(sweep)


def test_sigkill_during_a_record_write_loses_nothing_and_is_resumed(tmp_path):
    args = TINY + ["steps=20", "lr=0.01", "sweep_name=kill"]
    killed = _start(args, tmp_path, script=KILL_IN_RECORD_WRITE)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    sweep = tmp_path / "results" / "kill"
    (run,) = list((sweep / "runs").iterdir())
    assert not (run / store.RECORD).exists() and list(run.glob(".record.json.*.tmp"))
    assert list((sweep / CLAIMS).glob("*.claim"))  # the dead process's claim is still there
    again = _cli(["run", *args], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _trained(again.stdout) == [run.name]
    assert store.is_finished(sweep, run.name) and not _leftovers(sweep)


def test_sigterm_keeps_finished_runs_and_says_how_to_resume(tmp_path):
    args = TINY + ["steps=4000", "lr=0.01,0.02,0.03,0.04", "cohort.max_size=1", "sweep_name=term"]
    proc = _start(args, tmp_path)
    sweep = tmp_path / "results" / "term"
    deadline = time.monotonic() + 300
    while not list((sweep / "runs").glob(f"*/{store.RECORD}")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM); finished runs are kept, the same command resumes the rest" in err
    assert "Traceback" not in err and not _leftovers(sweep)
    finished = [r for r in (p.name for p in (sweep / "runs").iterdir()) if store.is_finished(sweep, r)]
    assert 1 <= len(finished) < 4
    plan = _cli(["run", *args, "--dry-run"], tmp_path)
    assert f"{len(finished)} already finished, {4 - len(finished)} to run" in plan.stdout


def test_a_corrupt_trace_is_reported_rerun_and_kept_aside(tmp_path):
    args = TINY + ["steps=10", "lr=0.01,0.02", "sweep_name=bad"]
    assert _cli(["run", *args], tmp_path).returncode == 0
    sweep = tmp_path / "results" / "bad"
    victim, other = sorted(p.name for p in (sweep / "runs").iterdir())
    trace = sweep / "runs" / victim / store.TRACE
    good = trace.read_bytes()
    trace.write_bytes(good[: len(good) // 2])  # a copy cut short, a full disk...

    status = _cli(["status", str(sweep), "--no-diagram"], tmp_path)
    assert "corrupt 1" in status.stdout and f"{trace.relative_to(tmp_path)}" in status.stdout.replace(str(tmp_path) + "/", "")
    again = _cli(["run", *args], tmp_path)
    assert again.returncode == 0 and _trained(again.stdout) == [victim]  # only the damaged run
    (aside,) = list((sweep / "runs" / victim).glob("corrupt-*"))
    assert (aside / store.TRACE).read_bytes() == good[: len(good) // 2]  # moved, not deleted
    assert store.is_finished(sweep, victim) and store.is_finished(sweep, other)
    original = tmp_path / "original.parquet"
    original.write_bytes(good)
    pd.testing.assert_frame_equal(pd.read_parquet(trace), pd.read_parquet(original))  # the same run again
    agg = _cli(["aggregate", str(sweep)], tmp_path)
    assert agg.returncode == 0 and "corrupt" not in agg.stderr


def _read_only_prefix(folder: Path) -> tuple[str, ...]:
    """Run a command with `folder` read-only: a private read-only bind mount (root, as in CI, ignores
    file modes) or plain permissions (other users)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return ()
    if not shutil.which("unshare"):
        pytest.skip("root without unshare(1): cannot make a read-only folder")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -rm is not permitted here: cannot make a read-only folder as root")
    f = str(folder)
    return ("unshare", "-rm", "sh", "-c", f'mount --bind "{f}" "{f}" && mount -o remount,bind,ro "{f}" && exec "$@"', "sh")


def test_read_only_results_fail_before_any_compute_in_one_line(tmp_path):
    args = TINY + ["steps=10", "lr=0.01", "sweep_name=ro"]
    assert _cli(["run", *args], tmp_path).returncode == 0
    results = tmp_path / "results"
    prefix = _read_only_prefix(results)
    res = _cli(["run", *TINY, "steps=10", "lr=0.02", "sweep_name=ro"], tmp_path, prefix)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.match(r"error: results folder .*ro is not writable", lines[0]), res.stderr
    assert "cohort" not in res.stderr and "error records" not in res.stderr
    for cmd in (["aggregate", "results/ro"], ["plot", "results/ro"]):
        res = _cli(cmd, tmp_path, prefix)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: cannot write in"), res.stderr
    assert len(list((results / "ro" / "runs").iterdir())) == 1  # nothing lost, nothing new


@pytest.mark.parametrize("bad, message", [
    (["sweep_name=../../elsewhere"], "sweep_name='../../elsewhere': a sweep name is a plain folder name"),
    (["sweep_name=/abs/elsewhere"], "a sweep name is a plain folder name"),
    (["sweep_name=."], "a sweep name is a plain folder name"),
    (["results_dir=afile"], "results_dir=afile: afile is a file, not a folder"),
    (["model=transformer", "model.heads=0"], "model.heads=0: must be >= 1"),
    (["~lr"], "'~lr': deleting config keys is not supported"),
    (["+model.widht=64"], "unknown config key 'model.widht'; did you mean 'model.width'?"),
    (["data.subset=-1"], "data.subset=-1: must be >= 0"),
    (["probe.batch_size=-1"], "probe.batch_size=-1: must be >= 1"),
    (["lr=inf"], "lr=inf: every number in a config must be finite"),
    (["lr=pow2(0,1,0)"], "pow2(0, 1, 0): the step must be non-zero"),
    (["lr=0.1,,0.2"], "cannot parse override 'lr=0.1,,0.2': an empty value in a comma list"),
    (["lr=range(1,2,0)"], "cannot expand 'lr=range(1,2,0)'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, bad, message):
    from sweep.cli import main

    (tmp_path / "afile").write_text("")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["run", *bad, "steps=2"])
    finally:
        os.chdir(cwd)
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and message in lines[0], err.getvalue()
    assert not (tmp_path / "results").exists() and not (tmp_path.parent / "elsewhere").exists()


def test_status_and_dry_run_survive_a_non_object_record(tmp_path):
    args = TINY + ["steps=5", "lr=0.01", "sweep_name=odd"]
    assert _cli(["run", *args], tmp_path).returncode == 0
    sweep = tmp_path / "results" / "odd"
    (run,) = list((sweep / "runs").iterdir())
    (run / store.RECORD).write_text("[1, 2]")
    status = _cli(["status", str(sweep)], tmp_path)
    assert status.returncode == 0 and "corrupt 1" in status.stdout and "expected a JSON object" in status.stdout
    plan = _cli(["run", *args, "--dry-run"], tmp_path)
    assert plan.returncode == 0 and "0 already finished, 1 to run" in plan.stdout
