"""The figure kinds of `sweep plot --kind`, registered in drawing order: each says its file name, whether
`--kind all` draws it for this sweep's data, and how to draw it. Why: the command iterates this table
instead of an if-chain, and a new kind is one entry here (plus its test). Plotting modules are
imported when a figure is drawn, so `--help` and completion stay fast.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable


def _has(table: Any, *cols: str) -> bool:
    return any(c in table and table[c].notna().any() for c in cols)


def _lr_suffix(args: argparse.Namespace) -> str:
    return "" if args.lr is None else f"_lr{args.lr:g}"


def default_metric(summary: Any) -> str:
    for metric in ("best_test_acc", "final_test_loss", "final_train_loss"):
        if metric in summary and summary[metric].notna().any():
            return metric
    return "best_test_acc"


@dataclass(frozen=True)
class PlotKind:
    name: str
    file_name: Callable[[argparse.Namespace, Any], str]  # (args, summary) -> figure file stem
    in_all: Callable[[Any, Any], bool]  # (summary, traces) -> drawn by --kind all
    draw: Callable[[argparse.Namespace, Any, Any], Any]  # (args, summary, traces) -> matplotlib figure
    diagnostic: bool = False  # a supporting paper's figure (sweep/plot_diagnostics.py)


def _heatmap(args, summary, traces):
    from sweep import plot

    return plot.heatmap(summary, metric=args.metric or default_metric(summary), facet=args.facet,
                        lr_units=args.lr_units, annotate=args.annotate, shared_scale=not args.own_scale)


def _trajectories(args, summary, traces):
    from sweep import plot

    first = args.metric if args.kind == "trajectories" else None  # e.g. test_acc (Figure 31)
    return plot.trajectories(traces, lr=args.lr, lr_units=args.lr_units, facet=args.facet, loss=args.loss,
                             metric=first)


def _treach(args, summary, traces):
    from sweep import plot

    return plot.treach_tsave(summary, facet=args.facet, lr_units=args.lr_units, annotate=True)


def _scatter(args, summary, traces):
    from sweep import plot

    return plot.sharpness_scatter(summary, traces, step=args.step, facet=args.facet)


def _warmup_push(args, summary, traces):
    from sweep import plot_diagnostics as diag

    return diag.warmup_push(traces, lr=args.lr, lr_units=args.lr_units, facet=args.facet)


def _batch_sharpness(args, summary, traces):
    from sweep import plot_diagnostics as diag

    return diag.batch_sharpness(traces, facet=args.facet)


def _grad_cov(args, summary, traces):
    from sweep import plot_diagnostics as diag

    metrics = [m.strip() for m in args.metric.split(",")] if args.kind == "grad_cov" and args.metric else None
    return diag.grad_cov(traces, metrics=metrics, facet=args.facet)


def _noise_kernel(args, summary, traces):
    from sweep import plot_diagnostics as diag

    return diag.noise_kernel(traces, batch_size=getattr(args, "batch_size", None), facet=args.facet)


def _noise_kernel_columns(summary, traces) -> bool:
    from sweep.plot_diagnostics import NOISE_KERNEL_COLUMNS

    return _has(traces, "ntk_trace", *NOISE_KERNEL_COLUMNS)


PLOT_KINDS: dict[str, PlotKind] = {k.name: k for k in (
    PlotKind("heatmap", lambda a, s: f"heatmap_{a.metric or default_metric(s)}", lambda s, t: True, _heatmap),
    PlotKind("trajectories", lambda a, s: "trajectories" + _lr_suffix(a), lambda s, t: len(t) > 0, _trajectories),
    PlotKind("treach", lambda a, s: "treach_tsave", lambda s, t: _has(s, "t_reach"), _treach),
    PlotKind("scatter", lambda a, s: "sharpness_scatter" + ("" if a.step is None else f"_step{a.step}"),
             lambda s, t: _has(s, "lambda0"), _scatter),
    # warmup_push and batch_sharpness need a sweep built for them (several warmups at one lr / several
    # batch sizes): drawn only when asked for; grad_cov and noise_kernel when their probes were recorded
    PlotKind("warmup_push", lambda a, s: "warmup_push" + _lr_suffix(a), lambda s, t: False, _warmup_push, True),
    PlotKind("batch_sharpness", lambda a, s: "batch_sharpness", lambda s, t: False, _batch_sharpness, True),
    PlotKind("grad_cov", lambda a, s: "grad_cov", lambda s, t: _has(t, "grad_cov_top", "grad_cov_trace"),
             _grad_cov, True),
    PlotKind("noise_kernel", lambda a, s: "noise_kernel", _noise_kernel_columns, _noise_kernel, True),
)}


def requested(args: argparse.Namespace, summary: Any, traces: Any) -> list[tuple[str, Callable[[], Any]]]:
    """(file name, builder) of every figure `--kind` asks for; with 'all', those the data support."""
    kinds = PLOT_KINDS.values() if args.kind == "all" else [PLOT_KINDS[args.kind]]
    return [(k.file_name(args, summary), lambda k=k: k.draw(args, summary, traces)) for k in kinds
            if args.kind != "all" or k.in_all(summary, traces)]
