"""The OpenAPI 3.1 document, generated with apispec from the marshmallow schemas.

`build_document` is called once, by create_app; GET /openapi.json serves what it returns.
The operations come from janus/openapi/operations.py; what they share is added here: the
error answers, the request and response headers, the credentials and their 401, and the 408
any request can get by arriving too slowly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import metadata
from itertools import groupby
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields, validate

from janus.openapi.answers import ErrorSchema
from janus.openapi.operations import PATH_PARAMETERS, Answer, Operation, operations
from janus.schemas import (
    MAX_DEPENDENCIES_PER_JOB,
    MAX_DEPENDENCY_NAME_LENGTH,
    MAX_PAYLOAD_BYTES,
    Dependencies,
    Payload,
)

OPENAPI_VERSION = "3.1.0"

_DESCRIPTION = """\
Janus decides at once whether a background job that calls rate-limited external services \
may run now, and queues accepted jobs for workers. docs/api.md is the full reference: how a \
job is decided, the queue, configs.

Every route but /health, /health/ready, /openapi.json and /metrics needs `X-User-ID`, a \
Janus user's id; when the service runs with a service token, every route but /health and \
/health/ready needs it too \
(`Authorization: Bearer <token>`). Bodies are UTF-8 JSON objects of at most 1 MiB; a repeated \
key, `NaN` or `Infinity` is refused with 400, and so is an integer written with a fraction \
or an exponent (`8.0`, `1e3`). Every answer carries `X-Request-ID`, and every \
error the same body: `{"title", "description"}`, with `errors` by field when a body is \
refused. A method a route does not have is answered 405 with `Allow`; a path no route \
matches, 404.
"""

_TAGS = [
    {"name": "Health", "description": "Liveness, readiness, metrics, and this document."},
    {"name": "Jobs", "description": "Admission: single jobs, partial and atomic batches."},
    {"name": "Queue", "description": "Workers: claim accepted jobs, then end their leases."},
    {"name": "Config", "description": "The user's own config versions."},
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
        " of an accepted request within 24 hours gets the original answer and takes no token;"
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
        "schema": {"type": "string", "enum": ["queued", "running", "completed", "failed"]},
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
        "description": "Only jobs stored at or after this moment (ISO 8601, with a timezone).",
        "schema": {"type": "string", "format": "date-time"},
    },
    "until": {
        "in": "query",
        "description": "Only jobs stored before this moment (ISO 8601, with a timezone);"
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
        "The user's config is paused, or the user has no active config.",
        {"paused": "service paused", "no_config": "no active config"},
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
    503: _error(
        "503 Service Unavailable",
        "The database is unreachable or busy (pool exhausted, a conflict still failing after"
        " retries).",
        {"busy": "the database is unavailable or busy; retry shortly"},
        headers={"Retry-After": True},
    ),
}


def _error_component(status: int) -> str:
    return f"Error{status}"


def _janus_fields(
    self: Any, field: fields.Field[Any], ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """What apispec cannot see in Janus's fields: their limits, and exclusive ranges."""
    more: dict[str, Any] = {}
    if isinstance(field, Dependencies):
        more = {
            "maxProperties": MAX_DEPENDENCIES_PER_JOB,
            "propertyNames": {"minLength": 1, "maxLength": MAX_DEPENDENCY_NAME_LENGTH},
            "additionalProperties": {
                "type": "integer",
                "minimum": field.minimum,
                "maximum": field.maximum,
            },
        }
    elif isinstance(field, Payload):
        more = {"description": f"Any JSON object of at most {MAX_PAYLOAD_BYTES} bytes as sent."}
        # Loaded as the JSON text sent, so its default is text too: documented as the object.
        if isinstance(field.load_default, str):
            more["default"] = json.loads(field.load_default)
    # A batch counts its items before loading them (janus/schemas.py's _JobList).
    max_jobs = getattr(field.parent, "max_jobs", None)
    if field.name == "jobs" and max_jobs is not None:
        more = {"minItems": 1, "maxItems": max_jobs}
    for rule in field.validators:
        # apispec writes every bound as inclusive; JSON Schema 2020-12 says exclusive apart.
        if isinstance(rule, validate.Range) and rule.min is not None and not rule.min_inclusive:
            ret.pop("minimum", None)
            more["exclusiveMinimum"] = rule.min
        if isinstance(rule, validate.Range) and rule.max is not None and not rule.max_inclusive:
            ret.pop("maximum", None)
            more["exclusiveMaximum"] = rule.max
    return more


def _headers(names: Mapping[str, bool]) -> dict[str, Any]:
    """HEADERS by name, each required or not: inline, since a $ref could not say which."""
    return {name: {**HEADERS[name], "required": always} for name, always in names.items()}


def _answer(answer: Answer) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": answer.description,
        "headers": _headers({"X-Request-ID": True, **answer.headers}),
    }
    if answer.text_media_type is not None:
        response["content"] = {answer.text_media_type: {"schema": {"type": "string"}}}
    if answer.schema is not None:
        response["content"] = {
            "application/json": {
                "schema": answer.schema(many=answer.many),
                "examples": {name: {"value": value} for name, value in answer.examples.items()},
            }
        }
    return response


def _security(operation: Operation, service_token: bool) -> list[dict[str, list[str]]]:
    schemes: dict[str, list[str]] = {}
    if operation.user:
        schemes["userId"] = []
    if operation.service_token and service_token:
        schemes["serviceToken"] = []
    return [schemes] if schemes else []


def _operation(operation: Operation, service_token: bool) -> dict[str, Any]:
    security = _security(operation, service_token)
    responses: dict[str, Any] = {
        str(status): _answer(answer) for status, answer in operation.answers.items()
    }
    errors = {*operation.errors, 408}
    if security:
        errors.add(401)
    for status in sorted(errors):
        responses[str(status)] = _error_component(status)
    described: dict[str, Any] = {
        "summary": operation.summary,
        "tags": [operation.tag],
        "operationId": _operation_id(operation),
        "security": security,
        "parameters": ["X-Request-ID", *operation.parameters],
        "responses": dict(sorted(responses.items())),
    }
    if operation.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": operation.body,
                    "examples": {
                        name: {"value": value} for name, value in operation.body_examples.items()
                    },
                }
            },
        }
    return described


def _operation_id(operation: Operation) -> str:
    """`post_system_jobs_job_id_heartbeat`: the method and the path's words."""
    words = operation.path.replace("{", "").replace("}", "").replace(".", "_").split("/")
    return "_".join([operation.method, *filter(None, words)])


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in PATH_PARAMETERS.items()
        if f"{{{name}}}" in path
    ]


def _api_version() -> str:
    try:
        return metadata.version("janus")
    except metadata.PackageNotFoundError:
        # Deployed from a checkout without installing janus itself.
        return "unreleased"


def build_document(*, max_batch_jobs: int, service_token: bool) -> dict[str, Any]:
    """The OpenAPI document of the service as configured (batch limit, service token or not)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Janus",
        version=_api_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": _DESCRIPTION},
    )
    # Taught Janus's own fields, and ranges the way JSON Schema 2020-12 writes them.
    plugin.map_to_openapi_type(Dependencies, "object", None)
    plugin.map_to_openapi_type(Payload, "object", None)
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_janus_fields)
    _add_components(spec, service_token)
    for tag in _TAGS:
        spec.tag(tag)
    by_path = groupby(
        sorted(operations(max_batch_jobs=max_batch_jobs), key=lambda op: op.path),
        key=lambda op: op.path,
    )
    for path, ops in by_path:
        spec.path(
            path=path,
            operations={op.method: _operation(op, service_token) for op in ops},
            parameters=_path_parameters(path),
        )
    return spec.to_dict()


def _add_components(spec: APISpec, service_token: bool) -> None:
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.security_scheme(
        "userId",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-User-ID",
            "description": "A Janus user's id, a UUID in canonical form (any case).",
        },
    )
    if service_token:
        spec.components.security_scheme(
            "serviceToken",
            {"type": "http", "scheme": "bearer", "description": "The service's token."},
        )
    for name, parameter in PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], {"name": name, **parameter})
    for status, error in ERROR_ANSWERS.items():
        spec.components.response(_error_component(status), _error_answer(status, error))


def _error_answer(status: int, error: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "description": error["description"],
        "headers": _headers(error["headers"]),
        "content": {
            "application/json": {
                "schema": "Error",
                "examples": {
                    name: {"value": {"title": error["title"], "description": text}}
                    for name, text in error["examples"].items()
                },
            }
        },
    }
