"""What every job route reads from a request: the user, and a JSON object body."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from typing import Any, TypeVar
from uuid import UUID

import falcon
from marshmallow import Schema, ValidationError

from janus import json_text
from janus.admission import IdempotencyKey
from janus.json_text import PathTree
from janus.resources.errors import InvalidBody

Row = TypeVar("Row")

MAX_BODY_BYTES = 1024 * 1024


def authenticated_user(req: falcon.Request) -> UUID:
    """The user the request was authenticated as (janus/resources/auth.py, before the
    resource: every user route needs one)."""
    user_id: UUID = req.context.identity.user_id
    return user_id


def page_param(req: falcon.Request, name: str, default: int | None, top: int) -> int | None:
    """The query parameter `name` as an integer from 1 to `top`, or `default` when absent.

    400 naming the parameter for anything else: a sign, a space, a fraction, a number out of
    range.
    """
    raw = req.get_param(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", raw, re.ASCII) or not 1 <= int(raw) <= top:
        raise InvalidBody(
            f"{name} must be an integer from 1 to {top}",
            {name: [f"Must be an integer from 1 to {top}."]},
        )
    return int(raw)


def one_page(rows: Sequence[Row], limit: int) -> tuple[Sequence[Row], bool]:
    """The page of a keyset listing read with LIMIT limit + 1, and whether a next one exists.

    One more row than shown tells whether there is a next page without a second query.
    """
    return rows[:limit], len(rows) > limit


def only_params(req: falcon.Request, allowed: Collection[str]) -> None:
    """400 naming every query parameter not in `allowed`, and every one given twice."""
    unknown = set(req.params) - set(allowed)
    if unknown:
        raise InvalidBody(
            "unknown query parameters", {name: ["Unknown field."] for name in sorted(unknown)}
        )
    repeated = sorted(name for name, value in req.params.items() if isinstance(value, list))
    if repeated:
        raise InvalidBody(
            "query parameters given more than once",
            {name: ["Given more than once."] for name in repeated},
        )


def _is_json_media_type(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def read_json_object(req: falcon.Request, keep_text: PathTree | None = None) -> dict[str, Any]:
    """The body as a JSON object of at most 1 MiB; 408, 413, 415 or 400 otherwise.

    The values `keep_text` points at come back as RawJson, the exact text sent.
    """
    if not _is_json_media_type(req.content_type):
        raise falcon.HTTPUnsupportedMediaType(description="send the body as application/json")
    # Read once: Falcon parses the header again on every read of the property.
    content_length = req.content_length
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(description="the body is larger than 1 MiB")
    # Without Content-Length (chunked), the server's input stream ends with the body itself;
    # with it, no more than it is asked for, as req.bounded_stream would (without the wrapper).
    size = MAX_BODY_BYTES + 1 if content_length is None else content_length
    try:
        raw = req.stream.read(size)
    except TimeoutError as error:
        # The server's read deadline (janus/worker.py) passed: a slow or stalled client.
        raise falcon.HTTPError(falcon.HTTP_408, description=str(error)) from None
    except Exception:
        # Whatever the WSGI server raises while reading the body (gunicorn: NoMoreData, an
        # OSError; InvalidChunkSize and ChunkMissingTerminator, plain Exceptions) is the
        # client's malformed or truncated request, never a fault of ours.
        raise InvalidBody("the body could not be read: malformed or incomplete") from None
    if len(raw) > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(description="the body is larger than 1 MiB")
    if content_length is not None and len(raw) < content_length:
        raise InvalidBody("the body is shorter than its Content-Length")
    try:
        # JSON on the wire is UTF-8 (RFC 8259), and nothing else is guessed.
        body = json_text.loads(raw.decode(), keep_text)
    except UnicodeDecodeError:
        raise InvalidBody("the body is not valid UTF-8") from None
    except (ValueError, RecursionError) as error:
        raise InvalidBody(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    return body


MAX_IDEMPOTENCY_KEY_LENGTH = 255


def idempotency_key(
    req: falcon.Request, body: dict[str, Any], path: str | None = None
) -> IdempotencyKey | None:
    """The request's Idempotency-Key with a fingerprint of route and body; 400 if malformed.

    `path` names the route when it is not the request's own (a quote, for the route quoted).
    """
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise InvalidBody(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters"
        )
    # A payload is in `body` as the text it was sent as (see schemas.Payload): the same values
    # written differently are stored differently, so they make a different request.
    # A run_at is written in ISO 8601, as it was read (str): the same moment in another zone
    # is another request.
    canonical = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    )
    fingerprint = hashlib.sha256(f"{path or req.path}\n{canonical}".encode())
    return IdempotencyKey(key=key, request_hash=fingerprint.digest())


def load_body(req: falcon.Request, schema: Schema) -> dict[str, Any]:
    """The body validated by `schema`; 400 with field-level messages when it is not valid.

    The values the schema's `kept_as_text` names reach it as the exact text sent.
    """
    body = read_json_object(req, getattr(schema, "kept_as_text", None))
    try:
        loaded: dict[str, Any] = schema.load(body)
    except ValidationError as error:
        raise InvalidBody("the body does not match the schema", error.messages) from None
    return loaded
