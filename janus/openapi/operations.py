"""What the OpenAPI document says of one method of one route: its Operation and Answers.

janus/routes.py, the one table of the API, gives each route its path, its resource and its
operations; the operations themselves are described here (the health routes, the document,
the metrics and the dashboard's files) and in jobs.py, config.py and history.py. What every
operation shares is added by document.py, not repeated: X-Request-ID on every answer, 408 on
every operation (a request may arrive too slowly), the X-User-ID and service-token
requirements with their 401, and the error bodies of components.ERROR_ANSWERS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from janus.dashboard import File
from janus.keys import Scope
from janus.schemas.answers import DocumentSchema, StatusSchema


@dataclass(frozen=True)
class Answer:
    """One status an operation answers with a body of its own (errors are ERROR_ANSWERS)."""

    description: str
    # The JSON body's schema, the one the resource dumps it with; None for an answer without
    # one (HEAD).
    schema: type[Schema] | None = None
    # Named examples of the body.
    examples: Mapping[str, Any] = field(default_factory=dict)
    # Response headers besides X-Request-ID: names of components.HEADERS, each with whether
    # the answer always carries it.
    headers: Mapping[str, bool] = field(default_factory=dict)
    # A list of this schema rather than one (the atomic batch's answer).
    many: bool = False
    # A body that is not JSON: its media type, described as a string (GET /metrics).
    text_media_type: str | None = None


@dataclass(frozen=True)
class Operation:
    """One method of a route (the route's path is the table's, janus/routes.py)."""

    method: str
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    # Statuses answered with the error body (ERROR_ANSWERS); 401 and 408 are added for all.
    errors: tuple[int, ...] = ()
    # The JSON body, as the resource loads it, with named examples.
    body: Schema | None = None
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    # Request headers and query parameters: names of components.PARAMETERS.
    parameters: tuple[str, ...] = ()
    # Whether X-User-ID is required (every route but health, this document and the page).
    user: bool = True
    # What an API key must hold to call it (any one of them); every user route names some.
    scopes: tuple[Scope, ...] = ()
    # Whether the service token, when the service has one, is required (all but /health).
    service_token: bool = True


def held_to_user_share(path: str, operation: Operation) -> bool:
    """Whether `operation` of `path` is held to its user's share of a worker's connections
    (janus/db/pool.py's UserShare), and so may be answered 429 past it: the reads, whose
    filters may read far, and the atomic batches, which may wait for their buckets' locks.
    Admission is held to one connection of a user per worker by its grouping already, and the
    queue's calls are short."""
    return operation.user and (operation.method == "get" or path.endswith("/atomic"))


# What a body can be refused with before anything is decided.
BODY_ERRORS = (400, 413, 415)
# What reaching the database can end in.
DATABASE_ERRORS = (503,)
# A query parameter a route does not take (or one out of range), and the database.
READ_ERRORS = (400, *DATABASE_ERRORS)

# prometheus_client's text format 0.0.4 (janus.metrics.CONTENT_TYPE; this package does
# not import prometheus_client, and tests/test_openapi.py holds the two together).
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health(summary: str, errors: tuple[int, ...]) -> tuple[Operation, ...]:
    """GET and HEAD of a health route: HEAD answers as GET does, without the body."""
    ok = Answer("OK.", StatusSchema, {"ok": {"status": "ok"}})
    return tuple(
        Operation(
            method,
            summary,
            tag="Health",
            answers={200: answer},
            errors=errors,
            user=False,
            service_token=False,
        )
        for method, answer in (("get", ok), ("head", Answer("OK, without the body.")))
    )


LIVENESS = health("Liveness: the process serves requests", ())
READINESS = health("Readiness: Postgres answers too", DATABASE_ERRORS)

DOCUMENT = Operation(
    "get",
    "This document",
    tag="Health",
    answers={200: Answer("The OpenAPI 3.1 document of this service.", DocumentSchema)},
    user=False,
)

METRICS = Operation(
    "get",
    "Prometheus metrics of every worker",
    tag="Health",
    answers={
        200: Answer(
            "Every metric in Prometheus's text format (0.0.4), summed over the service's"
            " gunicorn workers; docs/operations.md lists them.",
            text_media_type=METRICS_MEDIA_TYPE,
        )
    },
    user=False,
)


def dashboard_file(file: File) -> Operation:
    """GET of one of the dashboard's files (janus.dashboard.FILES)."""
    return Operation(
        "get",
        file.summary,
        tag="Dashboard",
        answers={200: Answer("The file.", text_media_type=file.media_type)},
        user=False,
        service_token=False,
    )
