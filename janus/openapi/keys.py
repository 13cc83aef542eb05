"""The operations of the user's API keys (janus/resources/keys.py), all of the `admin` scope."""

from __future__ import annotations

from janus.keys import Scope
from janus.openapi import examples
from janus.openapi.operations import BODY_ERRORS, DATABASE_ERRORS, READ_ERRORS, Answer, Operation
from janus.schemas.keys import ApiKeySchema, KeyRequestSchema, KeysAnswerSchema, NewKeySchema

# Examples.
_KEY_REQUEST = {"name": "billing producer", "scopes": ["produce"], "expires_in_days": 90}
_LISTED_KEY = {
    "key_id": "3f9c2a7d5e1b8c40",
    "name": "billing producer",
    "scopes": ["produce"],
    "created_at": examples.ACTIVATED_AT,
    "last_used_at": None,
    "expires_at": "2027-03-01T09:00:00+00:00",
    "revoked_at": None,
}
_NEW_KEY = {
    **_LISTED_KEY,
    "key": "janus_5eed5eed5eed4eed8eed5eed5eed5eed_3f9c2a7d5e1b8c40_" + "0123456789abcdef" * 3,
}
_KEYS = {"keys": [_LISTED_KEY]}
_REVOKED_KEY = {**_LISTED_KEY, "revoked_at": examples.LEASE_EXPIRES_AT}


CREATE = Operation(
    "post",
    "Make an API key: its secret is in this answer and never again",
    tag="Keys",
    body=KeyRequestSchema(),
    body_examples={"producer": _KEY_REQUEST},
    answers={
        201: Answer(
            "The key, listed, and `key`: the whole key to send as"
            " `Authorization: Bearer <key>`. Only its hash is kept.",
            NewKeySchema,
            {"created": _NEW_KEY},
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
    answers={200: Answer("Every key, without its secret.", KeysAnswerSchema, {"one": _KEYS})},
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
            {"revoked": _REVOKED_KEY},
        )
    },
    # 404: no such key of this user.
    errors=(404, *DATABASE_ERRORS),
    scopes=(Scope.ADMIN,),
)
