"""The operations of the user's rules: the config, its versions, rollback, pause and resume."""

from __future__ import annotations

from janus.keys import Scope
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


def _config(method: str, summary: str, answer: Answer, errors: tuple[int, ...]) -> Operation:
    """One of the user's rules' calls: one 200 answer; reading them is `read`, changing them
    `admin`."""
    scopes = (Scope.READ,) if method == "get" else (Scope.ADMIN,)
    return Operation(
        method, summary, tag="Config", answers={200: answer}, errors=errors, scopes=scopes
    )


def _page(summary: str, cursor: str, answer: Answer) -> Operation:
    """A listing newest first, a keyset page at a time: `limit`, and the `cursor` parameter
    named (400: a limit or cursor out of range, or another query parameter)."""
    return Operation(
        "get",
        summary,
        tag="Config",
        parameters=("limit", cursor),
        answers={200: answer},
        errors=READ_ERRORS,
        scopes=(Scope.READ,),
    )


READ = _config("get", "Read the active config", _ACTIVE, (404, *DATABASE_ERRORS))

REPLACE = Operation(
    "put",
    "Store a new config version and activate it",
    tag="Config",
    body=ConfigSchema(),
    body_examples={"two_dependencies": examples.CONFIG},
    parameters=("If-Match",),
    answers={200: _ACTIVE},
    errors=(*BODY_ERRORS, 412, *DATABASE_ERRORS),
    scopes=(Scope.ADMIN,),
)

VERSIONS = _page(
    "List the config versions, newest first",
    "cursor",
    Answer(
        "A page of versions; `next` is the cursor of the next page, null on the last.",
        ConfigVersionsAnswerSchema,
        {"page": examples.VERSIONS},
    ),
)

ACTIVATE = _config(
    "post",
    "Roll back: make an earlier version the active one again",
    _ACTIVE,
    (404, *DATABASE_ERRORS),
)

_STATE = Answer(
    "The pause state now, and since when it holds (null: never paused).",
    PauseStateSchema,
    {"paused": {"paused": True, "since": examples.ACTIVATED_AT}},
)

PAUSE = _config(
    "post", "Pause: refuse every job of the user with 403 service paused", _STATE, DATABASE_ERRORS
)
RESUME = _config("post", "Resume: admit the user's jobs again", _STATE, DATABASE_ERRORS)

PAUSE_HISTORY = _page(
    "When the user was paused and resumed, newest first",
    "change_cursor",
    Answer(
        "A page of changes; `next` is the cursor of the next page, null on the last.",
        PauseHistoryAnswerSchema,
        {"page": examples.PAUSE_CHANGES},
    ),
)
