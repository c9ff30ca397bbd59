"""`sweep export tensorboard <sweep_dir> [--out DIR]`: a finished sweep's traces and summaries as TensorBoard
event files, offline (`tensorboard --logdir DIR` to look). Needs the extra: pip install 'tensorboard>=2.14'."""
from __future__ import annotations

import argparse
import shlex

FORMATS = ("tensorboard",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="the tracker: tensorboard (pip install 'tensorboard>=2.14')")
    parser.add_argument("sweep_dir", help="the sweep folder, results/<sweep_name> (holds runs/)")
    parser.add_argument("--out", default=None, help="where to write (default: <sweep_dir>/tensorboard)")


def command(args: argparse.Namespace) -> int:
    import sys

    from sweep.export import export_tensorboard

    result = export_tensorboard(args.sweep_dir, args.out)
    for line in result.skipped:
        print(f"warning: skipped {line}", file=sys.stderr)
    print(f"exported {result.runs} runs ({result.points} trace points) -> {result.out}")
    print(f"view: tensorboard --logdir {shlex.quote(str(result.out))}")
    return 0
