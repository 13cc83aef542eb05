"""The operations of the user's API keys (janus/resources/keys.py), all of the `admin` scope."""

from __future__ import annotations

from janus.keys import Scope
from janus.openapi import examples
from janus.openapi.operations import BODY_ERRORS, DATABASE_ERRORS, READ_ERRORS, Answer, Operation
from janus.schemas.keys import ApiKeySchema, KeyRequestSchema, KeysAnswerSchema, NewKeySchema

CREATE = Operation(
    "post",
    "Make an API key: its secret is in this answer and never again",
    tag="Keys",
    body=KeyRequestSchema(),
    body_examples={"producer": examples.KEY_REQUEST},
    answers={
        201: Answer(
            "The key, listed, and `key`: the whole key to send as"
            " `Authorization: Bearer <key>`. Only its hash is kept.",
            NewKeySchema,
            {"created": examples.NEW_KEY},
        )
    },
    # 409: the user holds the most keys it may.
    errors=(*BODY_ERRORS, 409, *DATABASE_ERRORS),
    scopes=(Scope.ADMIN,),
)

LIST = Operation(
    "get",
    "The user's API keys, newest first, revoked and expired ones included",
    tag="Keys",
    answers={
        200: Answer("Every key, without its secret.", KeysAnswerSchema, {"one": examples.KEYS})
    },
    errors=READ_ERRORS,
    scopes=(Scope.ADMIN,),
)

REVOKE = Operation(
    "post",
    "Revoke an API key: refused from its next request on",
    tag="Keys",
    answers={
        200: Answer(
            "The key, revoked (also when it already was).",
            ApiKeySchema,
            {"revoked": examples.REVOKED_KEY},
        )
    },
    # 404: no such key of this user.
    errors=(404, *DATABASE_ERRORS),
    scopes=(Scope.ADMIN,),
)
