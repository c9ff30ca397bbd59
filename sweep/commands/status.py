"""`sweep status`: not built yet (see the open issues)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs="*")


def command(args: argparse.Namespace) -> int:
    raise SystemExit("sweep status: not available in this version yet")
