"""`sweep status <sweep dir>`: runs counted by state (records + SLURM job states) and a phase
diagram in characters, readable over ssh while the sweep is still running."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", nargs="?", default=None,
                        help="results/<sweep_name>; without it, the sweeps under ./results, a line each")
    parser.add_argument("--metric", default="best_test_acc", help="shading of converged cells (default best_test_acc)")
    parser.add_argument("--no-diagram", action="store_true", help="counts only")
    parser.add_argument("--watch", nargs="?", type=float, const=10.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until no run is pending or running (runs "
                             "that wait for a re-run do not count); Ctrl-C stops")


def render(args: argparse.Namespace) -> tuple[str, bool]:
    """The status text, and whether work is still pending or running."""
    from sweep.dispatch.status import format_status, summary_frame, sweep_status

    status = sweep_status(args.sweep_dir)
    parts = [format_status(status)]
    if not args.no_diagram and status.states:
        from sweep.plot import text_phase_diagram

        frame = summary_frame(status)
        if len(frame):
            parts += ["", text_phase_diagram(frame, metric=args.metric)]
    parts.append(f"\ndraw the figure: sweep plot {shlex.quote(str(args.sweep_dir))}")
    waiting = status.counts.get("pending", 0) - len(status.not_started)  # not_started: only a re-run trains them
    return "\n".join(parts), bool(waiting or status.counts.get("running"))


def list_sweeps(results: Path) -> str:
    """One line per sweep folder under `results` (one holding runs/): its runs counted by state."""
    from sweep.dispatch.status import sweep_status

    sweeps = sorted(p for p in results.iterdir() if (p / "runs").is_dir()) if results.is_dir() else []
    if not sweeps:
        return (f"no sweeps under {results}/ (a sweep is a folder holding runs/); start one with sweep run ..., "
                f"or name a sweep folder: sweep status PATH")
    lines = [f"{len(sweeps)} sweeps under {results}/ (details: sweep status {results}/NAME):"]
    width = max(len(str(p)) for p in sweeps)
    for sweep in sweeps:
        counts = sweep_status(sweep).counts
        states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no runs yet"
        lines.append(f"  {str(sweep):<{width}}  {sum(counts.values()):>5} runs: {states}")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    import sys
    import time

    if args.sweep_dir is None:
        from sweep.config import Config

        if args.watch:
            print("error: --watch follows one sweep: sweep status results/NAME --watch", file=sys.stderr)
            return 2
        print(list_sweeps(Path(Config.results_dir)))
        return 0
    text, busy = render(args)
    print(text)
    while args.watch and busy:
        time.sleep(max(1.0, args.watch))
        text, busy = render(args)
        if sys.stdout.isatty():
            print("\033[2J\033[H", end="")  # clear the screen, like watch(1)
        print(f"{time.strftime('%H:%M:%S')}  (every {args.watch:g} s; Ctrl-C stops)\n{text}", flush=True)
    return 0
