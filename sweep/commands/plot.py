"""`sweep plot <sweep_dir>`: phase-diagram heatmaps, trajectories, T_reach/T_save, sharpness scatter.

Each figure is written as <sweep_dir>/figures/<name>.png and .pdf with a <name>.json sidecar naming
the command line and the data files (with row counts) it was drawn from, so a figure can be traced
back and regenerated. The sweep is (incrementally) aggregated first, so figures are never stale."""
from __future__ import annotations

import argparse
import datetime as dt
import shlex
from pathlib import Path

from sweep import aggregate as agg
from sweep import plot, store
from sweep.commands.aggregate import _report_warnings
from sweep.config import ConfigError

KINDS = ("heatmap", "trajectories", "treach", "scatter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="the sweep folder, results/<sweep_name>")
    parser.add_argument("--kind", default="all", choices=(*KINDS, "all"),
                        help="which figure(s); 'all' draws every kind the data supports")
    parser.add_argument("--metric", default=None,
                        help="heatmap colour: best_test_acc (default when measured), final_test_loss, "
                             "final_train_loss, max_sharpness, ...")
    parser.add_argument("--facet", default=None,
                        help="comma-separated columns, one panel per value (default: what varies, e.g. param)")
    parser.add_argument("--lr-units", default="auto", choices=("auto", "absolute", "lambda0"),
                        help="target lr axis: absolute, or in units of 1/lambda0 (auto: as the sweep was set)")
    parser.add_argument("--annotate", action="store_true", help="write each cell's value in the heatmap")
    parser.add_argument("--shared-scale", action="store_true", help="one colour scale across heatmap panels")
    parser.add_argument("--lr", type=float, default=None,
                        help="trajectories: target lr (in --lr-units); default: near the divergence boundary")
    parser.add_argument("--step", type=int, default=None,
                        help="scatter: the training step of the right panel (default: the longest warmup)")
    parser.add_argument("--format", default="png,pdf", help="comma-separated file formats (default png,pdf)")
    parser.add_argument("--title", default=None,
                        help="a first title line for every figure (e.g. which paper figure, scale and reductions)")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="extra KEY=VALUE recorded under 'meta' in each figure's JSON sidecar (repeatable)")


def command_line(args: argparse.Namespace) -> str:
    """The canonical command that regenerates these figures."""
    parts = ["sweep", "plot", args.sweep_dir, "--kind", args.kind]
    for flag, value in (("--metric", args.metric), ("--facet", args.facet), ("--lr-units", args.lr_units),
                        ("--lr", args.lr), ("--step", args.step), ("--format", args.format)):
        if value is not None:
            parts += [flag, str(value)]
    parts += [flag for flag, on in (("--annotate", args.annotate), ("--shared-scale", args.shared_scale)) if on]
    if getattr(args, "title", None):
        parts += ["--title", args.title]
    for item in getattr(args, "meta", None) or []:
        parts += ["--meta", item]
    return shlex.join(parts)


def _meta(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta {item}: expected KEY=VALUE")
        out[key] = value
    return out


def _default_metric(summary) -> str:
    for metric in ("best_test_acc", "final_test_loss", "final_train_loss"):
        if metric in summary and summary[metric].notna().any():
            return metric
    return "best_test_acc"


def _save(fig, out_dir: Path, name: str, formats: list[str], sidecar: dict) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        store.atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150))
        written.append(path)
    meta = out_dir / f"{name}.json"
    store.atomic_write_json(meta, {**sidecar, "figure": name, "files": [p.name for p in written]})
    plot.plt.close(fig)
    return written + [meta]


def _figures(args: argparse.Namespace, summary, traces) -> list[tuple[str, object]]:
    """(name, builder) for every requested kind; with 'all', kinds the data cannot support are skipped."""
    wanted = KINDS if args.kind == "all" else (args.kind,)
    metric = args.metric or _default_metric(summary)
    has_traces = len(traces) > 0
    has_treach = "t_reach" in summary and summary["t_reach"].notna().any()
    has_lambda0 = "lambda0" in summary and summary["lambda0"].notna().any()
    out = []
    if "heatmap" in wanted:
        out.append((f"heatmap_{metric}", lambda: plot.heatmap(
            summary, metric=metric, facet=args.facet, lr_units=args.lr_units, annotate=args.annotate,
            shared_scale=args.shared_scale)))
    if "trajectories" in wanted and (has_traces or args.kind != "all"):
        name = "trajectories" + ("" if args.lr is None else f"_lr{args.lr:g}")
        out.append((name, lambda: plot.trajectories(traces, lr=args.lr, lr_units=args.lr_units, facet=args.facet)))
    if "treach" in wanted and (has_treach or args.kind != "all"):
        out.append(("treach_tsave", lambda: plot.treach_tsave(
            summary, facet=args.facet, lr_units=args.lr_units, annotate=True)))
    if "scatter" in wanted and (has_lambda0 or args.kind != "all"):
        name = "sharpness_scatter" + ("" if args.step is None else f"_step{args.step}")
        out.append((name, lambda: plot.sharpness_scatter(summary, traces, step=args.step, facet=args.facet)))
    return out


def command(args: argparse.Namespace) -> int:
    _report_warnings()
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise ConfigError(f"--format {args.format}: allowed png, pdf, svg (comma-separated)")
    summary, traces = agg.aggregate(args.sweep_dir)
    if summary.empty:
        raise ConfigError(f"{args.sweep_dir}: no finished runs to plot yet (no runs/*/record.json)")
    sweep_dir = Path(args.sweep_dir)
    meta = _meta(getattr(args, "meta", None) or [])
    sidecar = {
        "command": command_line(args),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": [{"path": str(sweep_dir / agg.SUMMARY_FILE), "rows": len(summary)},
                 {"path": str(sweep_dir / agg.TRACES_FILE), "rows": len(traces)}],
    }
    title = getattr(args, "title", None)
    if title:
        sidecar["title"] = title
    if meta:
        sidecar["meta"] = meta
    out_dir = sweep_dir / "figures"
    for name, build in _figures(args, summary, traces):
        fig = build()
        if title:
            plot.add_title_line(fig, title)
        for path in _save(fig, out_dir, name, formats, sidecar):
            print(path)
    return 0
