"""How a command fails: one line on stderr and an exit status, 2 for usage and 1 for the rest."""

from __future__ import annotations

from janus.admission import (
    DatabaseRefused,
    DatabaseUnavailable,
    NoActiveConfig,
    SchemaMissing,
    UnknownUser,
)
from janus.cli.text import one_line
from janus.settings import SettingsError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure to report as one line, with the exit status it deserves."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class UsageError(CommandError):
    """The command line or the input it names is wrong; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def failure(error: Exception) -> tuple[str, int]:
    """The one-line message and exit status for an expected failure."""
    match error:
        case CommandError():
            return str(error), error.exit_status
        case SettingsError():
            return str(error), EXIT_USAGE
        case UnknownUser():
            return "unknown user (no Janus user has this id)", EXIT_FAILED
        case NoActiveConfig():
            return "the user has no active config (set one with 'janus config set')", EXIT_FAILED
        case DatabaseUnavailable():
            # The driver's own words (refused, timed out, bad password) say what to fix.
            detail = one_line(error.detail or str(error))
            return f"database unavailable: {detail}", EXIT_FAILED
        case SchemaMissing():
            detail = one_line(str(error))
            return f"database error: {detail} (has 'alembic upgrade head' run?)", EXIT_FAILED
        case DatabaseRefused():
            return f"database error: {one_line(str(error))}", EXIT_FAILED
        case _:
            return one_line(str(error)), EXIT_FAILED
