"""`sweep status <sweep dir>`: runs counted by state (records + SLURM job states) and a phase
diagram in characters, readable over ssh while the sweep is still running."""
from __future__ import annotations

import argparse
import shlex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="results/<sweep_name>")
    parser.add_argument("--metric", default="best_test_acc", help="shading of converged cells (default best_test_acc)")
    parser.add_argument("--no-diagram", action="store_true", help="counts only")
    parser.add_argument("--watch", nargs="?", type=float, const=10.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until no run is pending or running; Ctrl-C stops")


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
    return "\n".join(parts), bool(status.counts.get("pending") or status.counts.get("running"))


def command(args: argparse.Namespace) -> int:
    import sys
    import time

    text, busy = render(args)
    print(text)
    while args.watch and busy:
        time.sleep(max(1.0, args.watch))
        text, busy = render(args)
        if sys.stdout.isatty():
            print("\033[2J\033[H", end="")  # clear the screen, like watch(1)
        print(f"{time.strftime('%H:%M:%S')}  (every {args.watch:g} s; Ctrl-C stops)\n{text}", flush=True)
    return 0
