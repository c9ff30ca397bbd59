"""Export a finished sweep to experiment trackers, offline. TensorBoard (`pip install 'tensorboard>=2.14'`):

    <out>/<run_id>/events.out.tfevents.*   one TensorBoard run per sweep run:
        trace/<column>     a scalar per probe step for every numeric trace column (train_loss, train_acc,
                           lr, sharpness, precond_sharpness, threshold, grad_norm, probe_*, test_*, hvps);
                           NaN points (not measured at that step) are left out
        summary/<metric>   the record's numeric summary (best_test_acc, lambda0, max_sharpness, ...) at
                           the last step run
        hparams            the run's swept values, standard config columns and outcome (HParams tab)
        record             the outcome and the record's summary as text
    <out>/events.out.tfevents.*   the HParams experiment: every hparam and summary/<metric> column

Runs are read from records (runs/<run_id>/record.json + trace.parquet) like `sweep aggregate`; runs that
are not finished (no record, error records included as their summary) are skipped or written without a
trace. Re-exporting to the same folder replaces the event files of each run it writes.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.config import ConfigError

INSTALL_HINT = "pip install 'tensorboard>=2.14'"
TRACE_TAG, SUMMARY_TAG = "trace/", "summary/"
EVENTS_GLOB = "events.out.tfevents.*"


@dataclass
class ExportResult:
    out: Path
    runs: int = 0
    points: int = 0
    skipped: list[str] = field(default_factory=list)  # "run_id: reason"


def _tensorboard():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
        from tensorboard.plugins.hparams import summary_v2 as hparams_summary
        from tensorboard.plugins.text import metadata as text_metadata
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise ConfigError(f"TensorBoard export needs the tensorboard package ({exc.name or exc} is missing): "
                          f"{INSTALL_HINT}") from None
    return event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, hparams_summary, text_metadata, EventFileWriter


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def hparams_of(row: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """A run's hyperparameters for TensorBoard: its summary row minus metrics, ids and empty values."""
    from sweep.aggregate import SUMMARY_METRICS

    skip = set(SUMMARY_METRICS) | {"run_id", "sweep_name", "status", "error_type"}
    out: dict[str, bool | int | float | str] = {}
    for key, value in row.items():
        if key in skip or value is None:
            continue
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def summary_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The record's numeric summary values (lambda0, best_test_acc, ...), finite ones only."""
    return {k: float(v) for k, v in sorted((record.get("summary") or {}).items()) if _is_number(v)}


def _clear(folder: Path) -> None:
    for old in folder.glob(EVENTS_GLOB):
        if old.is_file():
            old.unlink()


def _trace_points(trace: Any, summary_pb2: Any) -> list[tuple[int, list]]:
    """(step, scalar values) of every probe step of a trace: its numeric columns, NaNs left out."""
    import numpy as np
    import pandas as pd

    if not len(trace) or "step" not in trace.columns:
        return []
    columns = [c for c in trace.columns if c != "step" and pd.api.types.is_numeric_dtype(trace[c])
               and not pd.api.types.is_bool_dtype(trace[c])]
    values = trace[columns].to_numpy(dtype=np.float64)
    tags = [TRACE_TAG + c for c in columns]
    out = []
    for step, row in zip(trace["step"].to_numpy(), values):
        points = [summary_pb2.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in zip(tags, row)
                  if not math.isnan(v)]
        if points:
            out.append((step, points))
    return out


def _record_text(record: dict, summary_pb2: Any, tensor_pb2: Any, tensor_shape_pb2: Any, text_metadata: Any) -> Any:
    """The record (outcome, grid, summary, error) as a TensorBoard text summary."""
    text = (f"**{record['outcome']}** — run `{record['run_id']}` of sweep `{record.get('sweep_name')}`\n\n"
            "```\n" + json.dumps({"grid": record.get("grid"), "summary": record.get("summary"),
                                  "error": record.get("error")}, indent=2, default=str) + "\n```")
    tensor = tensor_pb2.TensorProto(dtype="DT_STRING", string_val=[text.encode()],
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
    meta = text_metadata.create_summary_metadata(display_name="record", description="")
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="record/text_summary", metadata=meta,
                                                                tensor=tensor)])


def _hparam_domains(all_hparams: dict[str, set], hparams_summary: Any) -> dict[str, Any]:
    """The HParams tab's domain of each hyperparameter: discrete for booleans and strings, an interval for numbers."""
    domains = {}
    for key, values in all_hparams.items():
        if all(isinstance(v, bool) for v in values) or all(isinstance(v, str) for v in values):
            domains[key] = hparams_summary.Discrete(sorted(values))
        elif all(_is_number(v) for v in values):
            domains[key] = hparams_summary.RealInterval(float(min(values)), float(max(values)))
        else:
            domains[key] = None
    return domains


def export_tensorboard(sweep_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> ExportResult:
    """Write every finished run of a sweep as a TensorBoard run under `out` (default <sweep_dir>/tensorboard)."""
    import pandas as pd

    from sweep import aggregate as agg
    from sweep import store

    (event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, hparams_summary, text_metadata,
     EventFileWriter) = _tensorboard()
    sweep_dir = Path(sweep_dir)
    runs = agg.runs_dir(sweep_dir)  # one-line error when this is not a sweep folder
    result = ExportResult(Path(out) if out is not None else sweep_dir / "tensorboard")
    result.out.mkdir(parents=True, exist_ok=True)
    now = time.time()
    all_hparams: dict[str, set] = {}
    metric_tags: set[str] = set()

    def write(writer, step: int, summary) -> None:
        writer.add_event(event_pb2.Event(wall_time=now, step=int(step), summary=summary))

    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        if not (run_dir / store.RECORD).exists():
            continue  # not finished (or still training)
        try:
            data = agg.read_run(run_dir)
            record = store.load_record(run_dir / store.RECORD)
            trace = pd.read_parquet(run_dir / store.TRACE) if (run_dir / store.TRACE).exists() else pd.DataFrame()
        except Exception as exc:  # noqa: BLE001 - a damaged run is named and skipped, like `sweep aggregate`
            result.skipped.append(f"{run_dir.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        run_id = record["run_id"]
        folder = result.out / run_id
        folder.mkdir(parents=True, exist_ok=True)
        _clear(folder)
        writer = EventFileWriter(str(folder))
        try:
            for step, points in _trace_points(trace, summary_pb2):  # one event per probe step
                write(writer, step, summary_pb2.Summary(value=points))
                result.points += len(points)
            last_step = int(trace["step"].max()) if len(trace) and "step" in trace.columns else 0
            metrics = summary_metrics(record)
            for name, value in metrics.items():
                metric_tags.add(SUMMARY_TAG + name)
                write(writer, last_step, summary_pb2.Summary(
                    value=[summary_pb2.Summary.Value(tag=SUMMARY_TAG + name, simple_value=value)]))
            hparams = hparams_of(data.summary)
            for key, value in hparams.items():
                all_hparams.setdefault(key, set()).add(value)
            write(writer, 0, hparams_summary.hparams_pb(hparams, trial_id=run_id, start_time_secs=now))
            write(writer, 0, _record_text(record, summary_pb2, tensor_pb2, tensor_shape_pb2, text_metadata))
        finally:
            writer.close()
        result.runs += 1

    if result.runs:  # the experiment: which hparams and metrics the HParams tab lists
        hps = [hparams_summary.HParam(k, d) for k, d in sorted(_hparam_domains(all_hparams, hparams_summary).items())]
        _clear(result.out)
        writer = EventFileWriter(str(result.out))
        try:
            write(writer, 0, hparams_summary.hparams_config_pb(
                hps, [hparams_summary.Metric(tag) for tag in sorted(metric_tags)], time_created_secs=now))
        finally:
            writer.close()
    return result
