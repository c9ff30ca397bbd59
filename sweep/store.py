"""Run records on disk: atomic, idempotent, resumable.

results/<sweep>/runs/<run_id>/record.json   fully resolved config, outcome, summary, provenance
results/<sweep>/runs/<run_id>/trace.parquet one row per probe step
The trace is written first and the record last, each through a temp file + os.replace, so a
record.json that exists always describes a complete run; an interrupted write leaves at most a
stray temp file, never a half record. The record stores the trace's size and sha256: a run is
finished only when its record reads back with a terminal outcome and its trace matches (a file
damaged later, by a full disk or a bad copy, makes the run "corrupt": it is re-run, and the bad
files are moved aside into runs/<run_id>/corrupt-<time>/, never deleted).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

TERMINAL_OUTCOMES = ("converged", "diverged", "failed")
_UMASK = os.umask(0)
os.umask(_UMASK)
RECORD = "record.json"
TRACE = "trace.parquet"
REQUIRED_RECORD_KEYS = ("run_id", "outcome", "config", "grid", "summary")


class CorruptRun(ValueError):
    """A run directory whose record.json or trace.parquet cannot be used; the message says which
    file and why."""


def sweep_dir(results_dir: str | Path, sweep_name: str) -> Path:
    return Path(results_dir) / sweep_name


def run_dir(sweep: Path, run_id: str) -> Path:
    return Path(sweep) / "runs" / run_id


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Run `write(tmp_path)` on a temp file beside `path`, then rename it into place: readers see
    the old file or the new one, never half of one. The file gets the usual umask permissions
    (mkstemp's 0600 would hide results from collaborators on a shared cluster)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_synced(tmp: str, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: _write_synced(tmp, data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode())


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def load_record(path: Path) -> dict:
    """A record.json as a dict; CorruptRun (naming the file and the defect) when it is unusable."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRun(f"{path}: unreadable JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(record, dict):
        raise CorruptRun(f"{path}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_RECORD_KEYS if key not in record]
    if missing:
        raise CorruptRun(f"{path}: missing keys {', '.join(missing)}")
    for key in ("config", "grid", "summary"):
        if not isinstance(record[key], dict):
            raise CorruptRun(f"{path}: '{key}' must be an object, got {type(record[key]).__name__}")
    return record


def read_record(sweep: Path, run_id: str) -> Optional[dict]:
    """The run's record, or None when it is absent or corrupt (see run_state for which)."""
    try:
        return load_record(run_dir(sweep, run_id) / RECORD)
    except (OSError, CorruptRun):
        return None


def check_trace(record: dict, trace_path: Path) -> None:
    """CorruptRun unless the trace matches what its record says (size; parquet footer). Records
    written before sizes were stored need only a trace whose parquet footer reads back."""
    expected = (record.get("files") or {}).get(TRACE)
    if expected is None:
        if not trace_path.exists():
            return
        import pyarrow.parquet as pq

        try:
            pq.read_metadata(trace_path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged file
            raise CorruptRun(f"{trace_path}: unreadable parquet ({exc.__class__.__name__})") from None
        return
    try:
        size = trace_path.stat().st_size
    except FileNotFoundError:
        raise CorruptRun(f"{trace_path}: missing (its record lists it)") from None
    if size != expected.get("bytes"):
        raise CorruptRun(f"{trace_path}: {size} bytes, its record says {expected.get('bytes')}")
    with open(trace_path, "rb") as f:
        f.seek(max(0, size - 4))
        if f.read(4) != b"PAR1":
            raise CorruptRun(f"{trace_path}: not a complete parquet file (no footer)")


def verify_checksum(record: dict, trace_path: Path) -> None:
    """CorruptRun when the trace's sha256 differs from the record's (a full read: aggregate)."""
    expected = (record.get("files") or {}).get(TRACE)
    if expected and expected.get("sha256") and _sha256(trace_path) != expected["sha256"]:
        raise CorruptRun(f"{trace_path}: sha256 differs from the one in its record")


def run_state(sweep: Path, run_id: str) -> tuple[str, Optional[str]]:
    """(state, why): finished (terminal record of this run id, trace intact: size, footer and
    sha256 as its record lists them; finished means readable), error (an error record: retried),
    absent (no record), corrupt (record or trace unusable: re-run, files moved aside)."""
    d = run_dir(sweep, run_id)
    try:
        record = load_record(d / RECORD)
    except FileNotFoundError:
        return "absent", None
    except OSError as exc:
        return "corrupt", f"{d / RECORD}: {exc.strerror or exc}"
    except CorruptRun as exc:
        return "corrupt", str(exc)
    if record.get("run_id") != run_id:  # copied from another run's folder: it would count twice
        return "corrupt", f"{d / RECORD}: holds run {record.get('run_id')}, not {run_id} (its folder)"
    if record.get("outcome") not in TERMINAL_OUTCOMES:
        return "error", None
    try:
        check_trace(record, d / TRACE)
        if (d / TRACE).exists():
            verify_checksum(record, d / TRACE)
    except (OSError, CorruptRun) as exc:
        return "corrupt", str(exc)
    return "finished", None


def is_finished(sweep: Path, run_id: str) -> bool:
    """Finished = a record with a terminal outcome and an intact trace. Error records are retried."""
    return run_state(sweep, run_id)[0] == "finished"


def prepare_rerun(sweep: Path, run_id: str) -> Optional[Path]:
    """Before a run is trained again: remove temp files of writers that died, and move a corrupt
    record and trace aside (returned: where) so nothing is ever silently deleted. Call only while
    holding the run's claim."""
    d = run_dir(sweep, run_id)
    if not d.is_dir():
        return None
    for tmp in d.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    state, _ = run_state(sweep, run_id)
    if state != "corrupt":
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    aside = d / f"corrupt-{stamp}"
    aside.mkdir()
    for name in (RECORD, TRACE):
        if (d / name).exists():
            os.replace(d / name, aside / name)
    return aside


_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime_ns, inode, ctime_ns) -> sha256 (status --watch asks often)


def _sha256(path: Path) -> str:
    """The file's sha256, remembered for as long as its size, mtimes and inode stay the same (a
    rewrite changes ctime even when mtime is set back)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if len(_DIGESTS) > 100_000:
            _DIGESTS.clear()
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def write_run(sweep: Path, run_id: str, record: dict, trace: Optional[pd.DataFrame]) -> Path:
    """Trace first, then the record that lists the trace's size and checksum (a SIGTERM waits for
    both: no temporary file is left behind)."""
    from sweep.termination import deferred

    d = run_dir(sweep, run_id)
    with deferred():
        if trace is not None:
            atomic_write_parquet(d / TRACE, trace)
            record = {**record, "files": {TRACE: {"bytes": (d / TRACE).stat().st_size, "sha256": _sha256(d / TRACE)}}}
        atomic_write_json(d / RECORD, record)
    return d


def check_writable(folder: Path, what: str = "results folder") -> None:
    """Fail before any compute when results cannot be written (read-only disk, a file in the way,
    no permission): one line that says where and how to pick another place."""
    from sweep.config import ConfigError, check_folder_path

    folder = Path(folder)
    check_folder_path(folder, f"{what} {folder}")
    try:
        (folder / "runs").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder / "runs", prefix=".writable.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{what} {folder} is not writable ({exc.strerror or exc}); "
                          f"fix its permissions or choose another with results_dir=PATH") from None


def provenance() -> dict:
    """Package versions, git commit and device: enough to say what produced a number."""
    import importlib.metadata as md

    import jax

    versions = {}
    for pkg in ("sweep", "jax", "jaxlib", "flax", "optax", "numpy", "hydra-core", "pandas"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    dev = jax.devices()[0]
    return {
        "versions": versions,
        "git_commit": commit,
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "host": platform.node(),
    }
