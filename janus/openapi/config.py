"""The operations of the user's rules: the config, its versions, rollback, pause and resume."""

from __future__ import annotations

from janus.openapi import examples
from janus.openapi.operations import (
    BODY_ERRORS,
    DATABASE_ERRORS,
    READ_ERRORS,
    Answer,
    Operation,
)
from janus.schemas.answers import (
    ActiveConfigSchema,
    ConfigVersionsAnswerSchema,
    PauseHistoryAnswerSchema,
    PauseStateSchema,
)
from janus.schemas.requests import ConfigSchema

_ACTIVE = Answer(
    "The active config, with its version; ETag is the version, quoted.",
    ActiveConfigSchema,
    {"active": examples.ACTIVE_CONFIG},
    {"ETag": True},
)

READ = Operation(
    "get",
    "Read the active config",
    tag="Config",
    answers={200: _ACTIVE},
    errors=(404, *DATABASE_ERRORS),
)

REPLACE = Operation(
    "put",
    "Store a new config version and activate it",
    tag="Config",
    body=ConfigSchema(),
    body_examples={"two_dependencies": examples.CONFIG},
    parameters=("If-Match",),
    answers={200: _ACTIVE},
    errors=(*BODY_ERRORS, 412, *DATABASE_ERRORS),
)

VERSIONS = Operation(
    "get",
    "List the config versions, newest first",
    tag="Config",
    parameters=("limit", "cursor"),
    answers={
        200: Answer(
            "A page of versions; `next` is the cursor of the next page, null on the last.",
            ConfigVersionsAnswerSchema,
            {"page": examples.VERSIONS},
        )
    },
    # 400: a limit or cursor out of range, or another query parameter.
    errors=READ_ERRORS,
)

ACTIVATE = Operation(
    "post",
    "Roll back: make an earlier version the active one again",
    tag="Config",
    answers={200: _ACTIVE},
    errors=(404, *DATABASE_ERRORS),
)

_STATE = Answer(
    "The pause state now, and since when it holds (null: never paused).",
    PauseStateSchema,
    {"paused": {"paused": True, "since": examples.ACTIVATED_AT}},
)

PAUSE = Operation(
    "post",
    "Pause: refuse every job of the user with 403 service paused",
    tag="Config",
    answers={200: _STATE},
    errors=DATABASE_ERRORS,
)

RESUME = Operation(
    "post",
    "Resume: admit the user's jobs again",
    tag="Config",
    answers={200: _STATE},
    errors=DATABASE_ERRORS,
)

PAUSE_HISTORY = Operation(
    "get",
    "When the user was paused and resumed, newest first",
    tag="Config",
    parameters=("limit", "change_cursor"),
    answers={
        200: Answer(
            "A page of changes; `next` is the cursor of the next page, null on the last.",
            PauseHistoryAnswerSchema,
            {"page": examples.PAUSE_CHANGES},
        )
    },
    errors=READ_ERRORS,
)
