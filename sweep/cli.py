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
    "export": ("sweep.commands.export", "export a sweep's traces and summaries: sweep export tensorboard DIR --out D"),
    "completion": ("sweep.commands.completion", "print a shell completion script: eval \"$(sweep completion bash)\""),
}


def chosen_subcommand(argv: list[str]) -> str | None:
    """The subcommand named on a command line (the first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `sweep` parser. With `argv`, only the subcommand it names gets its arguments (so its module
    alone is imported: `sweep --help` imports none and starts fast); without, every subcommand does."""
    parser = argparse.ArgumentParser(
        prog="sweep", description="Learning-rate warmup phase diagrams (Hydra + JAX + SLURM)."
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    only = chosen_subcommand(argv) if argv is not None else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if argv is None or name == only:
            importlib.import_module(module).add_arguments(p)
    return parser


_TRANSLITERATE = {"μ": "mu", "µ": "mu", "λ": "lambda", "η": "eta", "β": "beta", "×": "x", "−": "-", "–": "-",
                  "—": "-", "…": "...", "≈": "~", "≤": "<=", "≥": ">=", "→": "->", "₀": "0", "₁": "1", "₂": "2",
                  "²": "^2", "⁻": "^-", "¹": "1", "·": "*", "█": "#", "░": ".", "▒": ":", "▓": "%"}


def _ascii_fallback(err: UnicodeError) -> tuple[str, int]:
    """codecs error handler: Greek letters and symbols as ASCII words (μP -> muP), anything else '?'."""
    text = err.object[err.start:err.end]
    return "".join(_TRANSLITERATE.get(ch, "?") for ch in text), err.end


def ensure_encodable_output() -> None:
    """Output that the terminal's encoding cannot hold (PYTHONIOENCODING=ascii, LANG=C on old systems)
    is transliterated instead of raising UnicodeEncodeError: μP prints as muP."""
    import codecs

    try:
        codecs.lookup_error("sweep-ascii")
    except LookupError:
        codecs.register_error("sweep-ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower()
        if not encoding or encoding.replace("-", "").replace("_", "") in ("utf8", "utf16", "utf32"):
            continue
        try:
            "μλη×".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="sweep-ascii")


_STORAGE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Hydra overrides may come after an option (`sweep figures fig9 --plot-only data=npz`): plain
    argparse stops the `overrides` list at the first option and rejects what follows it."""
    args, extra = parser.parse_known_args(argv)
    takes_overrides = isinstance(getattr(args, "overrides", None), list)
    unknown = [e for e in extra if e.startswith("-") or not takes_overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    from sweep import termination
    from sweep.termination import Terminated

    argv = sys.argv[1:] if argv is None else list(argv)
    ensure_encodable_output()
    if argv[:1] == ["__complete"]:  # the shell's tab completion (hidden): fast, imports no jax/pandas
        from sweep.completion import main as complete

        return complete(argv[1:])
    args = _parse(build_parser(argv), argv)
    from sweep.errors import UserError, format_user_error, install_warning_format  # after parsing: `--help` needs no hydra

    install_warning_format()

    termination.install()
    try:
        return int(importlib.import_module(args._module).command(args) or 0)
    except (KeyboardInterrupt, Terminated) as exc:
        what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"{what}; finished runs are kept, the same command resumes the rest", file=sys.stderr)
        if termination.abandoned_compute():  # a compiled call still runs in its thread: end now
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
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
