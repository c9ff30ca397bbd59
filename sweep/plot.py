"""Warmup phase diagrams from aggregated tables: a Python API for notebooks and `sweep plot`.

Every drawing function takes DataFrames (summary.parquet / traces.parquet, see sweep.aggregate)
and returns a matplotlib Figure; nothing here reads records. Conventions follow Kalra & Barkeshli
(Figures 1, 3-5) and Gilmer et al. (Figure 2):
- heatmaps live in the (target lr x warmup) plane on log-2 axes; diverged cells are left EMPTY,
  failed cells are grey and hatched, errored cells carry a red 'E', cells never run a grey '?'.
- a cell holding several seeds shows the mean over its converged runs; its state is the most
  severe outcome among them (diverged > failed > error > converged), so one bad seed is visible.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

# No backend is chosen here: in a notebook figures show inline. `sweep plot` (the CLI) selects Agg itself.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, NullLocator

from sweep import columns, optimizers, probes
from sweep.config import ConfigError

SEVERITY = ("diverged", "failed", "error", "converged")  # most severe first
MISSING = "missing"
FAILED_STYLE = {"facecolor": "0.82", "edgecolor": "0.35", "hatch": "///", "linewidth": 0}
# Grid and identity columns that are never facets; every measured column (sweep/columns.py) is
# excluded as well, under its record and table names, so a new metric never becomes a facet.
_NOT_FACET_KEYS = {
    "run_id", "sweep_name", "status", "outcome", "error_type", "lr", "lr_over_lambda0", "warmup", "seed",
    "lr_unit", "steps", "target_lr", "target_lr_over_lambda0", "data_seed", "lr_init", "data_file", "setting",
}
# Not facets by default, but named when they split one cell (mixed_cell_error)
_NAMED_IN_MIXED_CELLS = ("steps", "lr_unit", "data_file", "lr_init")


def not_facets() -> set[str]:
    """Never proposed as facets of a summary. `loss` there is the loss function (MSE or cross-entropy,
    a real facet); it is the training loss only in traces, whose trace_values() exclude it."""
    probes.load_all()
    return (_NOT_FACET_KEYS | columns.not_facets()) - {"loss"}


def trace_values() -> set[str]:
    """traces.parquet columns that are per-step measurements."""
    probes.load_all()
    return set(columns.trace_table_names().values())


NOT_FACETS = not_facets()
TRACE_VALUES = trace_values()
MAX_PANELS = 24
FACET_ORDER = ("param", "loss", "loss_fn", "optimizer", "model", "data", "batch_size", "momentum", "b1", "decay")
LR_COLUMNS = ("lr", "lr_over_lambda0", "target_lr", "target_lr_over_lambda0")
DISPLAY = {"sp": "SP", "mup": "μP", "mse": "MSE", "xent": "cross-entropy",
           **{name: spec.display for name, spec in optimizers.SPECS.items()}, "fcn": "FCN", "wrn": "WRN", "transformer": "Transformer",
           "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny-ImageNet", "wikitext2": "WikiText-2"}


def metric_info(metric: str) -> tuple[str, Any, bool]:
    """(label, unit or None for loss-dependent units, higher is better) from the column registry."""
    probes.load_all()
    col = columns.get(metric)
    if col is None:
        return metric.replace("_", " "), None, not metric.endswith("loss")
    better = col.higher_is_better if col.higher_is_better is not None else not metric.endswith("loss")
    return col.label, col.unit, better


def log_scale(metric: str) -> bool:
    """The metric spans decades (T_reach, sharpness, eta_c): log colour scale."""
    col = columns.get(metric)
    return bool(col is not None and col.log_scale)


LOSS_UNITS = {"mse": "MSE", "xent": "cross-entropy, nats"}
SHADES = ".:-=+*#%@"  # worst -> best converged value; ' ' is kept for "no cell"
STATE_CHARS = {"diverged": "D", "failed": "F", "error": "E", MISSING: "?", "pending": "?"}


# ----------------------------------------------------------------------------- small helpers
def _log2_key(values: pd.Series) -> pd.Series:
    """Grid values rounded in log2 so 3.9999999 and 4 land in one cell."""
    return np.exp2(np.round(np.log2(values.astype(float)), 6))


def lr_column(df: pd.DataFrame, lr_units: str = "auto", traces: bool = False) -> str:
    """Column holding the target lr in the requested units ('absolute', 'lambda0' or 'auto').

    'auto' picks lambda0 units when every run was configured in them (lr_unit=sharpness)."""
    absolute, relative = ("target_lr", "target_lr_over_lambda0") if traces else ("lr", "lr_over_lambda0")
    if lr_units == "auto":
        units = df["lr_unit"].dropna().astype(str) if "lr_unit" in df else pd.Series([], dtype=str)
        lr_units = "lambda0" if len(units) and (units == "lambda0").all() else "absolute"  # aggregate decodes it
    if lr_units == "absolute":
        return absolute
    if lr_units != "lambda0":
        raise ConfigError(f"lr units '{lr_units}': allowed absolute, lambda0, auto")
    if relative not in df or df[relative].isna().all():
        raise ConfigError("no lambda0 in the records (probe.sharpness was off?): use --lr-units absolute")
    return relative


def _pow2_text(value: float, mathtext: bool = True) -> str:
    e = math.log2(value)
    if abs(e - round(e)) < 1e-3:
        exp = f"{round(e)}"
    elif abs(2 * e - round(2 * e)) < 1e-3:
        exp = f"{e:.1f}"
    else:
        return None
    return f"2^{{{exp}}}" if mathtext else f"2^{exp}"


def lr_tick_labels(values: Sequence[float], lr_col: str) -> list[str]:
    """'2^x' (or '2^x/λ0' in lambda0 units); '2^x·10^m' for a power-of-ten base (the paper's
    Adam grids 2^x x 1e-5); otherwise the plain value."""
    suffix = r"/\lambda_0" if "lambda0" in lr_col else ""
    texts = [_pow2_text(v) for v in values]
    if all(texts):
        return [f"${t}{suffix}$" for t in texts]
    # the paper's Adam grids 2^x x 1e-5 start at 2^4 x 1e-5 = 1.6e-4: try the decade below too
    for shift in range(3) if len(values) else ():
        decade = 10.0 ** (math.floor(math.log10(min(values))) - shift)
        texts = [_pow2_text(v / decade) for v in values]
        if all(t == "2^{0}" for t in texts):  # every value is the decade itself: 10^-3, not 2^0·10^-3
            return [rf"$10^{{{round(math.log10(decade))}}}{suffix}$" for _ in values]
        if all(texts):
            return [rf"${t}\cdot10^{{{round(math.log10(decade))}}}{suffix}$" for t in texts]
    return [f"{v:.4g}" + ("/λ0" if suffix else "") for v in values]


def warmup_tick_labels(values: Sequence[float]) -> list[str]:
    texts = [_pow2_text(v) for v in values]
    return [f"${t}$" if t else f"{v:g}" for t, v in zip(texts, values)]


def metric_label(metric: str, df: pd.DataFrame | None = None) -> str:
    """'best test accuracy (fraction correct)'; loss units follow the runs' loss function."""
    name, unit, _ = metric_info(metric)
    if unit is None and metric.endswith("loss"):
        losses = sorted(df["loss"].dropna().astype(str).unique()) if df is not None and "loss" in df else []
        unit = " / ".join(LOSS_UNITS.get(v, v) for v in losses) or None
    return f"{name} ({unit})" if unit else name


def higher_is_better(metric: str) -> bool:
    return metric_info(metric)[2]


def _display(column: str, value: Any) -> str:
    shown = f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)  # no 0.010239999...
    text = DISPLAY.get(str(value), shown)
    plain = ("param", "loss", "loss_fn", "optimizer", "model", "data", "param.name")
    return text if column in plain else f"{column}={text}"


def default_facets(df: pd.DataFrame) -> list[str]:
    """Columns that vary across the sweep (besides lr, warmup, seed); duplicates of one grouping dropped."""
    excluded = not_facets()
    if "step" in df and "run_id" in df:  # a traces table: its `loss` is the training loss; one row per run
        df = df.drop_duplicates("run_id")
        excluded |= trace_values()
    candidates = [c for c in FACET_ORDER if c in df and c not in excluded] + sorted(
        c for c in df.columns if c not in FACET_ORDER and c not in excluded)
    chosen: list[str] = []
    groupings: list[tuple] = []
    for col in candidates:
        if df[col].nunique(dropna=True) < 2:
            continue
        grouping = tuple(df.groupby(col, dropna=False, sort=True).ngroup())
        if grouping not in groupings:
            chosen.append(col)
            groupings.append(grouping)
    return chosen


def _parse_facet(df: pd.DataFrame, facet: str | Sequence[str] | None) -> list[str]:
    if facet is None:
        return default_facets(df)
    cols = [c.strip() for c in facet.split(",")] if isinstance(facet, str) else list(facet)
    if "step" in df:  # traces name the loss function loss_fn (their `loss` is the training loss)
        cols = ["loss_fn" if c == "loss" else c for c in cols]
    cols = [c for c in cols if c]
    unknown = [c for c in cols if c not in df]
    if unknown:
        raise ConfigError(f"facet column(s) {', '.join(unknown)} not in the summary; "
                          f"choose from: {', '.join(c for c in df.columns if c not in not_facets())}")
    return cols


def facet_groups(df: pd.DataFrame, facet: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """[(facet_value dict, rows)] in sorted order; one group with {} when there is no facet."""
    if not facet:
        return [({}, df)]
    count = df.groupby(facet, dropna=False).ngroups
    if count > MAX_PANELS:
        raise ConfigError(f"facet {','.join(facet)} gives {count} panels (max {MAX_PANELS}): choose fewer "
                          "columns with --facet, or filter the table first")
    return [(dict(zip(facet, key if isinstance(key, tuple) else (key,))), rows)
            for key, rows in df.groupby(facet, sort=True, dropna=False)]


def _select(df: pd.DataFrame, facet_value: Mapping[str, Any] | None) -> pd.DataFrame:
    for col, value in (facet_value or {}).items():
        if col not in df:
            raise ConfigError(f"facet column '{col}' not in the table")
        df = df[df[col].isna()] if value is None or value != value else df[df[col] == value]
    return df


def _panel_title(facet_value: Mapping[str, Any]) -> str:
    return " · ".join(_display(c, v) for c, v in facet_value.items())


def _check_metric(df: pd.DataFrame, metric: str) -> None:
    if metric not in df:
        numeric = [c for c in df.columns if c in set(columns.summary_metrics())]
        raise ConfigError(f"metric '{metric}' not in the summary; choose from: {', '.join(numeric)}")


# ----------------------------------------------------------------------------- the cell tables
def mixed_cell_error(df: pd.DataFrame) -> str | None:
    """Why the runs of one cell (same lr and warmup key in `df`'s _x, _y) cannot be drawn as one, or
    None: they differ in their `setting` (the config apart from lr, warmup and seed). Names the
    columns that differ within the cell, and how to draw them apart."""
    if "setting" not in df or df["setting"].isna().all():
        return None
    per_cell = df.groupby(["_y", "_x"])["setting"].nunique()
    if not (per_cell > 1).any():
        return None
    y, x = per_cell[per_cell > 1].index[0]
    rows = df[(df["_y"] == y) & (df["_x"] == x)]
    skip = not_facets() - set(_NAMED_IN_MIXED_CELLS)
    varying, groupings = [], set()
    for c in sorted(rows.columns, key=lambda c: (c not in FACET_ORDER, FACET_ORDER.index(c) if c in FACET_ORDER else 0)):
        grouping = tuple(rows[c].astype(str).factorize()[0]) if c not in skip and not c.startswith("_") else ()
        if len(set(grouping)) > 1 and grouping not in groupings:  # param and param.name: named once
            varying.append(c)
            groupings.add(grouping)
    what = (", ".join(f"{c} ({', '.join(sorted(rows[c].astype(str).unique())[:4])})" for c in varying[:4])
            if varying else "config keys that are not columns of the table")
    facet = ",".join(varying[:2]) if varying else "setting"
    return (f"{rows['setting'].nunique()} runs of one cell (warmup {y:g}, lr {x:g}) differ in {what}: "
            f"draw them apart with --facet {facet}, or keep one sweep per experiment (sweep_name=...)")


def _cells(summary: pd.DataFrame, metric: str, lr_col: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, states) pivoted to rows = warmup, columns = lr, over the product of seen values.
    Refuses cells whose runs differ in anything but lr, warmup and seed (mixed_cell_error)."""
    df = summary.assign(_x=_log2_key(summary[lr_col]), _y=_log2_key(summary["warmup"]))
    df = df[np.isfinite(df["_x"]) & np.isfinite(df["_y"])]
    why = mixed_cell_error(df)
    if why:
        raise ConfigError(why)
    xs, ys = sorted(df["_x"].unique()), sorted(df["_y"].unique())
    rank = {s: i for i, s in enumerate(SEVERITY)}
    outcome = df["outcome"].where(df["outcome"].isin(SEVERITY), "pending")
    df = df.assign(_rank=outcome.map(lambda s: rank.get(s, len(SEVERITY))), _state=outcome,
                   _value=pd.to_numeric(df[metric], errors="coerce").where(outcome == "converged"))
    worst = df.sort_values("_rank", kind="stable").groupby(["_y", "_x"])["_state"].first()
    states = worst.unstack("_x").reindex(index=ys, columns=xs).fillna(MISSING)
    values = df.groupby(["_y", "_x"])["_value"].mean().unstack("_x").reindex(index=ys, columns=xs)
    values = values.where(states == "converged")
    for table in (states, values):
        table.index.name, table.columns.name = "warmup", lr_col
    return values.astype(float), states


def heatmap_table(summary_df: pd.DataFrame, metric: str = "best_test_acc",
                  facet_value: Mapping[str, Any] | None = None, lr_units: str = "auto") -> pd.DataFrame:
    """The exact data behind one heatmap panel: rows = warmup, columns = target lr (in `lr_units`).

    NaN wherever the cell is not a converged run (diverged, failed, error, never run);
    `cell_states` tells which."""
    _check_metric(summary_df, metric)
    return _cells(_select(summary_df, facet_value), metric, lr_column(summary_df, lr_units))[0]


def cell_states(summary_df: pd.DataFrame, facet_value: Mapping[str, Any] | None = None,
                lr_units: str = "auto") -> pd.DataFrame:
    """Outcome of each heatmap cell ('converged', 'diverged', 'failed', 'error', 'pending', 'missing')."""
    lr_col = lr_column(summary_df, lr_units)
    return _cells(_select(summary_df, facet_value), "outcome", lr_col)[1]


# ----------------------------------------------------------------------------- heatmaps
def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges halfway between centres in log2; a lone centre spans one octave."""
    logs = np.log2(centres)
    if len(logs) == 1:
        return np.exp2(np.array([logs[0] - 0.5, logs[0] + 0.5]))
    mids = (logs[1:] + logs[:-1]) / 2
    return np.exp2(np.concatenate([[logs[0] - (mids[0] - logs[0])], mids, [logs[-1] + (logs[-1] - mids[-1])]]))


def _set_log2_axes(ax, xs, ys, lr_col: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.yaxis.set_major_locator(FixedLocator(ys))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    labels = lr_tick_labels(xs, lr_col)
    step = 1 if len(xs) <= 12 else 2  # thin crowded ticks: every other column keeps its label
    labels = [t if i % step == 0 else "" for i, t in enumerate(labels)]
    ax.set_xticklabels(labels, rotation=45 if len(xs) > 5 else 0, ha="right" if len(xs) > 5 else "center",
                       rotation_mode="anchor", fontsize=9 if len(xs) <= 8 else 8)
    ylabels = warmup_tick_labels(ys)
    ax.set_yticklabels([t if i % (1 if len(ys) <= 14 else 2) == 0 else "" for i, t in enumerate(ylabels)],
                       fontsize=9)
    ax.set_xlabel(r"target learning rate $\eta_{\mathrm{trgt}}$")
    ax.set_ylabel(r"warmup steps $T_{\mathrm{wrm}}$")


def _draw_cells(ax, values: pd.DataFrame, states: pd.DataFrame, lr_col: str, cmap, norm,
                annotate: bool, fmt: str):
    xs, ys = values.columns.to_numpy(float), values.index.to_numpy(float)
    xe, ye = _edges(xs), _edges(ys)
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(values.to_numpy(float)), cmap=cmap, norm=norm)
    for i in range(len(ys)):
        for j in range(len(xs)):
            state, box = states.iat[i, j], (xe[j], ye[i], xe[j + 1] - xe[j], ye[i + 1] - ye[i])
            centre = (math.sqrt(xe[j] * xe[j + 1]), math.sqrt(ye[i] * ye[i + 1]))
            if state == "failed":
                ax.add_patch(Rectangle(box[:2], box[2], box[3], **FAILED_STYLE))
            elif state == "error":
                ax.text(*centre, "E", color="tab:red", ha="center", va="center", fontweight="bold")
            elif state in (MISSING, "pending"):
                ax.text(*centre, "?", color="0.55", ha="center", va="center")
            elif annotate and state == "converged" and np.isfinite(values.iat[i, j]):
                rgba = cmap(norm(values.iat[i, j]))
                light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.55
                ax.text(*centre, format(values.iat[i, j], fmt), ha="center", va="center",
                        fontsize=6.5, color="black" if light else "white")
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    _set_log2_axes(ax, xs, ys, lr_col)
    return mesh


def _state_legend(fig, states_seen: set[str]) -> None:
    handles = [Patch(facecolor="white", edgecolor="0.4", label="diverged (empty)"),
               Patch(label="failed", **{**FAILED_STYLE, "linewidth": 0.5})]
    if "error" in states_seen:
        handles.append(Line2D([], [], ls="", marker="$E$", color="tab:red", label="error (crashed)"))
    if states_seen & {MISSING, "pending"}:
        handles.append(Line2D([], [], ls="", marker="$?$", color="0.55", label="not run yet"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=8)


def _value_format(metric: str) -> str:
    return ".0f" if metric in ("t_reach", "t_save", "divergence_step") else ".2f" if "acc" in metric else ".3g"


def _context_title(df: pd.DataFrame, facet: Sequence[str]) -> str:
    """What every panel shares (model, optimizer, data, loss, batch), for the figure title."""
    parts = []
    for col in ("model", "optimizer", "data", "loss", "param", "batch_size"):
        if col in df and col not in facet and df[col].nunique(dropna=True) == 1:
            value = df[col].dropna().iloc[0]
            if col == "batch_size":
                parts.append("full batch" if value == 0 else f"B={value}")
            elif col == "data" and "data_file" in df and df["data_file"].nunique(dropna=True) == 1:
                parts.append(f"{DISPLAY.get(str(value), str(value))} ({df['data_file'].dropna().iloc[0]})")
            elif col == "optimizer" and _momentum_of(value, df):
                parts.append(f"{DISPLAY.get(str(value), str(value))} with momentum β={_momentum_of(value, df):g}")
            else:
                parts.append(DISPLAY.get(str(value), str(value)))
    return ", ".join(parts)


def _momentum_of(optimizer: Any, df: pd.DataFrame) -> float:
    """The one momentum every run of an optimizer with a momentum scalar shares (0 when none or when it
    varies): "SGD" alone would hide it."""
    spec = optimizers.SPECS.get(str(optimizer))
    if "momentum" not in df or spec is None or "momentum" not in spec.scalars:
        return 0.0
    values = df["momentum"].dropna().unique()
    return float(values[0]) if len(values) == 1 and values[0] else 0.0


def _wrapped(fig: plt.Figure, text: str, minimum: int = 60) -> str:
    """`text` wrapped to the figure's width (~11 characters per inch, at least `minimum`); mathtext
    ($...$) is left whole, since a line break inside it would not render."""
    return text if "$" in text else textwrap.fill(text, max(minimum, int(fig.get_figwidth() * 11)))


def add_title_line(fig: plt.Figure, line: str) -> plt.Figure:
    """Put `line` (e.g. "Kalra & Barkeshli Fig. 1 · quick: FCN-4-256, ...") above the figure's title."""
    old = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    fig.suptitle("\n".join(filter(None, [_wrapped(fig, line, minimum=0), old])), fontsize=11)
    return fig


def _grid_figure(n_panels: int, ncols: int | None = None, panel_size=(4.2, 3.6)):
    ncols = ncols or min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6),
                             layout="constrained", squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.remove()
    return fig, list(axes.flat[:n_panels])


def _colour_norm(metric: str, tables: list[pd.DataFrame]) -> mcolors.Normalize:
    """Linear scale over the finite values; logarithmic for metrics spanning decades (T_reach, sharpness)."""
    values = np.concatenate([t.to_numpy(float).ravel() for t in tables])
    values = values[np.isfinite(values)]
    lo, hi = (values.min(), values.max()) if values.size else (0.0, 1.0)
    if log_scale(metric) and lo > 0 and hi > lo:
        return mcolors.LogNorm(lo, hi)
    if hi <= lo:  # one value everywhere (T_reach = 1 in every cell): a readable unit-wide bar around it
        lo, hi = lo - 0.5 * max(1.0, abs(lo)), hi + 0.5 * max(1.0, abs(hi))
    return mcolors.Normalize(lo, hi)


def _phase_panels(summary: pd.DataFrame, panels: list[tuple[str, pd.DataFrame, str]], lr_col: str,
                  annotate: bool, shared_scale: bool, ncols: int | None, title: str):
    """Draw (title, rows, metric) panels; colour scales shared per metric when asked."""
    fig, axes = _grid_figure(len(panels), ncols)
    tables = [_cells(rows, metric, lr_col) for _, rows, metric in panels]
    shared: dict[str, list[pd.DataFrame]] = {}
    for (_, _, metric), (values, _) in zip(panels, tables):
        shared.setdefault(metric, []).append(values)
    seen: set[str] = set()
    meshes = []
    for ax, (panel_title, _, metric), (values, states) in zip(axes, panels, tables):
        cmap = plt.get_cmap("viridis" if higher_is_better(metric) else "viridis_r")
        norm = _colour_norm(metric, shared[metric] if shared_scale else [values])
        mesh = _draw_cells(ax, values, states, lr_col, cmap, norm, annotate, _value_format(metric))
        ax.set_gid(f"phase:{metric}")  # lets notebooks and tests find the panels among colour bars
        meshes.append((ax, mesh, metric))
        ax.set_title(panel_title, fontsize=10)
        seen |= set(states.to_numpy().ravel())
    for metric in dict.fromkeys(m for _, _, m in panels):
        own = [(ax, mesh) for ax, mesh, m in meshes if m == metric]
        if shared_scale:
            fig.colorbar(own[0][1], ax=[ax for ax, _ in own], label=metric_label(metric, summary), shrink=0.9)
        else:
            for ax, mesh in own:
                fig.colorbar(mesh, ax=ax, label=metric_label(metric, summary))
    _state_legend(fig, seen)
    if title:  # wrapped to the figure width: a one-panel figure is narrow
        fig.suptitle(_wrapped(fig, title, minimum=0), fontsize=11)
    return fig


def heatmap(summary_df: pd.DataFrame, metric: str = "best_test_acc", facet: str | Sequence[str] | None = None,
            lr_units: str = "auto", annotate: bool = False, shared_scale: bool = True,
            ncols: int | None = None) -> plt.Figure:
    """Phase diagram of `metric` in the lr x warmup plane, one panel per facet value (Figures 3, 4).
    One colour scale across the panels by default: per-panel scales stretch a panel whose values
    span 0.970-0.983 over the whole colour map, so equal-looking colours mean different values.

    facet: column name(s), e.g. "param,loss"; None = every column that varies besides lr/warmup/seed."""
    _check_metric(summary_df, metric)
    lr_col = lr_column(summary_df, lr_units)
    facet_cols = _parse_facet(summary_df, facet)
    panels = [(_panel_title(value), rows, metric) for value, rows in facet_groups(summary_df, facet_cols)]
    if len(panels) > 1:
        panels = [(f"({chr(97 + i)}) {t}", rows, m) for i, (t, rows, m) in enumerate(panels)]
    title = f"{metric_info(metric)[0]}: {_context_title(summary_df, facet_cols)}"
    return _phase_panels(summary_df, panels, lr_col, annotate, shared_scale, ncols, title.rstrip(": "))


def treach_tsave(summary_df: pd.DataFrame, facet: str | Sequence[str] | None = None, lr_units: str = "auto",
                 annotate: bool = True) -> plt.Figure:
    """T_reach and T_save heatmaps (Figure 5): one row per facet value, columns (a) T_reach (b) T_save."""
    for metric in ("t_reach", "t_save"):
        if metric not in summary_df or summary_df[metric].isna().all():
            raise ConfigError(f"no {metric} in the summary: the sweep did not measure eta_c (lr_init=eta_c runs)")
    lr_col = lr_column(summary_df, lr_units)
    facet_cols = _parse_facet(summary_df, facet)
    panels = []
    for value, rows in facet_groups(summary_df, facet_cols):
        for metric, name in (("t_reach", r"$T_{\mathrm{reach}}$"), ("t_save", r"$T_{\mathrm{save}}$")):
            panels.append((" · ".join(filter(None, [name, _panel_title(value)])), rows, metric))
    title = r"steps to reach $\eta_{\mathrm{trgt}}$ with $\eta_{\mathrm{init}}=\eta_c$: " + \
        _context_title(summary_df, facet_cols)
    return _phase_panels(summary_df, panels, lr_col, annotate, False, 2, title.rstrip(": "))


# ----------------------------------------------------------------------------- trajectories
def _sharpness_column(rows: pd.DataFrame) -> str:
    """Adam's stability is governed by the preconditioned sharpness (its threshold is in `threshold`)."""
    if "precond_sharpness" in rows and rows["precond_sharpness"].notna().any():
        return "precond_sharpness"
    return "sharpness"


def _default_trajectory_lr(rows: pd.DataFrame, lr_col: str) -> float:
    """The largest lr at which at least two warmups did not diverge: where catapults show."""
    per_run = rows.drop_duplicates("run_id")
    ok = per_run[per_run["outcome"] != "diverged"]
    counts = ok.groupby(_log2_key(ok[lr_col]))["warmup"].nunique()
    good = counts[counts >= 2]
    if len(good):
        return float(good.index.max())
    return float(_log2_key(per_run[lr_col]).min())


def _until_last_finite(run: pd.DataFrame, column: str) -> pd.DataFrame:
    """A diverged run is frozen but keeps probe rows (NaN loss, constant lr): cut them off, so its
    threshold curve does not run on past the divergence."""
    finite = np.isfinite(run[column].astype(float).to_numpy())
    if not finite.any() or (run["outcome"] != "diverged").all():
        return run
    return run.iloc[: int(np.flatnonzero(finite)[-1]) + 1]


LOSS_CHOICES = ("auto", "train", "probe")


def _trajectory_loss_column(rows: pd.DataFrame, loss: str) -> str:
    """`train`: the loss of each update's minibatch (`loss`); `probe`: the loss on the fixed,
    un-augmented measurement batch (`probe_loss`); `auto`: probe when the runs train on augmented
    data, where every run sees the same augmentation draws and all train-loss curves jump together
    (which looks like catapults and is not), else train."""
    if loss not in LOSS_CHOICES:
        raise ConfigError(f"--loss {loss}: choose one of {', '.join(LOSS_CHOICES)}")
    if loss == "auto":
        measured = "probe_loss" in rows and rows["probe_loss"].notna().any()
        loss = "probe" if _augmented(rows) and measured else "train"
    return "probe_loss" if loss == "probe" else "loss"


_RECORD_NAME = {table: name for name, table in columns.trace_table_names().items()}  # loss -> train_loss


def _trace_metric(traces: pd.DataFrame, metric: str) -> str:
    """A trace column measured in these runs, or a one-line error naming the ones that are."""
    tables = {name: table for name, table in columns.trace_table_names().items()
              if name not in ("step", "lr", "threshold", "hvps") and table in traces and traces[table].notna().any()}
    table = tables.get(metric, metric if metric in tables.values() else None)
    if table is None:
        raise ConfigError(f"--metric {metric}: not a measured trace column here; choose from {', '.join(tables)}")
    return table


def _augmented(rows: pd.DataFrame) -> bool:
    """Whether any of these runs trained on augmented data (the `augment` summary column)."""
    return "augment" in rows and bool((rows["augment"].fillna("none") != "none").any())


def _adam_sharpness_threshold(run: pd.DataFrame) -> pd.Series:
    """(2+2 beta_1)/eta_t, the threshold the sharpness lambda^H is compared with for Adam (Kalra &
    Barkeshli Sec. 4.3: "sharpness is significantly smaller than its instability threshold
    (2+2 beta_1)/eta_t ~ 4000"). The trace's `threshold` is the optimizer spec's (sweep/optimizers.py),
    (2+2 beta_1)/(eta_t (1-beta_1)) for P^-1 H; with c = threshold x eta_t = (2+2 beta_1)/(1-beta_1),
    1 - beta_1 = 4/(c+2), so this is threshold x (1 - beta_1), read off the trace itself."""
    threshold = run["threshold"].astype(float)
    c = threshold * run["lr"].astype(float)
    return threshold * 4.0 / (c + 2.0)


def _threshold_label(rows: pd.DataFrame, adaptive: bool, quantity: str = "precond_sharpness") -> str:
    """The legend of the dashed curve: Adam's (2+2 beta_1)/(eta_t (1-beta_1)) for P^-1 H and
    (2+2 beta_1)/eta_t for H; for SGD the trace's threshold x lr_t, i.e. 2 without momentum and 2+2 beta
    with it (Figure 10's (2+2 beta)/eta_t)."""
    if adaptive:
        if quantity == "sharpness":
            return r"threshold $(2+2\beta_1)/\eta_t$"
        return r"threshold $(2+2\beta_1)/(\eta_t(1-\beta_1))$"
    c = _momentum_threshold(rows)
    if c == 2.0:
        return r"threshold $2/\eta_t$"
    return rf"threshold $(2+2\beta)/\eta_t$ = {c:.3g}$/\eta_t$"


def _momentum_threshold(rows: pd.DataFrame) -> float:
    """threshold x lr_t read off the traces: 2 for plain SGD/GD, 2+2 beta with heavy-ball momentum."""
    c = float((rows["threshold"].astype(float) * rows["lr"].astype(float)).median())
    return 2.0 if not np.isfinite(c) or abs(c - 2.0) < 1e-6 * 2 else c


# A diverged run may reach 1e30: the axis ends this far above the highest value of the runs that did not.
DIVERGED_HEADROOM = 30.0


def _clip_diverged(ax, curves: list[tuple[bool, pd.Series]]) -> None:
    """Keep the other runs' catapults readable: when a diverged run climbs far above every run that
    did not diverge, end the log axis DIVERGED_HEADROOM x above them; the diverged curve leaves the
    panel at the top and its x marker is drawn on the edge (`clip_on=False`)."""
    def top(values: list[pd.Series]) -> float:
        finite = [v[np.isfinite(v) & (v > 0)] for v in (s.astype(float) for s in values)]
        finite = [v for v in finite if len(v)]
        return max(float(v.max()) for v in finite) if finite else float("nan")
    calm = top([s for diverged, s in curves if not diverged])
    wild = top([s for diverged, s in curves if diverged])
    if np.isfinite(calm) and np.isfinite(wild) and wild > calm * DIVERGED_HEADROOM:
        ax.set_ylim(top=calm * DIVERGED_HEADROOM)
        for line in ax.lines:  # the x markers: on the edge, not above the panel
            if (line.get_gid() or "").startswith("diverged:"):
                line.set_ydata(np.minimum(np.asarray(line.get_ydata(), float), calm * DIVERGED_HEADROOM))


def _trajectory_axes(n_groups: int, ncols: int) -> tuple[plt.Figure, list]:
    """The figure and its rows of axes: one row per facet value (loss, then the sharpness panels), or,
    with no sharpness panel and several facet values, a grid of loss panels two across."""
    if ncols == 1 and n_groups > 1:
        nrows, across = math.ceil(n_groups / 2), 2
        fig, grid = plt.subplots(nrows, across, figsize=(5 * across, 3.4 * nrows + 0.6), layout="constrained",
                                 squeeze=False)
        for ax in grid.flat[n_groups:]:
            ax.set_visible(False)
        return fig, [[ax] for ax in grid.flat[:n_groups]]
    return plt.subplots(n_groups, ncols, figsize=(5 * ncols, 3.4 * n_groups + 0.4), layout="constrained",
                        squeeze=False)


def _trajectory_runs(rows: pd.DataFrame, lr_col: str, target: float, warmups: Sequence[int] | None,
                     value: Mapping[str, Any]) -> pd.DataFrame:
    """The trace rows of one panel row: target lr `target`, the first seed, the asked warmups."""
    chosen = rows[np.isclose(np.log2(rows[lr_col].astype(float)), math.log2(target), atol=1e-3)]
    if chosen.empty:
        available = ", ".join(f"{v:g}" for v in sorted(_log2_key(rows[lr_col]).unique()))
        raise ConfigError(f"no runs at lr={target:g} ({lr_col}) in {_panel_title(value) or 'the sweep'}; "
                          f"available: {available}")
    if "seed" in chosen:
        chosen = chosen[chosen["seed"] == chosen["seed"].min()]
    if warmups is not None:
        chosen = chosen[chosen["warmup"].isin(list(warmups))]
    return chosen


def _draw_trajectory(run: pd.DataFrame, warmup: Any, c: Any, ax_loss: Any, sharp_axes: dict, loss_column: str,
                     adaptive: bool, with_momentum: bool, kept: dict) -> None:
    """One run's curves: its loss, its sharpness panels with their dashed thresholds, an x where it diverged."""
    run = _until_last_finite(run.sort_values("step"), loss_column)
    label = f"$T_{{\\mathrm{{wrm}}}}={warmup_tick_labels([warmup])[0].strip('$')}$"
    drawn = run[["step", loss_column]].dropna()  # test_acc exists at evaluation steps only
    ax_loss.plot(drawn["step"], drawn[loss_column], color=c, lw=1.3, label=label, gid=f"loss:{warmup}")
    diverged = bool((run["outcome"] == "diverged").any())
    kept[ax_loss].append((diverged, run[loss_column]))
    for q, ax in sharp_axes.items():
        ax.plot(run["step"], run[q], color=c, lw=1.3, label=label, gid=f"{q}:{warmup}")
        if adaptive and q == "sharpness":  # (2+2 b1)/eta_t, Sec. 4.3
            threshold = _adam_sharpness_threshold(run)
            ax.plot(run["step"], threshold, color=c, lw=1.0, ls="--", gid=f"sharpness_threshold:{warmup}")
        else:  # the optimizer's own threshold, for the quantity it bounds
            threshold = run["threshold"]
            ax.plot(run["step"], threshold, color=c, lw=1.0, ls="--", gid=f"threshold:{warmup}")
            if with_momentum:  # Figs. 9/10: "dashed lines show the 2/eta_t for reference"
                ax.plot(run["step"], 2.0 / run["lr"].astype(float), color=c, lw=0.8, ls=":",
                        gid=f"reference:{warmup}")
        kept[ax].append((diverged, run[q]))
        kept[ax].append((diverged, threshold))
    if diverged:
        last = run[np.isfinite(run[loss_column].astype(float))].tail(1)
        ax_loss.plot(last["step"], last[loss_column], marker="x", color=c, ms=7, mew=2, ls="",
                     clip_on=False, gid=f"diverged:{warmup}")


def _label_trajectory_row(value: Mapping[str, Any], target: float, lr_col: str, chosen: pd.DataFrame, ax_loss: Any,
                          sharp_axes: dict, row_axes: Sequence[Any], loss_column: str, metric: str | None,
                          adaptive: bool, with_momentum: bool) -> None:
    """Titles, scales, axis labels and legends of one row of trajectory panels."""
    lr_text = lr_tick_labels([target], lr_col)[0]
    others = {c: v for c, v in value.items() if c not in LR_COLUMNS}  # the lr is shown once, as eta_trgt
    head = " · ".join(filter(None, [_panel_title(others), rf"$\eta_{{\mathrm{{trgt}}}}$ = {lr_text}"]))
    loss_what = ("loss on the measurement batch" if loss_column == "probe_loss" else "training loss"
                 if metric is None else metric_info(metric)[0])
    ax_loss.set_title(f"{head}: {loss_what}", fontsize=10)
    for q, ax in sharp_axes.items():
        ax.set_title(f"{head}: {'preconditioned ' if q == 'precond_sharpness' else ''}sharpness", fontsize=10)
    for ax in row_axes:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("log" if ax is not ax_loss or metric is None or log_scale(metric) else "linear")
        ax.set_xlabel("step $t$")
    loss_unit = LOSS_UNITS.get(str(chosen["loss_fn"].iloc[0])) if "loss_fn" in chosen else None
    ylabel = ("measurement-batch loss" if loss_column == "probe_loss"  # fixed and un-augmented
              else "loss, augmented update batch" if _augmented(chosen) else "training loss")
    ax_loss.set_ylabel(ylabel + (f" ({loss_unit})" if loss_unit else "") if metric is None
                       else metric_label(metric, chosen.rename(columns={"loss_fn": "loss"})))
    if not sharp_axes:  # no sharpness measured: the warmups' legend goes beside the first panel
        ax_loss.legend(fontsize=7, loc="best", framealpha=0.8)
    for q, ax in sharp_axes.items():
        ax.set_ylabel(r"$\lambda^{P^{-1}H}_t$" if q == "precond_sharpness" else r"$\lambda^H_t$")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.0))
        labels.append(_threshold_label(chosen, adaptive, q))
        if with_momentum and q == "sharpness":
            handles.append(Line2D([], [], color="0.3", ls=":", lw=0.8))
            labels.append(r"reference $2/\eta_t$")
        ax.legend(handles, labels, fontsize=7, loc="best", framealpha=0.8)


def trajectories(traces_df: pd.DataFrame, lr: float | None = None, lr_units: str = "auto",
                 facet: str | Sequence[str] | None = None, warmups: Sequence[int] | None = None,
                 loss: str = "auto", metric: str | None = None) -> plt.Figure:
    """Loss and sharpness vs step for one target lr and several warmups (Figures 1, 2).

    `metric`, a trace column (test_acc, test_loss, probe_acc...), replaces the loss in the first
    panel: Figure 31 compares Adam variants by their test accuracy trajectories.

    One row per facet value, one colour per warmup. Columns: the loss (see `_trajectory_loss_column`
    for `loss`), the sharpness lambda^H and, when the runs measured it (Adam, GI-Adam), the
    preconditioned sharpness lambda^{P^-1 H}: Kalra & Barkeshli Figure 2 (Sec. 4.3) shows "the
    training loss, pre-conditioned sharpness, and sharpness trajectories for full batch Adam", with
    "the instability thresholds (2+2 beta_1)/(eta_t (1-beta_1))" dashed beside P^-1 H, and Sec. 4.3
    compares the sharpness with "its instability threshold (2+2 beta_1)/eta_t ~ 4000", far above it.
    Dashed curves: in the sharpness panel 2/lr_t or (2+2b)/lr_t for SGD(-M) (the trace's `threshold`)
    and (2+2 b1)/lr_t for Adam/GI-Adam (`_adam_sharpness_threshold`); in the P^-1 H panel the trace's
    `threshold`, Adam's (2+2 b1)/(lr_t (1-b1)). `lr` is in `lr_units`; None picks, per facet, the
    largest lr where at least two warmups did not diverge."""
    if traces_df.empty:
        raise ConfigError("no traces in this sweep (no trace.parquet files yet)")
    lr_col = lr_column(traces_df, lr_units, traces=True)
    facet_cols = _parse_facet(traces_df, facet)
    groups = facet_groups(traces_df, facet_cols)
    measured_pc = _sharpness_column(traces_df) == "precond_sharpness"
    adaptive = measured_pc or ("optimizer" in traces_df and traces_df["optimizer"].isin(optimizers.adaptive_names()).any())
    quantities = ["sharpness", "precond_sharpness"] if measured_pc else ["sharpness"]
    quantities = [q for q in quantities if q in traces_df and traces_df[q].notna().any()]  # probe.sharpness=false
    first_column = None if metric is None else _trace_metric(traces_df, metric)  # replaces the loss
    metric = None if first_column is None else _RECORD_NAME.get(first_column, first_column)
    fig, axes = _trajectory_axes(len(groups), 1 + len(quantities))
    all_warmups = sorted(traces_df["warmup"].dropna().unique())
    cmap = plt.get_cmap("plasma")
    colour = {w: cmap(0.85 * i / max(1, len(all_warmups) - 1)) for i, w in enumerate(all_warmups)}
    for (value, rows), row_axes in zip(groups, axes):
        ax_loss, sharp_axes = row_axes[0], dict(zip(quantities, row_axes[1:]))
        ax_loss.set_gid("trajectory:loss")
        for q, ax in sharp_axes.items():
            ax.set_gid(f"trajectory:{q}")
        target = _default_trajectory_lr(rows, lr_col) if lr is None else lr
        chosen = _trajectory_runs(rows, lr_col, target, warmups, value)
        loss_column = _trajectory_loss_column(chosen, loss) if first_column is None else first_column
        with_momentum = not adaptive and _momentum_threshold(chosen) != 2.0
        kept: dict[Any, list[tuple[bool, pd.Series]]] = {ax: [] for ax in row_axes}
        for warmup, run in sorted(chosen.groupby("warmup"), key=lambda kv: kv[0]):
            _draw_trajectory(run, warmup, colour.get(warmup, "k"), ax_loss, sharp_axes, loss_column, adaptive,
                             with_momentum, kept)
        _label_trajectory_row(value, target, lr_col, chosen, ax_loss, sharp_axes, row_axes, loss_column, metric,
                              adaptive, with_momentum)
        for ax, curves in kept.items():
            _clip_diverged(ax, curves)
    context = _context_title(traces_df, facet_cols)
    title = " · ".join(filter(None, [context, "training trajectories (×: last probe of a diverged run)"]))
    fig.suptitle(_wrapped(fig, title), fontsize=11)
    return fig


# ----------------------------------------------------------------------------- Gilmer et al. Figure 2
def _state_at_step(traces: pd.DataFrame, step: int, sharp_col: str) -> pd.DataFrame:
    """Per run, the last probe at or before `step` with a finite sharpness (pre-divergence for diverged)."""
    rows = traces[(traces["step"] <= step) & np.isfinite(traces[sharp_col].astype(float))]
    return rows.sort_values("step").groupby("run_id").tail(1)


def _initial_sharpness(rows: pd.DataFrame, trace: pd.DataFrame, sharp_col: str) -> pd.Series:
    """Per run (aligned with `rows`): lambda0, or for Adam the preconditioned sharpness at the first probe."""
    if sharp_col == "sharpness" or trace.empty:
        return rows["lambda0"].astype(float)
    first = trace.sort_values("step").groupby("run_id")[sharp_col].first()
    return rows["run_id"].map(first).astype(float)


def _stability_region(ax, c: float, points_y: np.ndarray) -> None:
    """Dashed lambda = c/eta line with the unstable side tinted; limits keep both points and line."""
    lo, hi = ax.get_xlim()
    xs = np.geomspace(lo, hi, 50)
    finite = points_y[np.isfinite(points_y) & (points_y > 0)]
    y_lo = min([c / hi, *finite]) / 1.5
    y_hi = max([c / lo, *finite]) * 1.5
    ax.plot(xs, c / xs, "k--", lw=1)
    ax.fill_between(xs, c / xs, y_hi, color="tab:red", alpha=0.07, lw=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(y_lo, y_hi)


def sharpness_scatter(summary_df: pd.DataFrame, traces_df: pd.DataFrame, step: int | None = None,
                      facet: str | Sequence[str] | None = None) -> plt.Figure:
    """Sharpness vs learning rate at initialization and at `step`, X = diverged (Gilmer et al. Fig. 2).

    Left: sharpness at init (lambda0; Adam: preconditioned) against the target lr; right: sharpness
    against lr_t at `step` (default: the longest warmup, capped at the last probe), for diverged runs
    the last probe before divergence. The dashed line is the instability threshold lambda = c/eta
    (c = threshold * lr from the traces: 2 for SGD, 2+2b with momentum, (2+2b1)/(1-b1) for Adam)."""
    if "lambda0" not in summary_df or summary_df["lambda0"].isna().all():
        raise ConfigError("no lambda0 in the records (probe.sharpness was off?): nothing to scatter")
    if step is None:
        step = int(summary_df["warmup"].max())
        if len(traces_df):
            step = min(step, int(traces_df["step"].max()))
    facet_cols = _parse_facet(summary_df, facet)
    groups = facet_groups(summary_df, facet_cols)
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 3.6 * len(groups) + 0.5), layout="constrained",
                             squeeze=False)
    warm = summary_df["warmup"].astype(float)
    norm = mcolors.LogNorm(warm.min(), max(warm.max(), warm.min() * 2))
    cmap = plt.get_cmap("plasma")
    marker = {"converged": "o", "failed": "s", "error": "d", "diverged": "X"}
    thresholds = set()
    for (value, rows), (ax0, ax1) in zip(groups, axes):
        trace = traces_df[traces_df["run_id"].isin(rows["run_id"])] if len(traces_df) else traces_df
        sharp_col = _sharpness_column(trace) if len(trace) else "sharpness"
        c = float(np.nanmedian(trace["threshold"] * trace["lr"])) if len(trace) else 2.0
        thresholds.add(round(c, 6))
        rows = rows.assign(_init=_initial_sharpness(rows, trace, sharp_col).to_numpy())
        at_step = _state_at_step(trace, step, sharp_col) if len(trace) else pd.DataFrame(
            columns=["run_id", "lr", sharp_col])
        at_step = at_step[["run_id", "lr", sharp_col]].merge(rows[["run_id", "outcome", "warmup"]], on="run_id")
        ws = sorted(rows["warmup"].unique())
        shift = {w: 2 ** (0.25 * (i / max(1, len(ws) - 1) - 0.5)) for i, w in enumerate(ws)}
        ax0.set_gid("scatter:init")
        ax1.set_gid(f"scatter:step{step}")
        for outcome, mk in marker.items():
            style = dict(cmap=cmap, norm=norm, marker=mk, s=55 if mk == "X" else 24, edgecolors="k",
                         linewidths=0.4, gid=outcome)
            init = rows[rows["outcome"] == outcome]
            if len(init):
                ax0.scatter(init["lr"] * init["warmup"].map(shift), init["_init"], c=init["warmup"], **style)
            later = at_step[at_step["outcome"] == outcome]
            if len(later):
                ax1.scatter(later["lr"], later[sharp_col], c=later["warmup"], **style)
        what = "preconditioned sharpness" if sharp_col == "precond_sharpness" else "sharpness"
        for ax, xlabel, ylabel, ys in (
            (ax0, r"target learning rate $\eta_{\mathrm{trgt}}$", f"{what} at init", rows["_init"]),
            (ax1, rf"learning rate $\eta_t$ at step {step}", f"{what} at step {step}", at_step[sharp_col]),
        ):
            ax.set_xscale("log")
            ax.set_yscale("log")
            _stability_region(ax, c, np.asarray(ys, float))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        head = " · ".join(filter(None, [_panel_title(value), f"c={c:.3g}" if len(groups) > 1 else ""]))
        ax0.set_title(" · ".join(filter(None, [head, "at initialization"])), fontsize=10)
        ax1.set_title(" · ".join(filter(None, [head, f"step {step} (diverged: last probe before)"])), fontsize=10)
    handles = [Line2D([], [], ls="", marker=mk, color="0.6", mec="k", label=o) for o, mk in marker.items()
               if (summary_df["outcome"] == o).any()]
    c_text = f"{thresholds.pop():g}" if len(thresholds) == 1 else "c"
    handles.append(Line2D([], [], color="k", ls="--", label=f"threshold λ = {c_text}/η (tinted: unstable)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(),
                 label=r"warmup steps $T_{\mathrm{wrm}}$", shrink=0.8)
    fig.suptitle("sharpness vs learning rate (left: x shifted slightly by warmup to separate points)",
                 fontsize=10)
    return fig


# ----------------------------------------------------------------------------- text (for `sweep status`)
def text_phase_diagram(summary_df: pd.DataFrame, metric: str = "best_test_acc",
                       facet: str | Sequence[str] | None = None, lr_units: str = "auto") -> str:
    """A phase diagram in characters, for a terminal over ssh: rows = warmup (longest on top),
    columns = lr (increasing to the right), one character per cell.

    Converged cells are shaded '.:-=+*#%@' from worst to best value of `metric` within the panel;
    'D' diverged, 'F' failed, 'E' error, '?' not run yet."""
    if summary_df.empty:
        return "(no finished runs yet)"
    _check_metric(summary_df, metric)
    lr_col = lr_column(summary_df, lr_units)
    facet_cols = _parse_facet(summary_df, facet)
    better_high = higher_is_better(metric)
    blocks = []
    for value, rows in facet_groups(summary_df, facet_cols):
        values, states = _cells(rows, metric, lr_col)
        finite = values.to_numpy(float)[np.isfinite(values.to_numpy(float))]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        ys = list(values.index)
        width = max(len(f"2^{math.log2(y):g}") for y in ys) if ys else 4
        lines = [f"[{_panel_title(value) or 'all runs'}] {metric}: '.' worst .. '@' best "
                 f"({lo:.3g}..{hi:.3g}), D diverged, F failed, E error, ? not run"]
        for i in reversed(range(len(ys))):
            chars = []
            for j in range(values.shape[1]):
                state, v = states.iat[i, j], values.iat[i, j]
                if state == "converged" and np.isfinite(v):
                    frac = (v - lo) / (hi - lo) if hi > lo else 1.0
                    frac = frac if better_high else 1 - frac
                    chars.append(SHADES[min(len(SHADES) - 1, int(frac * len(SHADES)))])
                else:
                    chars.append(STATE_CHARS.get(state, "?"))
            lines.append(f"{'2^' + format(math.log2(ys[i]), 'g'):>{width}} | {' '.join(chars)}")
        xs = list(values.columns)
        unit = "/λ0" if "lambda0" in lr_col else ""
        lines.append(f"{'':>{width}}   lr {_pow2_text(xs[0], False) or f'{xs[0]:.3g}'}{unit} .. "
                     f"{_pow2_text(xs[-1], False) or f'{xs[-1]:.3g}'}{unit} ({len(xs)} columns); rows: warmup")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
