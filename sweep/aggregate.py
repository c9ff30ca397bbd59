"""Run records -> two tables: `summary.parquet` (one row per run) and `traces.parquet` (long format).

Incremental because sweeps are aggregated while they are still running and records keep arriving:
an index of (run directory -> record/trace mtimes) lets a re-run read only new or changed runs.
A corrupt record is reported on one line and skipped, so one bad file never hides a whole sweep.
The three outputs are one generation: written under a lock on the sweep (.aggregate.lock: two
`sweep aggregate` at once take turns, so neither loses the other's runs), each atomically (temp file +
os.replace), each stamped with the same generation id (parquet metadata `sweep.generation`, and the
index). A reader that finds a mix (a writer without the lock, a copy half made) or a damaged table
rebuilds from the records: the records are the truth, the tables a cache of them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sweep import columns, probes, store
from sweep.errors import ConfigError, SweepDirError  # noqa: F401
from sweep.identity import in_lambda0_units, setting_key

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.parquet"
TRACES_FILE = "traces.parquet"
INDEX_FILE = ".aggregate_index.json"
LOCK_FILE = ".aggregate.lock"
GENERATION_KEY = b"sweep.generation"  # parquet schema metadata: which index a table was written with
INDEX_VERSION = 7  # 2: columns from sweep/columns.py; 3: augment; 4: data_file; 5: generation ids; 6: setting;
# 7: lr_unit decoded (lambda0 | absolute)

REQUIRED_RECORD_KEYS = store.REQUIRED_RECORD_KEYS
# Measured columns come from the registry (sweep/columns.py): every registered summary metric is a
# column of summary.parquet, every trace column one of traces.parquet under its table name. Values a
# record or trace holds that nobody registered are kept too (under their own names), never dropped.
probes.load_all()
SUMMARY_METRICS = tuple(columns.summary_metrics())
TRACE_COLUMNS = columns.trace_table_names()  # trace file column -> name in traces.parquet
# summary keys that are not measurements of their own (handled by summary_row explicitly)
_SUMMARY_SPECIAL = {"lr", "lr_init", "lr_units_of_lambda0"}
# summary columns copied onto every trace row so a trace can be selected and faceted on its own.
# In traces `lr` is the per-step lr and `loss` the training loss, so the run's target lr and
# loss function are renamed there; any other clash with a trace column gets a "run." prefix.
TRACE_CONTEXT_RENAMES = {"lr": "target_lr", "lr_over_lambda0": "target_lr_over_lambda0", "loss": "loss_fn"}
TRACE_CONTEXT_EXTRA = ("outcome", "lambda0", "divergence_step")




CorruptRecord = store.CorruptRun  # a run directory whose record.json or trace.parquet cannot be used


@dataclass
class RunData:
    """What one run contributes: its summary row and its (possibly empty) trace rows."""

    summary: dict[str, Any]
    trace: pd.DataFrame


def standard_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The config values every phase diagram is sliced by, under short flat names."""
    def sub(group: str, key: str = "name") -> Any:
        value = config.get(group)
        return value.get(key) if isinstance(value, dict) else value

    optimizer = config.get("optimizer") if isinstance(config.get("optimizer"), dict) else {}
    columns = {
        "model": sub("model"), "param": sub("param"), "optimizer": sub("optimizer"),
        "loss": config.get("loss"), "data": sub("data"), "warmup": config.get("warmup"),
        "batch_size": config.get("batch_size"), "seed": config.get("seed"),
        "lr_unit": lr_unit_name(config.get("lr_unit")), "lr_init": config.get("lr_init"), "steps": config.get("steps"),
        "decay": config.get("decay"),
    }
    for key in ("momentum", "b1"):
        if key in optimizer:
            columns[key] = optimizer[key]
    columns["augment"] = augmentation(config)
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    # the file a generic loader read (npz: "cifar10_subset.npz"), so titles can say which data set it is
    columns["data_file"] = data_file(data)
    return columns


def lr_unit_name(lr_unit: Any) -> str:
    """The one place a stored `lr_unit` is decoded for the tables: "lambda0" (lr x 1/lambda0,
    lr_unit=sharpness) or "absolute". Status and plots read this column, never the config."""
    return "lambda0" if in_lambda0_units(lr_unit) else "absolute"


def data_file(data: dict[str, Any]) -> Any:
    """The file(s) a generic loader read, by name: npz "cifar10_subset.npz", text "valid.txt -> test.txt"
    (training text, then test text), so a title says which corpus stood in."""
    if data.get("path"):
        return Path(str(data["path"])).name
    if data.get("train"):
        train = Path(str(data["train"])).name
        return f"{train} -> {Path(str(data['test'])).name}" if data.get("test") else train
    return None


def augmentation(config: dict[str, Any]) -> str:
    """The training data augmentation in a word ("flip+crop4+mixup1", "none"): trajectory plots
    use it to choose between the update batch's loss and the fixed measurement batch's."""
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    aug = data.get("augment") if isinstance(data.get("augment"), dict) else {}
    parts = []
    if aug.get("flip"):
        parts.append("flip")
    if aug.get("crop"):
        parts.append(f"crop{aug['crop']}")
    if aug.get("mixup"):
        parts.append(f"mixup{float(aug['mixup']):g}")
    return "+".join(parts) or "none"


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    """One summary row: identity, swept grid keys, standard config columns, outcome and metrics.

    `lr` is always the absolute target lr and `lr_over_lambda0` is lr * lambda0, i.e. the target lr
    in units of 1/lambda0 (x in eta = x / lambda0); a grid key of the same name is overridden by them.
    """
    summary = record["summary"]
    row: dict[str, Any] = {"run_id": record["run_id"], "sweep_name": record.get("sweep_name"),
                           "status": record.get("status"), "outcome": record["outcome"]}
    row.update(record["grid"])
    row.update(standard_columns(record["config"]))
    row["setting"] = setting_key(record["config"])  # runs that may share a phase diagram share it
    row["lr"], row["lr_over_lambda0"] = summary.get("lr"), summary.get("lr_units_of_lambda0")
    if row["lr"] is None and row["lr_over_lambda0"] is None:  # error records carry no summary
        configured = record["config"].get("lr")
        row["lr_over_lambda0" if row["lr_unit"] == "lambda0" else "lr"] = configured
    if summary.get("lr_init") is not None:
        row["lr_init"] = summary["lr_init"]  # absolute, like lr
    for key in SUMMARY_METRICS:
        row[key] = summary.get(key)
    for key, value in summary.items():  # unregistered scalars: kept under their own names
        if key not in row and key not in _SUMMARY_SPECIAL and (value is None or isinstance(value, (int, float, str, bool))):
            row[key] = value
    error = record.get("error")
    row["error_type"] = error.get("type") if isinstance(error, dict) else None
    return row


def read_run(run_dir: Path) -> RunData:
    """Read and check one run directory; raise CorruptRecord with a short reason on bad input."""
    record_path = run_dir / store.RECORD
    try:
        record = store.load_record(record_path)
    except OSError as exc:
        raise CorruptRecord(f"{record_path}: unreadable ({exc.__class__.__name__}: {exc})") from exc
    if record["run_id"] != run_dir.name:  # a record copied into another run's folder would count twice
        raise CorruptRecord(f"{record_path}: holds run {record['run_id']}, not {run_dir.name} (its folder)")
    row = summary_row(record)

    trace_path = run_dir / store.TRACE
    store.check_trace(record, trace_path)
    if not trace_path.exists():
        return RunData(row, pd.DataFrame())
    store.verify_checksum(record, trace_path)
    try:
        raw = pd.read_parquet(trace_path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise CorruptRecord(f"{trace_path}: unreadable parquet ({exc.__class__.__name__}: {exc})") from exc
    if "step" not in raw.columns or "lr" not in raw.columns:
        raise CorruptRecord(f"{trace_path}: missing columns step/lr")
    # every registered column (NaN when this run did not measure it: one schema for the table),
    # then any column nobody registered, under its own name
    trace = pd.DataFrame({new: raw[old] if old in raw.columns else float("nan")
                          for old, new in TRACE_COLUMNS.items()})
    for extra in raw.columns:
        if extra not in TRACE_COLUMNS:
            trace[extra] = raw[extra]
    for name, value in trace_context(row).items():
        trace[name] = value
    return RunData(row, trace)


def trace_context(row: dict[str, Any]) -> dict[str, Any]:
    """Summary values repeated on each trace row (grid keys, standard columns, outcome)."""
    skip = set(SUMMARY_METRICS) - set(TRACE_CONTEXT_EXTRA) | {"sweep_name", "status", "error_type"}
    context = {}
    for key, value in row.items():
        if key not in skip:
            name = TRACE_CONTEXT_RENAMES.get(key, key)
            context[f"run.{name}" if name in TRACE_COLUMNS.values() else name] = value
    return context


# ----------------------------------------------------------------------------- index + atomic I/O
def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing strings and numbers (a grid key swept over both) are stored as strings."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col].dropna()}
            if len(kinds) > 1 and not kinds <= {int, float, bool}:
                out[col] = out[col].map(lambda v: None if v is None or v != v else str(v))
    return out


def _write_table(df: pd.DataFrame, path: Path, generation: str) -> None:
    """Atomically, stamped with the generation id it belongs to."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_parquet_safe(df), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), GENERATION_KEY: generation.encode()})
    store.atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _read_table(path: Path, generation: str) -> pd.DataFrame:
    """The table if it belongs to `generation`; ValueError for another generation, OSError or
    pyarrow's errors for a damaged file."""
    import pyarrow.parquet as pq

    found = (pq.read_schema(path).metadata or {}).get(GENERATION_KEY, b"").decode()
    if found != generation:
        raise ValueError(f"generation {found or 'none'}, its index says {generation}")
    return pd.read_parquet(path)


def _load_previous(sweep_dir: Path) -> tuple[dict[str, dict[str, Any]], pd.DataFrame, pd.DataFrame]:
    """The previous aggregation (index, summary, traces), or nothing when it is absent, of an older
    format, damaged or a mix of two generations: then every record is read again."""
    nothing = {}, pd.DataFrame(), pd.DataFrame()
    path = sweep_dir / INDEX_FILE
    if not path.exists():
        return nothing
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"holds a {type(data).__name__}, not an index")
        if data.get("version") != INDEX_VERSION:
            return nothing  # an older format: rebuilt without a word
        runs, generation = data.get("runs"), data.get("generation")
        if not (isinstance(runs, dict) and all(isinstance(v, dict) for v in runs.values())
                and isinstance(generation, str)):
            raise ValueError("not an index of runs")
        return (runs, _read_table(sweep_dir / SUMMARY_FILE, generation),
                _read_table(sweep_dir / TRACES_FILE, generation))
    except Exception as exc:  # noqa: BLE001 - json, OS and pyarrow errors alike: the records are the truth
        log.warning("rebuilt the tables of %s from its records (%s: %s)", sweep_dir, exc.__class__.__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        return nothing


@contextlib.contextmanager
def _aggregation_lock(sweep_dir: Path):
    """Held while one process reads and writes the sweep's tables. In a folder this user cannot
    write in there is no lock to take: up-to-date tables are read as they are, and writing changed
    ones fails with the folder's one-line error."""
    import fcntl

    try:
        fd = os.open(sweep_dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o666)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ----------------------------------------------------------------------------- public API
def runs_dir(sweep_dir: str | os.PathLike) -> Path:
    path = Path(sweep_dir) / "runs"
    if not path.is_dir():
        raise SweepDirError(f"{sweep_dir}: not a sweep directory (no runs/ folder); pass results/<sweep_name>")
    return path


def _run_stamp(run_dir: Path) -> dict[str, int | None] | None:
    """The mtimes that say whether a run changed; None when its folder cannot be read (warned once
    per aggregation: one unreadable folder must not hide the rest of the sweep)."""
    try:
        return {"record_mtime_ns": _mtime_ns(run_dir / store.RECORD),
                "trace_mtime_ns": _mtime_ns(run_dir / store.TRACE)}
    except OSError as exc:
        log.warning("skipped unreadable run folder %s (%s); fix its permissions to include it", run_dir,
                    exc.strerror or exc.__class__.__name__)
        return None


def aggregate(sweep_dir: str | os.PathLike, full: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Update and return (summary, traces) for a sweep, reading only new or changed run records.

    `full=True` ignores the index and re-reads every record.
    """
    sweep_dir = Path(sweep_dir)
    run_root = runs_dir(sweep_dir)
    with _aggregation_lock(sweep_dir):
        return _aggregate_locked(sweep_dir, run_root, full)


def _aggregate_locked(sweep_dir: Path, run_root: Path, full: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    old_index, summary, traces = ({}, pd.DataFrame(), pd.DataFrame()) if full else _load_previous(sweep_dir)

    index: dict[str, dict[str, Any]] = {}
    new_rows: list[dict[str, Any]] = []
    new_traces: list[pd.DataFrame] = []
    stale_ids: set[str] = set()
    for run_dir in sorted(p for p in run_root.iterdir() if p.is_dir()):
        stamp = _run_stamp(run_dir)
        if stamp is None or stamp["record_mtime_ns"] is None:
            continue  # unreadable (warned), or still in progress: no record yet
        previous = old_index.get(run_dir.name)
        if previous and all(previous.get(k) == v for k, v in stamp.items()):
            index[run_dir.name] = previous
            if previous.get("error"):
                log.warning("skipped corrupt record %s", previous["error"])
            continue
        if previous and previous.get("run_id"):
            stale_ids.add(previous["run_id"])
        try:
            run = read_run(run_dir)
        except CorruptRecord as exc:
            log.warning("skipped corrupt record %s", exc)
            index[run_dir.name] = {**stamp, "run_id": None, "error": str(exc)}
            continue
        index[run_dir.name] = {**stamp, "run_id": run.summary["run_id"], "error": None}
        stale_ids.add(run.summary["run_id"])
        new_rows.append(run.summary)
        if len(run.trace):
            new_traces.append(run.trace)

    # rows of runs that changed, or whose directory disappeared, are replaced or dropped
    gone = {v["run_id"] for k, v in old_index.items() if k not in index and v.get("run_id")}
    drop = stale_ids | gone
    changed = bool(new_rows or drop or not old_index or set(old_index) != set(index))
    if len(summary) and drop:
        summary = summary[~summary["run_id"].isin(drop)]
    if len(traces) and drop:
        traces = traces[~traces["run_id"].isin(drop)]
    if new_rows:
        summary = pd.concat([summary, pd.DataFrame(new_rows)], ignore_index=True)
    if new_traces:
        traces = pd.concat([traces, *new_traces], ignore_index=True)
    if len(summary):
        summary = summary.sort_values("run_id", kind="stable").reset_index(drop=True)
    if len(traces):
        traces = traces.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)

    if changed:
        generation = uuid.uuid4().hex
        _write_table(summary, sweep_dir / SUMMARY_FILE, generation)
        _write_table(traces, sweep_dir / TRACES_FILE, generation)
        payload = json.dumps({"version": INDEX_VERSION, "generation": generation, "runs": index},
                             indent=0, sort_keys=True)
        store.atomic_write(sweep_dir / INDEX_FILE, lambda tmp: Path(tmp).write_text(payload))
        # hand back what a later call will read, so repeated calls give identical frames
        summary = pd.read_parquet(sweep_dir / SUMMARY_FILE)
        traces = pd.read_parquet(sweep_dir / TRACES_FILE)
    return summary, traces


def load_summary(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """The sweep's summary table, aggregating first (incrementally) so it is never stale."""
    return aggregate(sweep_dir)[0]


def load_traces(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """The sweep's long-format traces, aggregating first (incrementally)."""
    return aggregate(sweep_dir)[1]
