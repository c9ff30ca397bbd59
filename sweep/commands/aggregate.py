"""`sweep aggregate <sweep_dir>`: run records -> summary.parquet + traces.parquet (incremental)."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="the sweep folder, results/<sweep_name> (holds runs/)")
    parser.add_argument("--full", action="store_true", help="re-read every record, ignoring the index")


class _StderrLine(logging.Handler):
    """One 'warning: ...' line on the stderr of the moment (not the one seen at import)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"warning: {record.getMessage()}", file=sys.stderr)


def report_warnings() -> None:
    """Corrupt-record warnings go to stderr as one plain line each."""
    from sweep import aggregate as agg

    logger = logging.getLogger(agg.__name__)
    if not any(isinstance(h, _StderrLine) for h in logger.handlers):
        logger.addHandler(_StderrLine(logging.WARNING))


def command(args: argparse.Namespace) -> int:
    from sweep import aggregate as agg  # pandas: imported to work, not to build `--help`

    report_warnings()
    start = time.perf_counter()
    summary, traces = agg.aggregate(args.sweep_dir, full=args.full)
    sweep_dir = Path(args.sweep_dir)
    counts = summary["outcome"].value_counts().to_dict() if len(summary) else {}
    by_outcome = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no finished runs yet"
    print(f"{len(summary)} runs ({by_outcome}) in {time.perf_counter() - start:.1f}s")
    print(f"  {sweep_dir / agg.SUMMARY_FILE}: {len(summary)} rows")
    print(f"  {sweep_dir / agg.TRACES_FILE}: {len(traces)} rows")
    return 0
