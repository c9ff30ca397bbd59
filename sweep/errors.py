"""User errors, all in this module: mistakes the user can fix. The CLI prints them as one line, never
a traceback. Modules raise these classes; nothing here imports the rest of the package."""
from __future__ import annotations

import sys
import warnings


class ConfigError(ValueError):
    """A user error in the configuration (unknown key, bad value); the CLI prints it as one line."""


class DataError(RuntimeError):
    """A data set is missing or malformed; the message says how to provide it (one line)."""


class SweepDirError(ConfigError):
    """The path given is not a sweep directory (no runs/ folder)."""


class SlurmError(RuntimeError):
    """SLURM is unreachable or refused the job (bad partition, account...)."""


class GridError(ValueError):
    """A grid expands to nothing, or to more runs than allowed."""


class SweepWarning(UserWarning):
    """Something the user can fix that does not stop the run (a probe that will need many GB);
    printed as one `warning: ...` line by `install_warning_format`."""


UserError = (ConfigError, DataError, SlurmError, GridError)  # SweepDirError is a ConfigError


def format_user_error(exc: BaseException) -> str:
    """First line of the message only: the rest is detail for logs."""
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


def install_warning_format() -> None:
    """Print this package's warnings as one `warning: message` line (no file, line or source line);
    every other warning keeps Python's format."""
    original = warnings.showwarning
    if getattr(original, "_sweep", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SweepWarning):
            print(f"warning: {str(message).splitlines()[0]}", file=file or sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    show._sweep = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def registered(table: dict, key: str, setting: str):
    """table[key] of a registry (optimizers, backends), or a one-line ConfigError naming the setting and
    what is allowed."""
    try:
        return table[key]
    except KeyError:
        raise ConfigError(f"{setting}={key}: allowed {', '.join(table)}") from None
