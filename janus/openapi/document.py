"""The OpenAPI 3.1 document, generated with apispec from the marshmallow schemas.

`build_document` is given the operations of janus/routes.py's table, each with its path, once
by create_app; GET /openapi.json serves what it returns. What the operations share is added
here, from components.py: the error answers, the request and response headers, the
credentials and their 401, and the 408 any request can get by arriving too slowly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import metadata
from itertools import groupby
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields, validate

from janus.openapi.components import (
    DESCRIPTION,
    ERROR_ANSWERS,
    HEADERS,
    PARAMETERS,
    PATH_PARAMETERS,
    TAGS,
)
from janus.openapi.operations import Answer, Operation, held_to_user_share
from janus.schemas.answers import ErrorSchema
from janus.schemas.fields import (
    MAX_DEPENDENCIES_PER_JOB,
    MAX_DEPENDENCY_NAME_LENGTH,
    MAX_PAYLOAD_BYTES,
    Dependencies,
    Payload,
)

OPENAPI_VERSION = "3.1.0"


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
    # A batch counts its items before loading them (janus/schemas/requests.py's _JobList).
    max_jobs = getattr(field.parent, "max_jobs", None)
    if field.name == "jobs" and max_jobs is not None:
        more = {"minItems": 1, "maxItems": max_jobs}
    for rule in field.validators:
        # apispec writes an object's Length as a string's maxLength, which says nothing of an
        # object (openapi-generator warns and drops it): its keys are maxProperties.
        if isinstance(field, fields.Dict) and isinstance(rule, validate.Length):
            if rule.min is not None:
                ret.pop("minLength", None)
                more["minProperties"] = rule.min
            if rule.max is not None:
                ret.pop("maxLength", None)
                more["maxProperties"] = rule.max
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
    """Who may call: X-User-ID (with the service token when there is one), or, on a user's
    route, an API key alone, which must hold one of the operation's scopes."""
    schemes: dict[str, list[str]] = {}
    if operation.user:
        schemes["userId"] = []
    if operation.service_token and service_token:
        schemes["serviceToken"] = []
    if not schemes:
        return []
    if operation.user:
        return [schemes, {"apiKey": [scope.value for scope in operation.scopes]}]
    return [schemes]


def _operation(path: str, operation: Operation, service_token: bool) -> dict[str, Any]:
    security = _security(operation, service_token)
    responses: dict[str, Any] = {
        str(status): _answer(answer) for status, answer in operation.answers.items()
    }
    errors = {*operation.errors, 408}
    if security:
        errors.add(401)
    if operation.user:
        errors.add(403)
    if held_to_user_share(path, operation) and 429 not in operation.answers:
        errors.add(429)
    for status in sorted(errors):
        responses[str(status)] = _error_component(status)
    described: dict[str, Any] = {
        "summary": operation.summary,
        "tags": [operation.tag],
        "operationId": _operation_id(path, operation),
        "security": security,
        "parameters": ["X-Request-ID", *operation.parameters],
        "responses": dict(sorted(responses.items())),
    }
    if operation.user:
        described["description"] = (
            "An API key must hold one of these scopes: "
            + ", ".join(f"`{scope.value}`" for scope in operation.scopes)
            + " (403 otherwise)."
        )
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


def _operation_id(path: str, operation: Operation) -> str:
    """`post_system_jobs_job_id_heartbeat`: the method and the path's words."""
    words = path.replace("{", "").replace("}", "").replace(".", "_").split("/")
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


def build_document(
    operations: Sequence[tuple[str, Operation]], *, service_token: bool
) -> dict[str, Any]:
    """The OpenAPI document of `operations`, each with its OpenAPI path (`{job_id}`), as the
    service serves them (with a service token or without)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Janus",
        version=_api_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
    )
    # Taught Janus's own fields, and ranges the way JSON Schema 2020-12 writes them.
    plugin.map_to_openapi_type(Dependencies, "object", None)
    plugin.map_to_openapi_type(Payload, "object", None)
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_janus_fields)
    _add_components(spec, service_token)
    for tag in TAGS:
        spec.tag(tag)
    for path, described in groupby(
        sorted(operations, key=lambda one: one[0]), key=lambda one: one[0]
    ):
        spec.path(
            path=path,
            operations={op.method: _operation(path, op, service_token) for _, op in described},
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
    spec.components.security_scheme(
        "apiKey",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key of the user (`janus_...`), with the scopes the operation"
            " names; it names its user, so X-User-ID is not needed.",
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
