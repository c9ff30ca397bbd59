"""One registry of every measured column: what it is called where, how it is labelled and reduced.

Why: a new probe metric used to need edits in six places (engine trace list, runner summary,
aggregate's column list, plot's label table and its not-a-facet list), and a missed one silently
dropped the column or turned it into a facet. Now a metric registers its `Column` once (next to the
code that computes it) and the engine's trace schema, the run summary, aggregate's tables, plot's
labels / log scales / facet exclusions and the exports are all derived from this registry.

A trace column may ask for summary reductions (`summaries=("max", "final")`): the run summary then
gets `max_<name>` / `final_<name>` (or the names given in `summary_names`), registered here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd

REDUCTIONS = ("max", "min", "final", "initial")


@dataclass(frozen=True)
class Column:
    """A measured value.

    name: the key in the record's summary or the run's trace file.
    kind: "trace" (one value per probed step) or "summary" (one value per run).
    label, unit: for axes and colour bars (unit None: loss-dependent or none).
    higher_is_better: the colour direction of heatmaps (None: neither).
    table_name: the name in traces.parquet when it differs (train_loss -> loss).
    log_scale: the value spans decades (heatmap colours and trajectory axes in log).
    integer: stored as int64 in traces (counts).
    summaries: reductions of a trace column that go into the run summary.
    summary_names: reduction -> summary column name, for names that predate the registry.
    """

    name: str
    kind: str
    label: str
    unit: Optional[str] = None
    higher_is_better: Optional[bool] = None
    table_name: Optional[str] = None
    log_scale: bool = False
    integer: bool = False
    summaries: tuple[str, ...] = ()
    summary_names: dict = field(default_factory=dict)

    @property
    def table(self) -> str:
        return self.table_name or self.name

    def summary_name(self, reduction: str) -> str:
        return self.summary_names.get(reduction, f"{reduction}_{self.name}")


_COLUMNS: dict[str, Column] = {}
_SUMMARY_OF: dict[str, tuple[str, str]] = {}  # summary name -> (trace column, reduction)


def register(column: Column) -> Column:
    """Add a column (and the summary columns of its reductions). Registering the same column again
    is a no-op (modules may be re-imported); a different column under a taken name is an error."""
    if column.kind not in ("trace", "summary"):
        raise ValueError(f"column {column.name}: kind must be trace or summary, not {column.kind!r}")
    old = _COLUMNS.get(column.name)
    if old is not None:
        if old != column:
            raise ValueError(f"column {column.name} is already registered differently")
        return old
    bad = [r for r in column.summaries if r not in REDUCTIONS]
    if bad:
        raise ValueError(f"column {column.name}: unknown reduction(s) {bad}; allowed {REDUCTIONS}")
    _COLUMNS[column.name] = column
    for reduction in column.summaries:
        summary = column.summary_name(reduction)
        _SUMMARY_OF[summary] = (column.name, reduction)
        register(Column(summary, "summary", f"{reduction} {column.label}", column.unit,
                        column.higher_is_better, log_scale=column.log_scale))
    return column


def get(name: str) -> Optional[Column]:
    """The column registered under `name` (record name or traces.parquet name), or None."""
    if name in _COLUMNS:
        return _COLUMNS[name]
    for col in _COLUMNS.values():
        if col.kind == "trace" and col.table == name:
            return col
    return None


def all_columns() -> list[Column]:
    return list(_COLUMNS.values())


def trace_columns() -> list[str]:
    """Record names of the trace file's columns, in registration order ("step" first)."""
    return [c.name for c in _COLUMNS.values() if c.kind == "trace"]


def trace_table_names() -> dict[str, str]:
    """trace file column -> traces.parquet column."""
    return {c.name: c.table for c in _COLUMNS.values() if c.kind == "trace"}


def summary_metrics() -> list[str]:
    """Every per-run measured value (never a facet, never a config key)."""
    return [c.name for c in _COLUMNS.values() if c.kind == "summary"]


def not_facets() -> set[str]:
    """Columns that are measurements, under both of their names: never proposed as facets."""
    names = set()
    for c in _COLUMNS.values():
        names.update({c.name, c.table})
    return names


def reduce_trace(trace: pd.DataFrame) -> dict[str, Optional[float]]:
    """The registered summary reductions of a run's trace (None when a column has no finite value)."""
    out: dict[str, Optional[float]] = {}
    for summary, (name, reduction) in _SUMMARY_OF.items():
        values = trace[name] if name in trace else pd.Series([], dtype=float)
        values = (values.iloc[:1] if reduction == "initial" else values).dropna()  # initial: at step 0
        out[summary] = _REDUCE[reduction](values) if len(values) else None
    return out


_REDUCE: dict[str, Callable[[pd.Series], float]] = {
    "max": lambda s: float(s.max()),
    "min": lambda s: float(s.min()),
    "final": lambda s: float(s.iloc[-1]),
    "initial": lambda s: float(s.iloc[0]),
}


def empty_value(column: str):
    """The placeholder of a trace column at an unprobed step."""
    col = _COLUMNS[column]
    return 0 if col.integer else np.nan


# ----------------------------------------------------------------------------- the built-in columns
_T, _S = "trace", "summary"
for _col in (
    Column("step", _T, "step", "updates", integer=True),
    Column("lr", _T, "learning rate η_t", "learning rate"),
    Column("train_loss", _T, "training loss", None, False, table_name="loss"),
    Column("train_acc", _T, "training accuracy", "fraction correct", True, table_name="accuracy"),
    Column("probe_loss", _T, "measurement-batch loss", None, False),
    Column("probe_acc", _T, "measurement-batch accuracy", "fraction correct", True),
    Column("grad_norm", _T, "gradient norm ‖∇L‖", None, None, log_scale=True),
    Column("sharpness", _T, "sharpness λ", "Hessian top eigenvalue", False, log_scale=True,
           summaries=("max", "final")),
    Column("precond_sharpness", _T, "preconditioned sharpness λ^{P}", "top eigenvalue of P⁻¹H", False,
           log_scale=True, summaries=("initial", "final")),
    Column("threshold", _T, "instability threshold", "Hessian top eigenvalue", None, log_scale=True),
    Column("hvps", _T, "Hessian-vector products", "per probe", None, integer=True),
    Column("test_loss", _T, "test loss", None, False),
    Column("test_acc", _T, "test accuracy", "fraction correct", True),
    Column("lambda0", _S, "initial sharpness λ0", "Hessian top eigenvalue", False, log_scale=True),
    Column("divergence_step", _S, "divergence step", "steps", True),
    Column("initial_loss", _S, "initial loss", None, False),
    Column("final_train_loss", _S, "final train loss", None, False),
    Column("final_train_acc", _S, "final train accuracy", "fraction correct", True),
    Column("final_test_loss", _S, "final test loss", None, False),
    Column("final_test_acc", _S, "final test accuracy", "fraction correct", True),
    Column("best_test_acc", _S, "best test accuracy", "fraction correct", True),
    Column("best_test_loss", _S, "best test loss", None, False),
    Column("final_test_perplexity", _S, "final test perplexity", "exp(nats)", False, log_scale=True),
    Column("steps_run", _S, "updates applied", "steps", None),
    Column("total_hvps", _S, "Hessian-vector products", "per run", None),
    Column("eta_c", _S, "η_c", "learning rate", True, log_scale=True),
    Column("t_reach", _S, r"$T_{\mathrm{reach}}$", r"steps to reach $\eta_{\mathrm{trgt}}$", False, log_scale=True),
    Column("t_save", _S, r"$T_{\mathrm{save}}$", "steps saved", True),
    Column("catapults", _S, "catapults", "count", None),
    Column("catapult_searches", _S, "η_c searches", "count", None),
    Column("catapult_forward_passes", _S, "η_c search forward passes", "count", None),
    Column("eta_c_forward_passes", _S, "η_c estimate forward passes", "count", None),
    # the largest lr a run really used (below the target when warmup > steps; sweep/plan.py): a
    # measurement, so never a facet (each run has its own)
    Column("max_lr", _S, "largest learning rate used", "learning rate", None, log_scale=True),
):
    register(_col)
