"""`sweep figures NAME [overrides...] [--scale quick|paper] [--submit] [--dry-run] [--plot-only]`: one
command per paper figure; `sweep figures --list` names them all.

Composes the figure's experiments (sweep/figures.py) at the chosen scale with the extra overrides (which
reach every experiment of the figure and win over the scale's own), trains them here like `sweep run`
(until-divergence included) or queues them like `sweep submit`, then draws the figure with `sweep plot`'s
own code (same files, same sidecars), titled with the figure, the scale and its reductions.

    sweep figures fig1                                   # quick scale (default): minutes on a laptop CPU
    sweep figures fig1 data=npz data.path=cifar10_subset.npz
    sweep figures fig3 --scale paper --submit cluster=slurm_a100
"""
from __future__ import annotations

import argparse
import shlex

from sweep.figures import FIGURES, SCALES, Figure, get_figure, science_overrides, shown_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="the figure (see --list): " + ", ".join(FIGURES))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every experiment of the figure "
                        "(after the scale's reductions, so they win)")
    parser.add_argument("--scale", default="quick", choices=SCALES,
                        help="quick (default): the documented laptop-CPU reduction; paper: Appendix D's settings")
    parser.add_argument("--list", action="store_true", help="list every figure with its description and scales")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--submit", action="store_true",
                      help="queue the runs like `sweep submit` (cluster=... in the overrides) instead of training here")
    mode.add_argument("--plot-only", action="store_true", help="draw from the finished runs; train nothing")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and cohorts (or the submission); "
                        "train and draw nothing")
    parser.add_argument("--format", default="png,pdf", help="figure file formats (as `sweep plot --format`)")
    from sweep.commands.plot import add_style_arguments

    add_style_arguments(parser)  # --width --height --dpi --style --context, handed to `sweep plot`


def listing() -> str:
    """One block per figure: name, description, and what each scale runs."""
    lines = []
    for fig in FIGURES.values():
        lines.append(f"{fig.name:8s} {fig.description}")
        lines.append(f"{'':8s}   paper: {fig.paper or 'Appendix D settings'}  [experiments: "
                     f"{', '.join(fig.experiments)}]")
        quick = fig.scale("quick")
        minutes = f" (~{quick.minutes:g} min on a 2-core CPU)" if quick.minutes else ""
        lines.append(f"{'':8s}   quick: {quick.reductions}{minutes}")
        if fig.missing():
            lines.append(f"{'':8s}   needs: {', '.join(fig.missing())} (not in this version's config schema yet)")
    return "\n".join(lines)


def sweep_dirs(fig: Figure, scale: str, overrides: list[str]) -> list[str]:
    """The sweep folders the figure's experiments write to, in order, without duplicates."""
    from sweep import store
    from sweep.grid import compose, is_sweep

    dirs = []
    for exp in fig.experiments:
        cfg = compose([o for o in fig.overrides(exp, scale, overrides) if not is_sweep(o)])
        dirs.append(str(store.sweep_dir(cfg.results_dir, cfg.sweep_name)))
    return list(dict.fromkeys(dirs))


def _train(fig: Figure, scale: str, overrides: list[str], dry_run: bool) -> int:
    from sweep.commands.run import print_plan, run_grid
    from sweep.grid import expand

    failures = 0
    for exp in fig.experiments:
        runs = expand(fig.overrides(exp, scale, overrides))
        print(f"[{exp}] ", end="")
        sweep, force = print_plan(runs, dry_run)
        if not dry_run:
            failures += run_grid(runs, sweep, force)
    return failures


def _submit(fig: Figure, scale: str, overrides: list[str], dry_run: bool) -> int:
    from sweep.commands import submit

    rc = 0
    for exp in fig.experiments:
        exp_overrides = fig.overrides(exp, scale, overrides)
        print(f"[{exp}] sweep submit {shlex.join(exp_overrides)}")
        rc |= submit.command(argparse.Namespace(overrides=exp_overrides, dry_run=dry_run))
    if not dry_run:
        later = shlex.join(["sweep", "figures", fig.name, *overrides, "--scale", scale, "--plot-only"])
        print(f"queued; the lr axis grows only when runs finish here (until_divergence is local). "
              f"When the jobs are done: {later}")
    return rc


def plot_extras(fig: Figure, scale: str, overrides: list[str]) -> tuple[str, ...]:
    """`sweep plot` options that title the figure and record figure, scale and reductions in its sidecar."""
    s = fig.scale(scale)
    meta = {"paper_figure": fig.name, "scale": scale, "reductions": s.reductions,
            "extra_overrides": " ".join(shown_overrides(overrides)), "experiments": ",".join(fig.experiments)}
    if s.minutes is not None:
        meta["estimated_cpu_minutes"] = f"{s.minutes:g}"
    extras = ["--title", fig.title(scale, overrides)]
    for key, value in meta.items():
        extras += ["--meta", f"{key}={value}"]
    return tuple(extras)


def plot_argvs(fig: Figure, scale: str, overrides: list[str], formats: str,
               style: tuple[str, ...] = ()) -> list[list[str]]:
    """Every `sweep plot` argv of the figure (`style`: its --width/--height/--dpi/--style/--context words)."""
    extras = plot_extras(fig, scale, overrides) + tuple(style)
    return [call.argv(d, formats, extras) for d in sweep_dirs(fig, scale, overrides) for call in fig.plots]


def draw(fig: Figure, scale: str, overrides: list[str], formats: str, style: tuple[str, ...] = ()) -> None:
    """Every plot of the figure through `sweep plot` itself."""
    from sweep.commands import plot as plot_command

    for argv in plot_argvs(fig, scale, overrides, formats, style):
        parser = argparse.ArgumentParser(prog="sweep plot")
        plot_command.add_arguments(parser)
        plot_command.command(parser.parse_args(argv))


def command(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        print(listing())
        return 0
    fig = get_figure(args.name)
    overrides = list(args.overrides)
    scale = args.scale
    from sweep.commands.plot import style_argv

    style = tuple(style_argv(args))
    print(f"{fig.name} [{scale}]: {fig.description}")
    print(f"  {fig.title(scale, overrides)}")
    if not args.plot_only:
        fig.check_available()  # a diagnostic figure whose probe switch this version lacks: one clear line
    if args.dry_run:
        for argv in plot_argvs(fig, scale, overrides, args.format, style):
            print(f"  would draw: sweep plot {shlex.join(argv)}")
    if args.submit:
        return _submit(fig, scale, overrides, args.dry_run)
    failures = 0 if args.plot_only else _train(fig, scale, overrides, args.dry_run)
    if not args.dry_run:
        draw(fig, scale, overrides, args.format, style)
    return 1 if failures else 0
