"""API keys over HTTP: the body of POST /dashboard/keys, and the answers of the key routes
(janus.keys). Beside janus/schemas/requests.py and answers.py, whose conventions they follow."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from janus.keys import MAX_NAME_CHARS, SCOPES, Scope
from janus.schemas.dumping import AnswerSchema
from janus.schemas.fields import Choice, StrictInteger, Text

# The longest a key may be made to live: ten years.
MAX_EXPIRES_IN_DAYS = 3650


class KeyRequestSchema(Schema):
    """The body of POST /dashboard/keys: a name, one or more scopes, and an optional life."""

    name = Text(required=True, validate=validate.Length(min=1, max=MAX_NAME_CHARS))
    scopes = fields.List(
        Choice(Scope),
        required=True,
        validate=validate.Length(min=1, max=len(SCOPES)),
    )
    # Days from now until the key is refused; absent: it never expires.
    expires_in_days = StrictInteger(validate=validate.Range(min=1, max=MAX_EXPIRES_IN_DAYS))


class ApiKeySchema(AnswerSchema):
    """One key as its user sees it listed: everything but the secret."""

    key_id = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(Choice(Scope), required=True)
    created_at = fields.DateTime(required=True)
    # Moved forward at most once a minute.
    last_used_at = fields.DateTime(required=True, allow_none=True)
    expires_at = fields.DateTime(required=True, allow_none=True)
    revoked_at = fields.DateTime(required=True, allow_none=True)


class NewKeySchema(ApiKeySchema):
    """POST /dashboard/keys's answer: the key listed, and the key itself, shown only here."""

    key = fields.String(required=True)


class KeysAnswerSchema(AnswerSchema):
    """GET /dashboard/keys: every key of the user, newest first, revoked ones included."""

    keys = fields.Nested(ApiKeySchema, many=True, required=True)
