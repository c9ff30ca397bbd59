"""`sweep status <sweep dir>`: runs counted by state (records + SLURM job states) and a phase
diagram in characters, readable over ssh while the sweep is still running."""
from __future__ import annotations

import argparse
import shlex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="results/<sweep_name>")
    parser.add_argument("--metric", default="best_test_acc", help="shading of converged cells (default best_test_acc)")
    parser.add_argument("--no-diagram", action="store_true", help="counts only")


def command(args: argparse.Namespace) -> int:
    from sweep.dispatch.status import format_status, summary_frame, sweep_status

    status = sweep_status(args.sweep_dir)
    print(format_status(status))
    if not args.no_diagram and status.states:
        from sweep.plot import text_phase_diagram

        frame = summary_frame(status)
        if len(frame):
            print()
            print(text_phase_diagram(frame, metric=args.metric))
    print(f"\ndraw the figure: sweep plot {shlex.quote(str(args.sweep_dir))}")
    return 0
