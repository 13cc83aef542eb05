"""Janus's own marshmallow fields, shared by the request and the answer schemas.

Strict JSON types (an integer is an integer: `"8"`, `8.0` and `true` are not), text Postgres
can store, a job's dependencies and payload as single fast fields, and ItemList, which loads a
batch's jobs without marshmallow's per-item machinery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate

from janus.json_text import JsonText, RawJson
from janus.schemas.loading import check_fieldwise, load_fieldwise

MAX_NAME_LENGTH = 255
MAX_DEPENDENCIES_PER_JOB = 32
MAX_DEPENDENCY_NAME_LENGTH = 100
MAX_COST = 1_000_000
MAX_PAYLOAD_BYTES = 64 * 1024
# Deep enough for any real document; far below where recursive JSON code would fail.
MAX_PAYLOAD_DEPTH = 64
MAX_CAPACITY = 1_000_000_000_000


class _QuickField(fields.Field[Any]):
    """A field that takes the common case the short way, and the rest as marshmallow does.

    A value of exactly `quick_type` is deserialized and validated without Field.deserialize's
    checks for a missing value, None and processors, which cannot apply to it (the field has
    no pre_load or post_load processors, which __init__ checks). And the validators run one
    after the other while they pass: marshmallow's own _validate builds a validate.And of them
    on every call, for the messages of all that fail; a value that fails any of them is
    validated again that way.
    """

    quick_type: ClassVar[type]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.pre_load or self.post_load:
            raise TypeError(f"{type(self).__name__} takes no pre_load or post_load processors")

    def deserialize(
        self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any
    ) -> Any:
        """As Field.deserialize."""
        if type(value) is self.quick_type:
            output = self._deserialize(value, attr, data, **kwargs)
            self._validate(output)
            return output
        return super().deserialize(value, attr, data, **kwargs)

    def _validate(self, value: Any) -> None:
        try:
            for validator in self.validators:
                validator(value)
        except ValidationError:
            super()._validate(value)


class StrictInteger(_QuickField, fields.Integer):
    """A JSON integer and nothing else: `"8"`, `8.0` and `true` are errors."""

    quick_type = int

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class StrictNumber(fields.Float):
    """A finite JSON number (integer or decimal); strings, booleans, NaN and infinity are errors.

    Dumped as it is: an integer stays one (`10`, not `10.0`), a Decimal stays exact.
    """

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("invalid")
        return value


class StrictBoolean(fields.Boolean):
    """A JSON true or false; `"true"` and `1` are errors."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _storable_text(text: str) -> None:
    """Postgres text holds neither NUL nor lone surrogates; refuse them as input errors."""
    if "\x00" in text:
        raise ValidationError("Text may not contain the NUL character.")
    if text.isascii():  # no surrogate, and no copy to find out
        return
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValidationError("Text is not valid Unicode.") from None


def _payload_depth_within_limit(payload: RawJson) -> bool:
    """Whether no object or array of `payload` is nested deeper than MAX_PAYLOAD_DEPTH.

    Iterative, so a hostile depth costs a clear 400 and never a RecursionError.
    """
    # Each level opens a bracket in the text: a text of few brackets (most) needs no walk.
    if payload.text.count("{") + payload.text.count("[") <= MAX_PAYLOAD_DEPTH:
        return True
    pending: list[tuple[Any, int]] = [(payload.value, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_PAYLOAD_DEPTH:
                return False
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
    return True


class Text(_QuickField, fields.String):
    """A string Postgres can store as text."""

    quick_type = str

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        # A str is what String._deserialize would give back as it is.
        str_given = type(value) is str
        text = value if str_given else super()._deserialize(value, attr, data, **kwargs)
        _storable_text(text)
        return text


def name_field(*, required: bool = True) -> Text:
    """A batch name or a tenant id: 1 to 255 characters."""
    return Text(required=required, validate=validate.Length(min=1, max=MAX_NAME_LENGTH))


def priority_field(**kwargs: Any) -> StrictInteger:
    """A job's priority: an integer from 1 to 10."""
    return StrictInteger(validate=validate.Range(min=1, max=10), **kwargs)


def dependency_name_field() -> Text:
    """A dependency's name: 1 to 100 characters."""
    return Text(validate=validate.Length(min=1, max=MAX_DEPENDENCY_NAME_LENGTH))


class Choice(fields.Enum):
    """One of an Enum's values, read by value; dumped from a member or from its value alike
    (a config read back from the database holds the values)."""

    def __init__(self, enum: type[Enum], **kwargs: Any) -> None:
        # Read through Text: the same messages as any other text field.
        super().__init__(enum, by_value=Text, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return super()._serialize(None if value is None else self.enum(value), attr, obj)


class UtcDateTime(fields.DateTime):
    """A moment dumped in ISO 8601 as UTC (`+00:00`), whatever zone it was read in."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
        return super()._serialize(value, attr, obj, **kwargs)


def stored_json(value: Any) -> Any:
    """A JSON value read back as the text stored (a str) is written as that text, unparsed."""
    return JsonText(value) if isinstance(value, str) else value


class StoredObject(fields.Dict):
    """A JSON object of the database, dumped from its stored text as it is (stored_json)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return stored_json(value)


# Dependencies and Payload are single fields rather than a Dict of key and value fields: they
# are validated once per job of batches of up to 1,000 jobs, where marshmallow's per-field
# overhead was most of a request's cost. Their error messages keep the Dict shape.


class Dependencies(_QuickField):
    """{name: cost}: at most 32 names of 1 to 100 characters, costs integers 1 to 1,000,000.

    `minimum` and `maximum` bound the values otherwise (a real cost reported by a worker may
    be 0).
    """

    quick_type = dict

    def __init__(self, *, minimum: int = 1, maximum: int = MAX_COST, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, int]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value) > MAX_DEPENDENCIES_PER_JOB:
            raise ValidationError(f"At most {MAX_DEPENDENCIES_PER_JOB} dependencies.")
        errors: dict[str, dict[str, list[str]]] = {}
        for name, cost in value.items():
            if (
                type(cost) is int
                and self.minimum <= cost <= self.maximum
                and 1 <= len(name) <= MAX_DEPENDENCY_NAME_LENGTH
                and name.isascii()
                and "\x00" not in name
            ):
                continue  # the common case, with nothing to say: no need to look closer
            problems: dict[str, list[str]] = {}
            if not 1 <= len(name) <= MAX_DEPENDENCY_NAME_LENGTH:
                problems["key"] = [f"Length must be between 1 and {MAX_DEPENDENCY_NAME_LENGTH}."]
            else:
                try:
                    _storable_text(name)
                except ValidationError as error:
                    problems["key"] = error.messages  # type: ignore[assignment]
            if isinstance(cost, bool) or not isinstance(cost, int):
                problems["value"] = ["Not a valid integer."]
            elif not self.minimum <= cost <= self.maximum:
                problems["value"] = [
                    f"Must be greater than or equal to {self.minimum} and less than or equal"
                    f" to {self.maximum}."
                ]
            if problems:
                errors[name] = problems
        if errors:
            raise ValidationError(errors)
        return value

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        # A stored job's come back as the text stored.
        return stored_json(value)


class Payload(_QuickField):
    """A JSON object of at most 64 KiB and 64 levels, as the exact JSON text the client sent.

    The body reader hands it over as RawJson (see `kept_as_text` below), so every number and
    string reaches the database and the workers as written. Text that Postgres cannot hold
    as `text` (NUL, lone surrogates) is fine here: the `json` column keeps their escapes.
    A worker's `result` is the same kind of value (`what` names it in the messages).
    """

    quick_type = RawJson

    def __init__(self, *, what: str = "Payload", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.what = what

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, RawJson):
            raise ValidationError("Not a valid mapping type.")
        if not isinstance(value.value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value.text.encode()) > MAX_PAYLOAD_BYTES:
            raise ValidationError(f"{self.what} is larger than {MAX_PAYLOAD_BYTES} bytes as sent.")
        if not _payload_depth_within_limit(value):
            raise ValidationError(f"{self.what} is nested deeper than {MAX_PAYLOAD_DEPTH} levels.")
        return value.text

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        # The exact text stored, written in unparsed: write the answer with json_text.dumps.
        return stored_json(value)


class ItemList(fields.Nested):
    """A list of `schema` items, loaded exactly as fields.Nested(schema, many=True) loads it.

    Items are loaded field by field, with each field's own deserialize (load_fieldwise), and
    without the schema's per-item machinery (error stores, getters, hooks), which was most of a
    1,000-job batch's validation time. A list with any item that does not load that way (an
    error, an unknown key) is loaded again by Nested itself, for its errors as marshmallow
    words them. `schema` must have no hooks and no data_key, so that both ways load alike.
    """

    def __init__(self, schema: type[Schema], **kwargs: Any) -> None:
        check_fieldwise(schema)
        super().__init__(schema, many=True, **kwargs)

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Mapping[str, Any] | None,
        partial: bool | Sequence[str] | AbstractSet[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        if isinstance(value, list) and not partial:
            items = _load_items(value, self.schema.load_fields)
            if items is not None:
                return items
        return super()._deserialize(value, attr, data, partial=partial, **kwargs)


def _load_items(items: list[Any], item_fields: dict[str, fields.Field]) -> list[Any] | None:
    """Each item loaded by `item_fields`, or None when one of them does not load cleanly."""
    loaded = []
    for item in items:
        fields_loaded = load_fieldwise(item, item_fields)
        if fields_loaded is None:
            return None
        loaded.append(fields_loaded)
    return loaded
