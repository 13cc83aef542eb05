"""What the operations of the OpenAPI document share: the API's description and tags, the
headers and parameters they name, the path parameters, and every error answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from janus.configs import MAX_VERSION
from janus.history import STATES
from janus.reasons import REASON_CODE_HEADER, ReasonCode

OPENAPI_VERSION = "3.1.0"

DESCRIPTION = """\
Janus decides at once whether a background job that calls rate-limited external services \
may run now, and queues accepted jobs for workers. docs/api.md is the full reference: how a \
job is decided, the queue, configs.

Every route but /health, /health/ready, /openapi.json and /metrics needs its user: an API \
key (`Authorization: Bearer janus_...`) that holds one of the route's scopes, or `X-User-ID`, \
a Janus user's id, for a user that has never had a key. When the service runs with a service \
token, every route but /health and /health/ready needs it too (`Authorization: Bearer \
<token>`), but for a user's routes called with a key. Bodies are UTF-8 JSON objects of at \
most 1 MiB; a repeated key, `NaN` or `Infinity` is refused with 400, and so is an integer \
written with a fraction or an exponent (`8.0`, `1e3`). Every answer carries `X-Request-ID`, \
and every error the same body: `{"title", "description"}`, with `errors` by field when a body is \
refused. A method a route does not have is answered 405 with `Allow`; a path no route \
matches, 404.
"""

TAGS = [
    {"name": "Health", "description": "Liveness, readiness, metrics, and this document."},
    {"name": "Jobs", "description": "Admission: single jobs, partial and atomic batches."},
    {"name": "Queue", "description": "Workers: claim accepted jobs, then end their leases."},
    {"name": "Config", "description": "The user's own config versions."},
    {"name": "Keys", "description": "The user's API keys: make, list, revoke (scope admin)."},
    {"name": "Dashboard", "description": "The page a person uses in a browser, and its files."},
]

# An sf-string naming a dependency, then the item's Integer parameters: the draft's
# structured-field lists (janus/resources/ratelimit.py writes them).
_SF_NAME = r'"(?:[ !#-\[\]-~]|\\["\\])*"'


def _sf_list_pattern(parameters: str) -> str:
    """One or more `"name";parameters` items, separated by `, ` as RFC 9651 writes lists."""
    item = _SF_NAME + parameters
    return f"^{item}(?:, {item})*$"


# Response headers by name; an Answer names the ones it carries.
HEADERS: Mapping[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the client's own when well formed, else a new one.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:/+=@-]{1,128}$"},
    },
    "Retry-After": {
        "description": "Whole seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "ETag": {
        "description": 'The config version, quoted (`"3"`): send it back in If-Match.',
        "schema": {"type": "string", "pattern": '^"[1-9][0-9]*"$'},
    },
    "RateLimit-Policy": {
        "description": "One policy per bucket the request named (draft-ietf-httpapi-ratelimit-"
        "headers): the dependency's name, `q` its capacity, `w` the seconds a full refill"
        " takes (absent when it never refills). A name that is not printable ASCII is left"
        " out; not sent when no bucket is left to tell, nor on a replay.",
        "schema": {
            "type": "string",
            "pattern": _sf_list_pattern(";q=[0-9]{1,15}(?:;w=[0-9]{1,15})?"),
        },
        "example": '"openai";q=6;w=12, "stripe";q=4;w=4',
    },
    "RateLimit": {
        "description": "Each bucket of RateLimit-Policy as the decision left it: `r` its whole"
        " tokens, `t` the seconds until its next token (0 when full, absent when it never"
        " refills).",
        "schema": {
            "type": "string",
            "pattern": _sf_list_pattern(";r=[0-9]{1,15}(?:;t=[0-9]{1,15})?"),
        },
        "example": '"openai";r=4;t=2, "stripe";r=3;t=1',
    },
    REASON_CODE_HEADER: {
        "description": "The rejection's code, for a client that would rather not read the"
        " reason's words: a single job's, or the one of the job that sank an atomic batch (the"
        " first, in request order, rejected for a reason of its own). docs/api.md lists each"
        " code beside its reason; `other` is a code newer than this version of Janus.",
        "schema": {"type": "string", "enum": [code.value for code in ReasonCode]},
    },
    "Idempotent-Replayed": {
        "description": "The original answer to an earlier request with this Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WWW-Authenticate": {
        "description": 'The credentials required: `X-User-ID realm="janus"` or `Bearer`.',
        "schema": {"type": "string"},
    },
}

# Request headers and query parameters by name; an Operation names the ones it reads.
PARAMETERS: Mapping[str, dict[str, Any]] = {
    "X-Request-ID": {
        "in": "header",
        "description": "Echoed, and written on every log line of the request, when it is 1 to"
        " 128 of letters, digits and `. _ : / + = @ -`; anything else is replaced by a new id.",
        "schema": {"type": "string"},
    },
    "Idempotency-Key": {
        "in": "header",
        "description": "1 to 255 printable characters, scoped to the user (else 400). A repeat"
        " of an accepted request within 24 hours gets the original answer and takes no token"
        " (unless `janus prune` dropped the key early: it keeps a user's newest keys only);"
        " the same key with a different body or route is 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "If-Match": {
        "in": "header",
        "description": 'The ETag of the active version (`"3"`, or `3`), or `*` for any: 412'
        " when it is not the active version, and nothing is stored.",
        "schema": {"type": "string", "pattern": '^(\\*|"[1-9][0-9]{0,9}"|[1-9][0-9]{0,9})$'},
    },
    "limit": {
        "in": "query",
        "description": "At most this many items in the page.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
    "cursor": {
        "in": "query",
        "description": "The previous page's `next`; treat it as opaque.",
        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"},
    },
    "change_cursor": {
        "name": "cursor",
        "in": "query",
        "description": "The previous page's `next`; treat it as opaque.",
        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,18}$"},
    },
    "job_cursor": {
        "name": "cursor",
        "in": "query",
        "description": "The previous page's `next`, unchanged (any other text is 400).",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
    },
    "status": {
        "in": "query",
        "description": "Only jobs decided so.",
        "schema": {"type": "string", "enum": ["Accepted", "Rejected"]},
    },
    "state": {
        "in": "query",
        "description": "Only accepted jobs in this state of the queue.",
        "schema": {"type": "string", "enum": list(STATES)},
    },
    "tenant_id": {
        "in": "query",
        "description": "Only this tenant's jobs.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "batch_name": {
        "in": "query",
        "description": "Only the jobs of this batch.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "source": {
        "in": "query",
        "description": "Only jobs sent through this route family.",
        "schema": {"type": "string", "enum": ["dashboard", "system"]},
    },
    "since": {
        "in": "query",
        "description": "Only jobs decided at or after this moment (ISO 8601, with a timezone).",
        "schema": {"type": "string", "format": "date-time"},
    },
    "until": {
        "in": "query",
        "description": "Only jobs decided before this moment (ISO 8601, with a timezone);"
        " later than `since`.",
        "schema": {"type": "string", "format": "date-time"},
    },
}


def _error(
    title: str,
    description: str,
    examples: Mapping[str, str],
    headers: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """An error answer; `headers` beside X-Request-ID, each with whether it is always sent."""
    return {
        "title": title,
        "description": description,
        "examples": examples,
        "headers": {"X-Request-ID": True, **(headers or {})},
    }


# Every error answer: its title, when it is given, and the descriptions it comes with; its
# body is ErrorSchema's.
ERROR_ANSWERS: Mapping[int, dict[str, Any]] = {
    400: _error(
        "400 Bad Request",
        "The body is not valid JSON, or does not match the schema (`errors`, by field), or a"
        " header or query parameter is malformed.",
        {
            "duplicate_key": "the body is not valid JSON: duplicate key 'priority'",
            "schema": "the body does not match the schema",
        },
    ),
    401: _error(
        "401 Unauthorized",
        "X-User-ID is missing, malformed or names no user; or the service token is missing or"
        " wrong.",
        {
            "no_user": "the X-User-ID header is required",
            "unknown_user": "X-User-ID does not name a Janus user",
            "no_token": "a valid service token is required (Authorization: Bearer ...)",
        },
        headers={"WWW-Authenticate": True},
    ),
    403: _error(
        "403 Forbidden",
        "The user's config is paused, or the user has no active config; or the API key lacks"
        " the scope the route needs.",
        {
            "paused": "service paused",
            "no_config": "no active config",
            "scope": "this API key lacks the scope this route needs: work",
        },
    ),
    404: _error(
        "404 Not Found",
        "The user has no such job (a lease call), no active config (GET), or no such version"
        " (activate). A path parameter of the wrong type matches no route: 404 too.",
        {
            "no_job": "no job with this id",
            "no_config": "this user has no active config; PUT /dashboard/config to set one",
            "no_version": "this user has no config version 7",
        },
    ),
    # Answered by the worker itself when the head is late, so X-Request-ID may be missing.
    408: _error(
        "408 Request Timeout",
        "The request did not arrive within the read deadline; nothing was decided.",
        {"late": "the request did not arrive within 10 s"},
        headers={"X-Request-ID": False},
    ),
    409: _error(
        "409 Conflict",
        "A request with the same Idempotency-Key is still being decided; or (a lease call) the"
        " lease_token is not the job's current lease, and nothing was changed.",
        {
            "in_flight": "a request with this Idempotency-Key is still being decided; retry"
            " shortly",
            "stale_lease": "this lease_token is not the job's current lease (expired, taken over"
            " by a later claim, or already ended); nothing was changed",
        },
    ),
    412: _error(
        "412 Precondition Failed",
        "If-Match is not the active config version: nothing was stored.",
        {
            "stale": 'If-Match is not the active config version (it is "4"); nothing was'
            " stored: GET the config again and retry"
        },
    ),
    413: _error(
        "413 Content Too Large",
        "The body is larger than 1 MiB.",
        {"large": "the body is larger than 1 MiB"},
    ),
    415: _error(
        "415 Unsupported Media Type",
        "The body was sent with a Content-Type other than JSON.",
        {"form": "send the body as application/json"},
    ),
    422: _error(
        "422 Unprocessable Entity",
        "The Idempotency-Key was already used for a different request.",
        {"reused": "this Idempotency-Key was already used for a different request"},
    ),
    429: _error(
        "429 Too Many Requests",
        "The user's other requests hold its share of a worker's database connections"
        " (JANUS_USER_CONNECTIONS) and none came free in time; or, for its job history and"
        " activity, its other reads, which run one at a time (JANUS_USER_READS_PER_SECOND),"
        " kept this one waiting too long. Other users are not held up.",
        {
            "share": "too many requests of this user at once: each worker gives a user at most"
            " 1 of its 2 database connections; retry shortly",
            "reads": "too many reads of this user at once: a user's jobs and activity are read"
            " one request at a time; retry shortly",
        },
        headers={"Retry-After": True},
    ),
    503: _error(
        "503 Service Unavailable",
        "The database is unreachable or busy (pool exhausted, a conflict still failing after"
        " retries).",
        {"busy": "the database is unavailable or busy; retry shortly"},
        headers={"Retry-After": True},
    ),
}


# Path parameters by name: the OpenAPI schema of each of falcon's field converters in
# janus/routes.py (`{job_id:uuid}`, `{version:int(min=1, max=...)}`). A value the converter
# refuses matches no route: 404.
PATH_PARAMETERS: Mapping[str, dict[str, Any]] = {
    "job_id": {"type": "string", "format": "uuid"},
    "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
    # Any text: one that is no key id of the user's is 404, as an unknown one.
    "key_id": {"type": "string"},
}
