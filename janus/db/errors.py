"""Driver errors translated to domain errors, in this one place."""

from __future__ import annotations

import psycopg

from janus.admission import (
    DatabaseUnavailable,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    NoActiveConfig,
    NoDecision,
    ServicePaused,
    UnknownUser,
)

# Raised by the functions of janus/db/sql/ (admit_jobs, admit_jobs_once, activate_config).
_BY_SQLSTATE: dict[str, type[NoDecision]] = {
    "J0U01": UnknownUser,
    "J0C01": NoActiveConfig,
    "J0P01": ServicePaused,
    "J0K09": IdempotencyKeyInUse,
    "J0K22": IdempotencyKeyReused,
}


def translate(error: psycopg.Error) -> Exception:
    """The domain error for `error`, or `error` itself when it is a bug, not a condition."""
    domain_error = _BY_SQLSTATE.get(error.sqlstate or "")
    if domain_error is not None:
        return domain_error(str(error.diag.message_primary or error))
    # Connection failures, pool timeouts, statement and lock timeouts: all transient.
    if isinstance(error, psycopg.OperationalError):
        return DatabaseUnavailable(type(error).__name__)
    return error
