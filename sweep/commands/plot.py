"""`sweep plot <sweep_dir>`: phase-diagram heatmaps, trajectories, T_reach/T_save, sharpness scatter,
and the supporting papers' diagnostics (sweep/plot_diagnostics.py): warmup_push and batch_sharpness
(Gilmer et al. Figs. 4/15 and 16), grad_cov (Jastrzebski et al. Fig. 4), noise_kernel (Agarwala &
Pennington Figs. 3, 5, 6).

Each figure is written as <sweep_dir>/figures/<name>.png and .pdf with a <name>.json sidecar naming
the command line and the data files (with row counts) it was drawn from, so a figure can be traced
back and regenerated. The sweep is (incrementally) aggregated first, so figures are never stale."""
from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path

# pandas, matplotlib and the plotting module are imported when a figure is drawn, not to build `--help`.

from sweep.plot_kinds import PLOT_KINDS, requested  # the registered kinds (sweep/plot_kinds.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="the sweep folder, results/<sweep_name>")
    parser.add_argument("--kind", default="all", choices=(*PLOT_KINDS, "all"),
                        help="which figure(s); 'all' draws every kind the data supports")
    parser.add_argument("--metric", default=None,
                        help="heatmap colour: best_test_acc (default when measured), final_test_loss, "
                             "final_train_loss, max_sharpness, ...; with --kind trajectories, a trace column for "
                             "the first panel instead of the loss (test_acc, test_loss, probe_acc, ...)")
    parser.add_argument("--facet", default=None,
                        help="comma-separated columns, one panel per value (default: what varies, e.g. param)")
    parser.add_argument("--lr-units", default="auto", choices=("auto", "absolute", "lambda0"),
                        help="target lr axis: absolute, or in units of 1/lambda0 (auto: as the sweep was set)")
    parser.add_argument("--loss", default="auto", choices=("auto", "train", "probe"),
                        help="trajectories' loss: train (each update's minibatch), probe (the fixed measurement "
                             "batch) or auto (probe when training data are augmented; default)")
    parser.add_argument("--annotate", action="store_true", help="write each cell's value in the heatmap")
    parser.add_argument("--own-scale", action="store_true",
                        help="a colour scale per heatmap panel (default: one scale per metric across the panels, "
                             "so one colour means one value in every panel)")
    parser.add_argument("--shared-scale", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old commands
    parser.add_argument("--lr", type=float, default=None,
                        help="trajectories: target lr (in --lr-units); default: near the divergence boundary")
    parser.add_argument("--step", type=int, default=None,
                        help="scatter: the training step of the right panel (default: the longest warmup)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="noise_kernel: the batch size of panel (a) (default: the smallest)")
    parser.add_argument("--format", default="png,pdf", help="comma-separated file formats (default png,pdf)")
    add_style_arguments(parser)
    parser.add_argument("--title", default=None,
                        help="a first title line for every figure (e.g. which paper figure, scale and reductions)")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="extra KEY=VALUE recorded under 'meta' in each figure's JSON sidecar (repeatable)")


STYLE_OPTIONS = (("--width", "width"), ("--height", "height"), ("--dpi", "dpi"), ("--style", "style"),
                 ("--context", "context"))
SEABORN_STYLES = ("white", "whitegrid", "dark", "darkgrid", "ticks")
SEABORN_CONTEXTS = ("paper", "notebook", "talk", "poster")


def add_style_arguments(parser: argparse.ArgumentParser) -> None:
    """Size, resolution and look of the figure files (also accepted by `sweep figures`)."""
    parser.add_argument("--width", type=float, default=None, metavar="INCHES",
                        help="figure width in inches (default: 4.2 per heatmap panel, 10 for trajectories); "
                             "given alone, the height keeps the figure's aspect ratio")
    parser.add_argument("--height", type=float, default=None, metavar="INCHES",
                        help="figure height in inches; given alone, the width keeps the aspect ratio")
    parser.add_argument("--dpi", type=float, default=150, help="resolution of png files (default 150)")
    parser.add_argument("--style", default=None,
                        help="seaborn style (" + ", ".join(SEABORN_STYLES) + ") or a matplotlib style sheet "
                             "name or file (default: matplotlib's defaults)")
    parser.add_argument("--context", default=None, choices=SEABORN_CONTEXTS,
                        help="seaborn context: scales fonts and lines (paper < notebook < talk < poster)")


def style_argv(args: argparse.Namespace) -> list[str]:
    """The style options that differ from the defaults, as command-line words."""
    parts = []
    for flag, attr in STYLE_OPTIONS:
        value = getattr(args, attr, None)
        if value is not None and not (attr == "dpi" and value == 150):
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return parts


def _check_style(args: argparse.Namespace) -> None:
    from sweep.config import ConfigError

    for attr in ("width", "height", "dpi"):
        value = getattr(args, attr, None)
        if value is not None and not (0 < value < 1000):
            raise ConfigError(f"--{attr} {value:g}: expected a positive number below 1000")
    style = getattr(args, "style", None)
    if style and style not in SEABORN_STYLES:
        import matplotlib.pyplot as plt

        if style not in plt.style.available and not Path(style).is_file():
            raise ConfigError(f"--style {style}: not a seaborn style ({', '.join(SEABORN_STYLES)}), "
                              f"a matplotlib style ({', '.join(sorted(plt.style.available)[:6])}, ...) or a file")


def style_context(args: argparse.Namespace):
    """A matplotlib rc context with the chosen seaborn style/context (or matplotlib style sheet)."""
    import matplotlib.pyplot as plt

    rc: dict = {}
    style, context = getattr(args, "style", None), getattr(args, "context", None)
    sheets = []
    if style in SEABORN_STYLES or context:
        import seaborn as sns

        if style in SEABORN_STYLES:
            rc.update(sns.axes_style(style))
        if context:
            rc.update(sns.plotting_context(context))
    elif style:
        sheets.append(style)
    if sheets:
        import contextlib

        stack = contextlib.ExitStack()
        stack.enter_context(plt.style.context(sheets))
        stack.enter_context(plt.rc_context(rc))
        return stack
    return plt.rc_context(rc)


def resize(fig, width: float | None, height: float | None):
    """Set the figure's size in inches; one of the two alone keeps the aspect ratio."""
    if width is None and height is None:
        return fig
    w, h = fig.get_size_inches()
    if width is None:
        width = w * height / h
    elif height is None:
        height = h * width / w
    fig.set_size_inches(width, height)
    return fig


def command_line(args: argparse.Namespace) -> str:
    """The canonical command that regenerates these figures."""
    parts = ["sweep", "plot", args.sweep_dir, "--kind", args.kind]
    for flag, value in (("--metric", args.metric), ("--facet", args.facet), ("--lr-units", args.lr_units),
                        ("--lr", args.lr), ("--step", args.step),
                        ("--batch-size", getattr(args, "batch_size", None)), ("--format", args.format)):
        if value is not None:
            parts += [flag, str(value)]
    parts += style_argv(args)
    parts += [flag for flag, on in (("--annotate", args.annotate), ("--own-scale", args.own_scale)) if on]
    if getattr(args, "title", None):
        parts += ["--title", args.title]
    for item in getattr(args, "meta", None) or []:
        parts += ["--meta", item]
    return shlex.join(parts)


def _meta(items: list[str]) -> dict[str, str]:
    from sweep.config import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta {item}: expected KEY=VALUE")
        out[key] = value
    return out


def _save(fig, out_dir: Path, name: str, formats: list[str], sidecar: dict, dpi: float = 150) -> list[Path]:
    import matplotlib.pyplot as plt

    from sweep import store

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        store.atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi))
        written.append(path)
    meta = out_dir / f"{name}.json"
    store.atomic_write_json(meta, {**sidecar, "figure": name, "files": [p.name for p in written]})
    plt.close(fig)
    return written + [meta]


def command(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # the CLI writes files (no display on a cluster node); `import sweep.plot` alone does not
    from sweep import aggregate as agg
    from sweep import plot
    from sweep.commands.aggregate import report_warnings
    from sweep.config import ConfigError

    report_warnings()
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise ConfigError(f"--format {args.format}: allowed png, pdf, svg (comma-separated)")
    _check_style(args)
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
    from sweep.config import ConfigError

    refused, figures = [], requested(args, summary, traces)
    for name, build in figures:
        with style_context(args):
            try:
                fig = build()
            except ConfigError as exc:
                if args.kind != "all":
                    raise
                refused.append(exc)  # --kind all: one figure the data cannot make does not stop the rest
                print(f"warning: {name} not drawn: {exc}", file=sys.stderr)
                continue
            if title:
                plot.add_title_line(fig, title)
            resize(fig, getattr(args, "width", None), getattr(args, "height", None))
            paths = _save(fig, out_dir, name, formats, sidecar, dpi=getattr(args, "dpi", None) or 150)
        for path in paths:
            print(path)
    if refused and len(refused) == len(figures):
        raise refused[0]
    return 0
