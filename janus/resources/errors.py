"""The one mapping from domain errors to HTTP, and the one error body shape."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

from janus import metrics
from janus.admission import (
    DatabaseUnavailable,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    NoActiveConfig,
    ServicePaused,
    UnknownUser,
    UserBusy,
)
from janus.schemas.answers import ErrorSchema

log = logging.getLogger("janus")

# The WWW-Authenticate challenge every 401 about the user carries (RFC 9110 requires one):
# the credentials a caller must send are a Janus user's id in the X-User-ID header.
USER_CHALLENGE = ['X-User-ID realm="janus"']
# The challenge of a 401 about an API key: the key goes in Authorization, as a bearer token.
KEY_CHALLENGE = ['Bearer realm="janus"']

ERROR = ErrorSchema()


class InvalidBody(falcon.HTTPBadRequest):
    """400 with field-level messages under `errors`."""

    def __init__(self, description: str, errors: Any = None) -> None:
        super().__init__(description=description)
        self.errors = errors


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Every error body is JSON, whatever the client's Accept header says."""
    body: dict[str, Any] = dict(error.to_dict())
    # Falcon's own 404 and 405 carry only a title; every Janus error has a description.
    body.setdefault("description", f"{req.method} {req.path}: {error.title.partition(' ')[2]}")
    if isinstance(error, InvalidBody) and error.errors is not None:
        body["errors"] = error.errors
    resp.content_type = falcon.MEDIA_JSON
    # ASCII escapes: field names echoed from the request may hold text UTF-8 cannot encode.
    resp.text = json.dumps(ERROR.dump(body))


def _unknown_user(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPUnauthorized(
        description="X-User-ID does not name a Janus user", challenges=USER_CHALLENGE
    )


def _service_paused(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPForbidden(description="service paused")


def _no_active_config(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPForbidden(description="no active config")


def _idempotency_key_in_use(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPConflict(
        description="a request with this Idempotency-Key is still being decided; retry shortly"
    )


def _idempotency_key_reused(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPUnprocessableEntity(
        description="this Idempotency-Key was already used for a different request"
    )


def _database_unavailable(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    assert isinstance(error, DatabaseUnavailable)
    log.warning("database unavailable: %s", error)
    metrics.count_unavailable(error.cause)
    raise falcon.HTTPServiceUnavailable(
        description="the database is unavailable or busy; retry shortly",
        retry_after=error.retry_after,
    )


def _user_busy(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    raise falcon.HTTPTooManyRequests(description=str(error), retry_after=1)


def _unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    if isinstance(error, falcon.HTTPError):
        raise error
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(description="an unexpected error occurred")


def add_error_handlers(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register the domain-to-HTTP mapping and the JSON error serializer on `app`."""
    app.set_error_serializer(serialize_error)
    # Falcon picks the most specific handler, so the catch-all stays a fallback.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(UnknownUser, _unknown_user)
    app.add_error_handler(ServicePaused, _service_paused)
    app.add_error_handler(NoActiveConfig, _no_active_config)
    app.add_error_handler(IdempotencyKeyInUse, _idempotency_key_in_use)
    app.add_error_handler(IdempotencyKeyReused, _idempotency_key_reused)
    app.add_error_handler(DatabaseUnavailable, _database_unavailable)
    app.add_error_handler(UserBusy, _user_busy)
