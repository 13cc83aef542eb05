"""The answer schemas: AnswerSchema dumps exactly as marshmallow dumps, and no answer can carry
a field its schema does not name.

Every answer body is dumped by the schema the OpenAPI document shows (janus/schemas/answers.py,
queue_answers.py), through AnswerSchema's own loop over the fields rather than marshmallow's.
These tests hold the two to the same result for every answer schema, over the domain's own
objects drawn at random: each schema's level is compared with marshmallow's Schema._serialize,
and the levels below it are answer schemas compared in their own turn.
tests/test_openapi_conformance.py then holds the served answers to the document, where every
answer's object forbids other properties.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema

from janus.admission import Decision
from janus.configs import PauseChange, PauseState
from janus.history import Activity, JobRecord, JobSummary, MinuteActivity
from janus.keys import ApiKey
from janus.queue import ClaimedJob, Finished
from janus.queue_view import DependencyQueue, QueueView, StateCounts
from janus.quotas import BucketQuota, TenantQuota, UserQuotas
from janus.routes import openapi_document, routes
from janus.schemas import answers, keys, queue_answers
from janus.schemas.dumping import AnswerSchema

_MOMENTS = st.datetimes(timezones=st.timezones())
_PAGE_CURSOR = st.one_of(st.none(), st.text(max_size=8))


def _page(member: str, items: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({member: st.lists(items, max_size=3), "next": _PAGE_CURSOR})


_DECISIONS = st.builds(Decision, fits_at=st.one_of(st.none(), _MOMENTS))
_COUNTED = {
    "total": st.integers(1, 9),
    "accepted": st.integers(0, 9),
    "rejected": st.integers(0, 9),
}

# Each answer schema, and the objects the resources and the CLI dump with it.
# The database's amounts are finite: numeric's NaN never comes out of the queue's arithmetic
# (and a NaN would make the overall drain, the largest of them, meaningless).
_AMOUNT = st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False))
_API_KEY = st.builds(ApiKey, created_at=_MOMENTS, last_used_at=st.one_of(st.none(), _MOMENTS))
_DEPENDENCY_QUEUE = st.builds(
    DependencyQueue,
    tokens=_AMOUNT,
    effective_refill_per_second=_AMOUNT,
    drain_seconds=_AMOUNT,
)

OBJECTS: dict[type[AnswerSchema], st.SearchStrategy[Any]] = {
    answers.ErrorSchema: st.fixed_dictionaries(
        {"title": st.text(), "description": st.text()},
        optional={"errors": st.dictionaries(st.text(), st.lists(st.text()))},
    ),
    answers.StatusSchema: st.just({"status": "ok"}),
    answers.DecisionSchema: _DECISIONS,
    answers.BatchResultSchema: _DECISIONS,
    answers.PartialBatchAnswerSchema: st.fixed_dictionaries(
        {**_COUNTED, "results": st.lists(_DECISIONS, max_size=3)}
    ),
    answers.QuotedDecisionSchema: _DECISIONS,
    answers.QuoteAnswerSchema: st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["single", "partial", "atomic"]),
            "status": st.sampled_from([200, 202, 207, 429]),
            "replayed": st.booleans(),
            **_COUNTED,
            "results": st.lists(_DECISIONS, max_size=3),
        }
    ),
    answers.ClaimedJobSchema: st.builds(ClaimedJob, lease_expires_at=_MOMENTS),
    answers.ClaimAnswerSchema: st.fixed_dictionaries(
        {"jobs": st.lists(st.builds(ClaimedJob, lease_expires_at=_MOMENTS), max_size=3)}
    ),
    answers.HeartbeatAnswerSchema: st.fixed_dictionaries(
        {"job_id": st.uuids(), "lease_expires_at": _MOMENTS}
    ),
    answers.FinishedSchema: st.builds(Finished),
    queue_answers.CancelledSchema: st.fixed_dictionaries(
        {"job_id": st.uuids(), "state": st.just("cancelled")}
    ),
    queue_answers.RetriedSchema: st.fixed_dictionaries(
        {"job_id": st.uuids(), "state": st.just("waiting")}
    ),
    answers.CompleteManyResultSchema: st.fixed_dictionaries(
        {"job_id": st.uuids(), "outcome": st.sampled_from(["completed", "stale_lease"])}
    ),
    answers.CompleteManyAnswerSchema: st.fixed_dictionaries(
        {"results": st.lists(st.fixed_dictionaries({"job_id": st.uuids()}), max_size=3)}
    ),
    answers.ConfigVersionsAnswerSchema: _page("versions", st.just({"version": 1})),
    answers.PauseStateSchema: st.builds(PauseState, since=st.one_of(st.none(), _MOMENTS)),
    answers.PauseChangeSchema: st.builds(PauseChange, changed_at=_MOMENTS),
    answers.PauseHistoryAnswerSchema: _page("changes", st.builds(PauseChange)),
    answers.JobSummarySchema: st.builds(JobSummary, created_at=_MOMENTS),
    answers.JobHistoryAnswerSchema: _page("jobs", st.builds(JobSummary)),
    answers.JobDetailSchema: st.builds(JobRecord, created_at=_MOMENTS),
    answers.MinuteActivitySchema: st.builds(MinuteActivity, minute=_MOMENTS),
    answers.ActivityAnswerSchema: st.builds(
        Activity, st.lists(st.builds(MinuteActivity), max_size=3)
    ),
    answers.QuotaSchema: st.builds(BucketQuota),
    answers.TenantQuotaSchema: st.builds(TenantQuota),
    answers.QuotasAnswerSchema: st.builds(UserQuotas),
    queue_answers.QueueStatesSchema: st.builds(StateCounts),
    queue_answers.DependencyQueueSchema: _DEPENDENCY_QUEUE,
    queue_answers.QueueAnswerSchema: st.builds(
        QueueView, ended_since=_MOMENTS, dependencies=st.lists(_DEPENDENCY_QUEUE)
    ),
    keys.ApiKeySchema: _API_KEY,
    keys.NewKeySchema: _API_KEY.map(lambda key: {**vars(key), "key": "janus_x"}),
    keys.KeysAnswerSchema: st.builds(dict, keys=st.lists(_API_KEY, max_size=3)),
    answers.DocumentSchema: st.fixed_dictionaries(
        {"openapi": st.just("3.1.0"), "info": st.just({}), "paths": st.just({})},
        optional={"components": st.just({}), "tags": st.just([{"name": "Jobs"}])},
    ),
}


def _answer_schemas(base: type[AnswerSchema] = AnswerSchema) -> set[type[AnswerSchema]]:
    found = set()
    for schema in base.__subclasses__():
        found |= {schema, *_answer_schemas(schema)}
    return found


def test_every_answer_schema_is_held_to_marshmallows_dump() -> None:
    """A new answer schema gets its objects here, or this fails."""
    assert _answer_schemas() == set(OBJECTS)


@pytest.mark.parametrize("schema_class", sorted(OBJECTS, key=attrgetter("__name__")))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_an_answer_schema_dumps_as_marshmallow_does(
    schema_class: type[AnswerSchema], data: st.DataObject
) -> None:
    answer = data.draw(OBJECTS[schema_class])
    schema = schema_class()
    assert schema.dump(answer) == Schema._serialize(schema, answer)
    assert schema_class(many=True).dump([answer, answer]) == [schema.dump(answer)] * 2


def test_a_value_the_object_lacks_is_left_out_as_marshmallow_leaves_it() -> None:
    error = {"title": "400 Bad Request", "description": "the body is not JSON"}
    assert answers.ErrorSchema().dump(error) == error


def test_every_answers_object_forbids_properties_its_schema_does_not_name() -> None:
    """Each JSON answer of the document is an object schema with additionalProperties false
    (or a list of one), so the conformance test fails on a field the schema lacks. The
    document itself is the one answer open to more members."""
    document = openapi_document(routes(10), service_token=False)
    components = document["components"]["schemas"]
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, answer in operation["responses"].items():
                if isinstance(answer, str) or "application/json" not in answer.get("content", {}):
                    continue
                schema = answer["content"]["application/json"]["schema"]
                reference = schema.get("items", schema)["$ref"]
                name = reference.rsplit("/", 1)[-1]
                if path == "/openapi.json":
                    assert name == "Document"
                    continue
                assert _closed(components, name), (method, path, status, name)
                checked += 1
    assert checked > 20


def _closed(components: dict[str, Any], name: str) -> bool:
    """Whether the component `name` and every object schema it nests forbid other members."""
    schema = components[name]
    if schema.get("additionalProperties") is not False:
        return False
    for member in schema["properties"].values():
        nested = member.get("items", member)
        if "$ref" in nested and not _closed(components, nested["$ref"].rsplit("/", 1)[-1]):
            return False
    return True
