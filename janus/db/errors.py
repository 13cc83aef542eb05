"""Driver errors translated to domain errors, in this one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import PoolTimeout

from janus.admission import (
    DatabaseRefused,
    DatabaseUnavailable,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    NoActiveConfig,
    NoDecision,
    SchemaMissing,
    ServicePaused,
    UnavailableCause,
    UnknownUser,
)
from janus.configs import UnknownVersion

# Raised by the functions of janus/db/sql/ (admit_jobs, admit_jobs_once, activate_config).
_BY_SQLSTATE: dict[str, type[NoDecision]] = {
    "J0U01": UnknownUser,
    "J0C01": NoActiveConfig,
    "J0P01": ServicePaused,
    "J0K09": IdempotencyKeyInUse,
    "J0K22": IdempotencyKeyReused,
}
# Raised by activate_version(): not about a decision, so not a NoDecision.
_UNKNOWN_VERSION = "J0V01"


@contextmanager
def translated() -> Iterator[None]:
    """Raise every driver error that leaves the block as the domain error it means.

    Every function of janus.db that reaches Postgres runs inside one, so no caller outside
    janus.db ever sees a psycopg exception.
    """
    try:
        yield
    except psycopg.Error as error:
        if error.sqlstate == _UNKNOWN_VERSION:
            raise UnknownVersion(str(error.diag.message_primary)) from error
        raise domain_error(error) from error


def unavailable_cause(error: psycopg.OperationalError) -> UnavailableCause:
    """Which of the closed set of reasons for a 503 a transient driver error is."""
    if isinstance(error, PoolTimeout):
        return "pool_timeout"
    if isinstance(error, psycopg.errors.QueryCanceled):
        return "statement_timeout"
    if isinstance(error, psycopg.errors.LockNotAvailable):
        return "lock_timeout"
    return "connection"


def domain_error(error: psycopg.Error) -> NoDecision:
    """The domain error `error` means."""
    message = str(error.diag.message_primary or error)
    condition = _BY_SQLSTATE.get(error.sqlstate or "")
    if condition is not None:
        return condition(message)
    # Connection failures, pool timeouts, statement and lock timeouts: all transient.
    if isinstance(error, psycopg.OperationalError):
        return DatabaseUnavailable(
            type(error).__name__, detail=str(error), cause=unavailable_cause(error)
        )
    if isinstance(error, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return SchemaMissing(message)
    return DatabaseRefused(message)
