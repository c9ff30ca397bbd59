"""`sweep figures NAME [overrides...] [--submit] [--dry-run] [--plot-only]`: one command per paper figure.

Composes the figure's experiments (sweep/figures.py) with the extra overrides, trains them here like
`sweep run` (until-divergence included) or queues them like `sweep submit`, then draws the figure with
`sweep plot`'s own code (same files, same sidecars). Overrides scale a figure down for a preview:
`sweep figures fig1 steps=200 data.subset=1000`, `sweep figures fig3 data=npz data.path=... steps=50`.
"""
from __future__ import annotations

import argparse
import shlex

from sweep.figures import FIGURES, Figure, get_figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"the figure: {', '.join(FIGURES)}")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every experiment of the figure")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--submit", action="store_true",
                      help="queue the runs like `sweep submit` (cluster=... in the overrides) instead of training here")
    mode.add_argument("--plot-only", action="store_true", help="draw from the finished runs; train nothing")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and cohorts (or the submission); "
                        "train and draw nothing")
    parser.add_argument("--format", default="png,pdf", help="figure file formats (as `sweep plot --format`)")


def experiment_overrides(experiment: str, overrides: list[str]) -> list[str]:
    return [f"experiment={experiment}", *overrides]


def sweep_dirs(fig: Figure, overrides: list[str]) -> list[str]:
    """The sweep folders the figure's experiments write to, in order, without duplicates."""
    from sweep import store
    from sweep.grid import _is_sweep, compose

    dirs = []
    for exp in fig.experiments:
        cfg = compose([o for o in experiment_overrides(exp, overrides) if not _is_sweep(o)])
        dirs.append(str(store.sweep_dir(cfg.results_dir, cfg.sweep_name)))
    return list(dict.fromkeys(dirs))


def _train(fig: Figure, overrides: list[str], dry_run: bool) -> int:
    from sweep.commands.run import print_plan, run_grid
    from sweep.grid import expand

    failures = 0
    for exp in fig.experiments:
        runs = expand(experiment_overrides(exp, overrides))
        print(f"[{exp}] ", end="")
        sweep, force = print_plan(runs, dry_run)
        if not dry_run:
            failures += run_grid(runs, sweep, force)
    return failures


def _submit(fig: Figure, overrides: list[str], dry_run: bool) -> int:
    from sweep.commands import submit

    rc = 0
    for exp in fig.experiments:
        print(f"[{exp}] sweep submit {shlex.join(experiment_overrides(exp, overrides))}")
        rc |= submit.command(argparse.Namespace(overrides=experiment_overrides(exp, overrides), dry_run=dry_run))
    if not dry_run:
        later = shlex.join(["sweep", "figures", fig.name, *overrides, "--plot-only"])
        print(f"queued; the lr axis grows only when runs finish here (until_divergence is local). "
              f"When the jobs are done: {later}")
    return rc


def draw(fig: Figure, overrides: list[str], formats: str) -> None:
    """Every plot of the figure through `sweep plot` itself."""
    from sweep.commands import plot as plot_command

    for sweep_dir in sweep_dirs(fig, overrides):
        for call in fig.plots:
            parser = argparse.ArgumentParser(prog="sweep plot")
            plot_command.add_arguments(parser)
            plot_command.command(parser.parse_args(call.argv(sweep_dir, formats)))


def command(args: argparse.Namespace) -> int:
    fig = get_figure(args.name)
    overrides = list(args.overrides)
    print(f"{fig.name}: {fig.description}")
    if args.dry_run:
        for sweep_dir in sweep_dirs(fig, overrides):
            for call in fig.plots:
                print(f"  would draw: sweep plot {shlex.join(call.argv(sweep_dir, args.format))}")
    if args.submit:
        return _submit(fig, overrides, args.dry_run)
    failures = 0 if args.plot_only else _train(fig, overrides, args.dry_run)
    if not args.dry_run:
        draw(fig, overrides, args.format)
    return 1 if failures else 0
