"""Run claims: each run is trained by one process at a time, across shells, hosts and SLURM tasks.

A claim is the file <sweep>/claims/<run_id>.claim, created with O_CREAT|O_EXCL (atomic on local
disks and on the network file systems of clusters: NFSv3+, Lustre, GPFS), holding its owner: host,
pid, SLURM job and a random token. While a process holds claims, a heartbeat thread touches them
every `heartbeat_s`. Another process treats a claim as dead, and takes it over, when its owner is
known to be gone:
  - same host and its pid no longer runs (a killed shell, Ctrl-C'd run) -> at once;
  - its SLURM job has ended (cancelled, timed out, node lost) -> at once, when SLURM answers;
  - otherwise, when the heartbeat is older than `stale_s` (a node that vanished with its disk).
A SLURM task requeued after preemption carries the same job id as the claim it left: it is the
owner and resumes. Taking over a dead claim is done under a short-lived breaker file so two
processes cannot both take it. The run's record, not the claim, says whether a run is finished.

A claim appears whole or not at all: its content is written to a temp file first, then hard-linked to
its name (atomic and exclusive, like O_EXCL, also over NFS). A write that fails (a full disk) leaves
no claim. So an empty or unparsable claim file is never one being written: it is what a writer that
failed left behind (or a version that wrote claims in place), and counts as stale once it is older
than UNREADABLE_GRACE_S (the write window of the O_EXCL fallback on file systems without hard links).

Under force=true a run is trained again even when finished, but not when its record was written after
this process began claiming (`Claims.since`): another process has just trained it.

Progress: while it trains, the owner also writes claims/<token>.progress at chunk boundaries (at most
every few seconds): the runs of its cohort, the step reached, timings and its log file, which is what
`sweep status` shows for a running cohort (step, ETA, log).

Tuning (environment): SWEEP_CLAIM_HEARTBEAT_S (default 30), SWEEP_CLAIM_STALE_S (default 300).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from sweep.termination import deferred

CLAIMS = "claims"
BREAKER_STALE_S = 60.0
UNREADABLE_GRACE_S = 2.0
_UMASK = os.umask(0)  # read once, at import: os.umask is process-wide and other threads create files
os.umask(_UMASK)
PROGRESS_EVERY_S = 2.0


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def scheduler_job() -> Optional[str]:
    """The scheduler job this process runs in ('123_4' for a SLURM array task), or None
    (sweep/dispatch/backends.py: the backend that knows it)."""
    from sweep.dispatch.backends import current_job

    return current_job()[1]


def scheduler_backend() -> Optional[str]:
    from sweep.dispatch.backends import current_job

    return current_job()[0]


def submitit_log() -> Optional[str]:
    """The stdout log of this submitit job (what to read when it fails), or None outside one."""
    if not os.environ.get("SUBMITIT_FOLDER"):
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stdout)
    except Exception:  # noqa: BLE001 - a log path is a courtesy, never a failure
        return None


def _proc_start(pid: int) -> Optional[str]:
    """Start time of a process (field 22 of /proc/pid/stat): tells a reused pid from the owner."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    if start is not None and _proc_start(pid) not in (None, start):
        return False  # the pid was reused by another process
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in next((ln for ln in status.read_text().splitlines() if ln.startswith("State:")), "")
    except OSError:
        return True


@dataclass
class Owner:
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    start: Optional[str] = None
    job: Optional[str] = field(default_factory=scheduler_job)
    backend: Optional[str] = field(default_factory=scheduler_backend)  # whose job `job` is
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    log: Optional[str] = field(default_factory=submitit_log)

    def __post_init__(self) -> None:
        if self.start is None:
            self.start = _proc_start(self.pid)

    def describe(self) -> str:
        return describe_owner(self.__dict__)


class Claims:
    """The claims of one process in one sweep. Use as a context manager: the heartbeat runs inside,
    and every claim still held is released on exit (also on exceptions)."""

    def __init__(self, sweep: Path, owner: Optional[Owner] = None):
        self.dir = Path(sweep) / CLAIMS
        self.owner = owner or Owner()
        self.heartbeat_s = _env_float("SWEEP_CLAIM_HEARTBEAT_S", 30.0)
        self.stale_s = _env_float("SWEEP_CLAIM_STALE_S", 300.0)
        self.since = time.time()  # when this process began claiming (force=true: see trained_since)
        self.held: set[str] = set()
        self.busy: dict[str, str] = {}  # run_id -> who holds it (runs we skipped)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._job_states: Optional[dict[str, str]] = None
        self._last_report = 0.0

    # -------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Claims":
        self._thread = threading.Thread(target=self._beat, name="sweep-claims-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with deferred():
            self._stop.set()
            self.release(list(self.held))
            self._progress_path().unlink(missing_ok=True)

    # -------------------------------------------------------------------- progress
    def _progress_path(self) -> Path:
        return self.dir / f"{self.owner.token}.progress"

    def report(self, run_ids: list[str], step: int, total: int, started: float) -> None:
        """Say how far this process's cohort is (throttled; always at the end)."""
        now = time.time()
        if step < total and now - self._last_report < PROGRESS_EVERY_S:
            return
        self._last_report = now
        from sweep.store import atomic_write_json

        try:
            atomic_write_json(self._progress_path(), {**self.owner.__dict__, "runs": list(run_ids), "step": int(step),
                                                      "total": int(total), "started": started, "updated": now})
        except OSError:  # progress is a courtesy; a full disk shows up where records are written
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                for run_id in list(self.held):
                    try:
                        os.utime(self._path(run_id))
                    except OSError:  # taken over as stale (we were suspended too long)
                        pass

    # -------------------------------------------------------------------- claiming
    def _path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.claim"

    def claim(self, run_id: str) -> bool:
        """Take the run (True), or False when a live process holds it (recorded in `busy`). A SIGTERM
        waits for the end: a claim file is never created without being held (then released)."""
        with deferred():
            return self._claim(run_id)

    def _claim(self, run_id: str) -> bool:
        if run_id in self.held:
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(run_id)
        for _ in range(3):
            if self._create(path):
                with self._lock:
                    self.held.add(run_id)
                self.busy.pop(run_id, None)
                return True
            info = read_claim(path)
            if info is None and not path.exists():
                continue  # released meanwhile
            if info is not None and info.get("token") == self.owner.token:
                with self._lock:
                    self.held.add(run_id)
                return True
            if info is not None and self.owner.job and info.get("job") == self.owner.job:
                self._take_over(path)  # our own previous incarnation (a requeued SLURM task)
                continue
            if self.owner_gone(path, info) is None:
                self.busy[run_id] = describe_owner(info)
                return False
            self._break(path, info)
        self.busy[run_id] = describe_owner(read_claim(path))
        return False

    def claim_all(self, run_ids: Iterable[str]) -> list[str]:
        return [r for r in run_ids if self.claim(r)]

    def release(self, run_ids: Iterable[str]) -> None:
        with deferred():
            self._release(run_ids)

    def _release(self, run_ids: Iterable[str]) -> None:
        for run_id in list(run_ids):
            with self._lock:
                if run_id not in self.held:
                    continue
                self.held.discard(run_id)
            path = self._path(run_id)
            info = read_claim(path)
            if info is not None and info.get("token") == self.owner.token:
                path.unlink(missing_ok=True)

    def _create(self, path: Path) -> bool:
        """Create the claim whole (True), or False when it exists. The content goes to a temp file
        that is then hard-linked to the claim's name: a failed write (ENOSPC) raises and leaves no
        claim, where an O_EXCL file written in place would stay empty, held by no one."""
        data = json.dumps({**self.owner.__dict__, "since": time.time()}).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            _write_all(fd, data)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide claims from collaborators
            return self._link(tmp, path, data)
        finally:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)

    def _link(self, tmp: str, path: Path, data: bytes) -> bool:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if not _no_hard_links(exc):
                raise
            return self._create_in_place(path, data)
        return True

    @staticmethod
    def _create_in_place(path: Path, data: bytes) -> bool:
        """O_EXCL create, for file systems without hard links; removed again when the write fails."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        try:
            _write_all(fd, data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        return True

    def trained_since(self, sweep: Path, run_id: str) -> bool:
        """Whether the run's record was written after this process began claiming. Under
        force=true such a run was just trained by another process (which held the claim, then let
        it go): training it again is the double work claims exist to prevent."""
        from sweep import store

        try:
            written = (store.run_dir(sweep, run_id) / store.RECORD).stat().st_mtime
        except OSError:
            return False
        return written > self.since and store.is_finished(sweep, run_id)

    def _take_over(self, path: Path) -> None:
        self._drop_progress(read_claim(path))
        path.unlink(missing_ok=True)

    def _drop_progress(self, info: Optional[dict]) -> None:
        """A dead owner's progress report goes with its claims."""
        if info and isinstance(info.get("token"), str) and info["token"] != self.owner.token:
            (self.dir / f"{info['token']}.progress").unlink(missing_ok=True)

    def _break(self, path: Path, seen: Optional[dict]) -> None:
        """Remove a dead claim, unless someone else is breaking it or it changed meanwhile."""
        breaker = path.with_suffix(".break")
        try:
            fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            if _age(breaker) > BREAKER_STALE_S:  # a breaker that died holding it
                breaker.unlink(missing_ok=True)
            return
        try:
            now = read_claim(path)
            if now == seen or now is None:
                self._drop_progress(now)
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
            breaker.unlink(missing_ok=True)

    # -------------------------------------------------------------------- liveness
    def owner_gone(self, path: Path, info: Optional[dict]) -> Optional[str]:
        """Why the claim's owner is gone, or None while it may be alive."""
        age = _age(path)
        if info is None:  # left by a writer that failed or died; never one being written (_create)
            return "empty or unreadable" if age > UNREADABLE_GRACE_S else None
        if info.get("host") == self.owner.host and isinstance(info.get("pid"), int):
            if not _pid_alive(info["pid"], info.get("start")):
                return "its process has exited"
            if not info.get("job"):
                return None
        job = info.get("job")
        if job:
            backend = info.get("backend") or "slurm"  # claims written before the field: SLURM's
            state = self._job_state(backend, job)
            if state is not None and not _job_active(state):
                return f"its {_backend_display(backend)} job {job} is {state}"
        if age > self.stale_s:
            return f"no heartbeat for {age:.0f} s"
        return None

    def _job_state(self, backend: str, job: str) -> Optional[str]:
        if self._job_states is None or job not in self._job_states:
            try:
                from sweep.dispatch.backends import get

                self._job_states = {**(self._job_states or {}), **(get(backend).job_states([job]) or {})}
            except Exception:  # noqa: BLE001 - no SLURM here: fall back to the heartbeat
                self._job_states = {**(self._job_states or {}), job: None}  # type: ignore[dict-item]
        return self._job_states.get(job)


def _job_active(state: str) -> bool:
    from sweep.dispatch.jobs import ACTIVE

    return state in ACTIVE | {"RUNNING"}


def _write_all(fd: int, data: bytes) -> None:
    """Write and sync all of `data` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def _no_hard_links(exc: OSError) -> bool:
    """Whether os.link failed because the file system has no hard links (some FUSE and SMB mounts)."""
    import errno

    return exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS)


def _age(path: Path) -> float:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return 0.0


def read_claim(path: Path) -> Optional[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_owner(info: Optional[dict]) -> str:
    if not info:
        return "another process"
    job = info.get("job")
    backend = _backend_display(info.get("backend") or "slurm")
    return f"{info.get('host', '?')} pid {info.get('pid', '?')}" + (f", {backend} job {job}" if job else "")


def _backend_display(name: str) -> str:
    from sweep.dispatch.backends import BACKENDS

    return BACKENDS[name].display if name in BACKENDS else name


def live_progress(sweep: Path) -> list[dict]:
    """The progress reports of processes that still hold claims in a sweep (for `sweep status`):
    each with its runs, step, total, started/updated times, owner and log."""
    root = Path(sweep) / CLAIMS
    if not root.is_dir():
        return []
    viewer = Claims(sweep)
    out = []
    for path in sorted(root.glob("*.progress")):
        info = read_claim(path)
        if not info or not isinstance(info.get("runs"), list):
            continue
        held = [r for r in info["runs"] if (read_claim(root / f"{r}.claim") or {}).get("token") == info.get("token")]
        if held and viewer.owner_gone(root / f"{held[0]}.claim", read_claim(root / f"{held[0]}.claim")) is None:
            out.append({**info, "runs": held})
    return out
