"""schemas.ItemList loads a list of items exactly as fields.Nested(schema, many=True) does,
a FieldwiseSchema a body exactly as marshmallow's Schema.load does, and Janus's fields
validate as marshmallow's own.

ItemList is the batch routes' fast way through their jobs, and FieldwiseSchema the single job
route's through its body; these tests hold them to marshmallow's answers, results and error
messages alike, over items drawn at random: valid ones, and ones with every kind of mistake a
client makes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, pre_load, validate

from janus.json_text import RawJson
from janus.schemas.fields import (
    Dependencies,
    ItemList,
    Payload,
    Text,
    name_field,
    priority_field,
)
from janus.schemas.loading import FieldwiseSchema, load_fieldwise
from janus.schemas.requests import CompleteItemSchema, JobSchema, SingleJobSchema

_TEXT = st.one_of(st.text(max_size=5), st.text(min_size=250, max_size=260), st.just("a\x00b"))
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.floats(), _TEXT)
_PAYLOAD = st.one_of(
    st.builds(lambda text: RawJson(text, {"k": text}), st.text(max_size=5)),
    st.builds(lambda: RawJson("[1]", [1])),
    _VALUE,
)
_DEPENDENCIES = st.one_of(
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(-1, 3), st.booleans())),
    _VALUE,
)
_JOB = st.fixed_dictionaries(
    {},
    optional={
        "tenant_id": st.one_of(st.text(min_size=1, max_size=4), _VALUE),
        "priority": st.one_of(st.integers(1, 10), _VALUE),
        "dependencies": _DEPENDENCIES,
        "payload": _PAYLOAD,
        "extra": _VALUE,
    },
)
# Text Postgres can store: no NUL, no lone surrogates.
_STORABLE = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
_VALID_JOB = st.fixed_dictionaries(
    {
        "tenant_id": st.text(_STORABLE, min_size=1, max_size=4),
        "priority": st.integers(1, 10),
    },
    optional={
        "dependencies": st.dictionaries(
            st.text(_STORABLE, min_size=1, max_size=4), st.integers(1, 5), max_size=3
        ),
        "payload": st.builds(lambda text: RawJson(text, {"k": text}), st.text(max_size=5)),
    },
)


def _outcome(schema: Schema, items: Any) -> tuple[str, Any]:
    try:
        return "loaded", schema.load({"items": items})
    except ValidationError as error:
        return "refused", error.messages


def _pair(item_schema: type[Schema]) -> tuple[Schema, Schema]:
    quick = Schema.from_dict({"items": ItemList(item_schema)})()
    nested = Schema.from_dict({"items": fields.Nested(item_schema, many=True)})()
    return quick, nested


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(_JOB, max_size=4), st.lists(_VALID_JOB, max_size=4), _VALUE))
def test_jobs_load_as_nested_loads_them(items: Any) -> None:
    quick, nested = _pair(JobSchema)
    assert _outcome(quick, items) == _outcome(nested, items)


@settings(max_examples=100, deadline=None)
@given(st.lists(_VALID_JOB, min_size=1, max_size=4))
def test_valid_jobs_take_the_quick_way(items: list[dict[str, Any]]) -> None:
    """The drawn valid jobs really load (so the comparison above covers the quick way)."""
    quick, _ = _pair(JobSchema)
    kind, loaded = _outcome(quick, items)
    assert kind == "loaded"
    assert [job["dependencies"] for job in loaded["items"]] == [
        job.get("dependencies", {}) for job in items
    ]


def _loaded_by(load: Any, body: Any) -> tuple[str, Any]:
    try:
        return "loaded", load(body)
    except ValidationError as error:
        return "refused", error.messages


_BATCH_NAME = st.one_of(st.text(_STORABLE, min_size=1, max_size=4), _VALUE)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.builds(lambda job, name: {**job, "batch_name": name}, _JOB, _BATCH_NAME),
        st.builds(lambda job, name: {**job, "batch_name": name}, _VALID_JOB, _BATCH_NAME),
        _JOB,
        _VALUE,
    )
)
def test_a_single_job_loads_as_marshmallow_loads_it(body: Any) -> None:
    schema = SingleJobSchema()
    assert _loaded_by(schema.load, body) == _loaded_by(partial(Schema.load, schema), body)


@settings(max_examples=100, deadline=None)
@given(st.builds(lambda job, name: {**job, "batch_name": name}, _VALID_JOB, st.just("b")))
def test_valid_single_jobs_take_the_quick_way(body: dict[str, Any]) -> None:
    """The drawn valid bodies load field by field (so the comparison above covers that way)."""
    schema = SingleJobSchema()
    assert load_fieldwise(body, schema.load_fields) == schema.load(body)


def test_a_fieldwise_schema_with_hooks_is_refused() -> None:
    class Hooked(FieldwiseSchema):
        a = fields.Integer()

        @pre_load
        def _strip(self, data: Any, **_: Any) -> Any:
            return data

    with pytest.raises(TypeError, match="hooks"):
        Hooked()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(-5, 15))
def test_fields_validate_in_turn_as_marshmallow_validates(text: str, number: int) -> None:
    """Janus's fields run their validators one by one, and marshmallow's And only for a value
    that fails: the same values pass, and the same messages say why the others do not."""
    both_fail = Text(validate=[validate.Length(min=3), validate.OneOf(["ab", "abcd"])])
    for field, value in ((name_field(), text), (both_fail, text), (priority_field(), number)):
        assert _loaded_by(field._validate, value) == _loaded_by(
            partial(fields.Field._validate, field), value
        )


@settings(max_examples=400, deadline=None)
@given(st.one_of(_VALUE, _DEPENDENCIES, _PAYLOAD, st.text(_STORABLE, min_size=1, max_size=4)))
def test_fields_deserialize_as_marshmallow_deserializes(value: Any) -> None:
    """The short way a field takes a value of its own type gives what Field.deserialize
    gives, value or messages."""
    for field in (name_field(), priority_field(), Dependencies(), Payload()):
        assert _loaded_by(partial(field.deserialize, attr="f", data={}), value) == _loaded_by(
            partial(fields.Field.deserialize, field, attr="f", data={}), value
        )


def test_completions_load_as_nested_loads_them() -> None:
    quick, nested = _pair(CompleteItemSchema)
    items = [
        {"job_id": "00000000-0000-7000-8000-000000000001", "lease_token": "x"},
        {
            "job_id": "00000000-0000-7000-8000-000000000001",
            "lease_token": "00000000-0000-4000-8000-000000000002",
        },
    ]
    assert _outcome(quick, items[1:]) == _outcome(nested, items[1:])
    assert _outcome(quick, items)[0] == "refused"
    assert _outcome(quick, items) == _outcome(nested, items)


def test_a_schema_with_hooks_is_refused() -> None:
    class Hooked(Schema):
        a = fields.Integer()

        @pre_load
        def _strip(self, data: Any, **_: Any) -> Any:
            return data

    with pytest.raises(TypeError, match="hooks"):
        ItemList(Hooked)
