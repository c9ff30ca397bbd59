"""The `sweep` command. Each subcommand lives in its own module with `add_arguments` and `command`;
this file only routes, and turns user errors into one line on stderr with exit code 2."""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
from pathlib import Path

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("sweep.commands.run", "run one config or a grid locally: sweep run [hydra overrides...]"),
    "submit": ("sweep.commands.submit", "submit a grid to SLURM through submitit and return"),
    "status": ("sweep.commands.status", "counts by state and a text phase diagram of a sweep"),
    "aggregate": ("sweep.commands.aggregate", "records -> summary.parquet and traces.parquet"),
    "plot": ("sweep.commands.plot", "phase-diagram heatmaps and trajectories of a sweep"),
    "figures": ("sweep.commands.figures", "regenerate a paper figure: sweep figures NAME"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep", description="Learning-rate warmup phase diagrams (Hydra + JAX + SLURM)."
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


_STORAGE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class Terminated(BaseException):
    """SIGTERM (`kill`, SLURM's scancel and time limit outside submitit) seen as an interrupt."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    from sweep.errors import UserError, format_user_error

    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(importlib.import_module(args._module).command(args) or 0)
    except (KeyboardInterrupt, Terminated) as exc:
        what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"{what}; finished runs are kept, the same command resumes the rest", file=sys.stderr)
        return code
    except UserError as exc:  # one line, no traceback
        print(f"error: {format_user_error(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sweep run --dry-run | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRORS:
            raise
        where = Path(str(exc.filename or "the results folder"))
        if where.name.startswith(".") and where.name.endswith(".tmp"):  # our atomic writer's temp file
            where = where.parent
        print(f"error: cannot write in {where}: {exc.strerror}; free space, fix its permissions, or work "
              f"on a copy of the sweep folder in a writable place", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
