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
from janus.keys import TooManyKeys

# Raised by the functions of janus/db/sql/ (admit_jobs_once, activate_config), and answered
# as rows by admit_requests().
_BY_SQLSTATE: dict[str, type[NoDecision]] = {
    "J0U01": UnknownUser,
    "J0C01": NoActiveConfig,
    "J0P01": ServicePaused,
    "J0K09": IdempotencyKeyInUse,
    "J0K22": IdempotencyKeyReused,
}
# What admit_requests() answers a refused request with (its `error` column), in the words
# admit_jobs_once() raises it with.
_REFUSALS = {
    "J0U01": "unknown user",
    "J0C01": "no active config",
    "J0P01": "service paused",
    "J0K09": "idempotency key in use",
    "J0K22": "idempotency key reused",
}
# Raised by activate_version(): not about a decision, so not a NoDecision.
_UNKNOWN_VERSION = "J0V01"
# Raised by create_api_key(): the user holds as many keys as it may.
_TOO_MANY_KEYS = "J0A01"


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
        if error.sqlstate == _TOO_MANY_KEYS:
            raise TooManyKeys(str(error.diag.message_primary)) from error
        raise domain_error(error) from error


def refusal(sqlstate: str) -> NoDecision:
    """The NoDecision of one of admit_requests()'s error rows: what the request would have
    raised alone."""
    return _BY_SQLSTATE[sqlstate](_REFUSALS[sqlstate])


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
