"""Hostile input on the queue's routes, property-based: whatever a worker sends, the answer is
a success or a clear 4xx (the one error shape), never a 5xx.

Bodies go to the real app in-process as a valid user with queued jobs, so validation, the
lease checks or the claim answer them, not authentication.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import falcon.testing
from hypothesis import given
from hypothesis import strategies as st

from tests.support.answers import assert_clear_error
from tests.support.hostile import Pairs, encoded, examples, hostile_json, post

GOOD_TOKEN = str(uuid4())
JOB = str(uuid4())
QUEUE_ROUTES = [
    "/system/jobs/claim",
    "/system/jobs/complete",
    f"/system/jobs/{JOB}/heartbeat",
    f"/system/jobs/{JOB}/complete",
    f"/system/jobs/{JOB}/fail",
]
# Every field any queue body has, and one no body has.
FIELDS = [
    "limit",
    "lease_seconds",
    "tenant_id",
    "batch_name",
    "dependencies",
    "lease_token",
    "result",
    "actual_costs",
    "upstream_throttled",
    "error",
    "retry",
    "jobs",
    "job_id",
    "surprise",
]


def assert_answered(result: Any) -> None:
    """A success, or a clear 4xx."""
    if result.status_code != 200:
        assert_clear_error(result)


@examples(300)
@given(path=st.sampled_from(QUEUE_ROUTES), raw=st.binary(max_size=300))
def test_any_bytes_are_answered_without_a_5xx(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str, raw: bytes
) -> None:
    assert_answered(post(app_client, path, raw, open_user))


@examples(400)
@given(path=st.sampled_from(QUEUE_ROUTES), value=hostile_json, escape_everything=st.booleans())
def test_any_json_is_answered_without_a_5xx(
    app_client: falcon.testing.TestClient,
    open_user: UUID,
    path: str,
    value: Any,
    escape_everything: bool,
) -> None:
    assert_answered(post(app_client, path, encoded(value, escape_everything), open_user))


@examples(600)
@given(
    path=st.sampled_from(QUEUE_ROUTES),
    field=st.sampled_from(FIELDS),
    value=hostile_json,
    in_batch=st.booleans(),
)
def test_any_value_in_any_field_is_answered_without_a_5xx(
    app_client: falcon.testing.TestClient,
    open_user: UUID,
    path: str,
    field: str,
    value: Any,
    in_batch: bool,
) -> None:
    body: dict[str, Any] = {"lease_token": GOOD_TOKEN, "error": "e", field: value}
    if path == "/system/jobs/complete" and in_batch:
        body = {"jobs": [{"job_id": JOB, **body}]}
    pairs = Pairs(tuple(body.items()))
    assert_answered(post(app_client, path, pairs, open_user))
