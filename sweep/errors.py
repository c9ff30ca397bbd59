"""User errors: mistakes the user can fix. The CLI prints them as one line, never a traceback."""
from __future__ import annotations

from sweep.config import ConfigError
from sweep.data.base import DataError


class SlurmError(RuntimeError):
    """SLURM is unreachable or refused the job (bad partition, account...)."""


class GridError(ValueError):
    """A grid expands to nothing, or to more runs than allowed."""


UserError = (ConfigError, DataError, SlurmError, GridError)


def format_user_error(exc: BaseException) -> str:
    """First line of the message only: the rest is detail for logs."""
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]
