"""The HTTP surface: every seed API example to the letter, and every 4xx of the contract.

Most tests go through the real app in-process (Falcon's test client over a real pool); the last
few go through real HTTP against gunicorn started as the Procfile starts it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest
import requests

from janus.settings import Settings
from tests.support.answers import DECISION_KEYS, ERROR_KEYS, JSON, MIB
from tests.support.app import (
    ATOMIC_ROUTES,
    JOB_ROUTES,
    PARTIAL_ROUTES,
    PREFIXES,
    SINGLE_ROUTES,
    post_json,
    serve_app,
)
from tests.support.bodies import batch, job, single
from tests.support.factories import stored_job, user_with_config
from tests.support.seed import SEED_BATCH, SEED_BATCH_NAME, SEED_SINGLE


@pytest.fixture
def small_batch_client(database_url: str) -> Iterator[falcon.testing.TestClient]:
    """The real app with batches of at most 3 jobs."""
    with serve_app(Settings(database_url=database_url, max_batch_jobs=3)) as client:
        yield client


def seed_user(db: psycopg.Connection, **config: Any) -> UUID:
    """A user with the seed's two dependencies: openai 2 tokens (0.5/s), stripe 10 (1/s)."""
    dependencies = {
        "openai": {"capacity": 2, "refill_per_second": 0.5},
        "stripe": {"capacity": config.pop("stripe_capacity", 10), "refill_per_second": 1},
    }
    return user_with_config(db, dependencies, **config)


def assert_decision(answer: Any, status: str, reason: str) -> None:
    """`answer` is exactly one seed decision body."""
    assert list(answer) == DECISION_KEYS
    assert str(UUID(answer["job_id"])) == answer["job_id"]
    assert answer["status"] == status
    assert answer["reason"] == reason


def assert_error(result: Any, status: int, *path: str) -> dict[str, Any]:
    """`result` is the one error shape with `status`; with `path`, `errors` names that field.

    Works for a Falcon test result and a `requests` response alike.
    """
    status_code = getattr(result, "status_code", None)
    assert status_code == status, result.text
    assert result.headers["Content-Type"].startswith(JSON)
    body: dict[str, Any] = json.loads(result.text)
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("description"), str) and body["description"], body
    if path:
        assert set(body) == ERROR_KEYS | {"errors"}, body
        errors: Any = body["errors"]
        for key in path:
            assert key in errors, (path, body["errors"])
            errors = errors[key]
        assert errors, body
    else:
        assert set(body) <= ERROR_KEYS | {"errors"}, body
    return body


def post_raw(
    client: falcon.testing.TestClient,
    path: str,
    user_id: UUID | str,
    body: bytes | str,
    content_type: str = JSON,
) -> falcon.testing.Result:
    """POST `body` byte for byte."""
    if isinstance(body, str):
        body = body.encode()
    headers = {"X-User-ID": str(user_id), "Content-Type": content_type}
    return client.simulate_post(path, body=body, headers=headers)


def body_for(path: str, **fields: Any) -> dict[str, Any]:
    """A valid body for `path`, one job whose fields are replaced by `fields`."""
    if path in SINGLE_ROUTES:
        return {**single(5), **fields}
    return batch({**job(5), **fields})


def padded_body(size: int) -> bytes:
    """A valid single-job body of exactly `size` bytes (JSON allows trailing whitespace)."""
    text = json.dumps(single(5, {"openai": 1})).encode()
    return text + b" " * (size - len(text))


# --- The seed API examples -----------------------------------------------------------------------


def test_health_is_exactly_ok(app_client: falcon.testing.TestClient) -> None:
    result = app_client.simulate_get("/health")

    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith(JSON)
    assert result.json == {"status": "ok"}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_seed_single_job_accepted(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user = seed_user(db)

    result = post_json(app_client, prefix, user, SEED_SINGLE)

    assert result.status_code == 202
    assert_decision(result.json, "Accepted", "")
    assert "Janus-Reason-Code" not in result.headers


@pytest.mark.parametrize("prefix", PREFIXES)
def test_seed_single_job_rejected(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user = seed_user(db)
    assert post_json(app_client, prefix, user, SEED_SINGLE).status_code == 202

    result = post_json(app_client, prefix, user, SEED_SINGLE)

    assert result.status_code == 429
    assert_decision(result.json, "Rejected", "dependency 'openai' rate limit exceeded")
    # openai is empty and refills at 0.5 per second: 2 tokens take 4 seconds.
    assert result.headers["Retry-After"] == "4"
    # The seed's body has no room for the code: a header carries it.
    assert result.headers["Janus-Reason-Code"] == "rate_limit"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_seed_partial_batch(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user = seed_user(db, stripe_capacity=4)

    result = post_json(app_client, f"{prefix}/batch", user, SEED_BATCH)

    assert result.status_code == 200
    assert list(result.json) == ["total", "accepted", "rejected", "results"]
    assert (result.json["total"], result.json["accepted"], result.json["rejected"]) == (2, 1, 1)
    first, second = result.json["results"]
    # Each result is the seed's decision with its code, and when to try it again: never, for
    # these two. No header carries a code: each result has its own.
    assert (first.pop("reason_code"), second.pop("reason_code")) == (None, "over_capacity")
    assert first.pop("retry_after") is second.pop("retry_after") is None
    assert "Janus-Reason-Code" not in result.headers
    assert_decision(first, "Accepted", "")
    assert_decision(second, "Rejected", "dependency 'stripe' cost 5 exceeds capacity 4")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_partial_batchs_rate_limited_job_carries_its_retry_after(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    """A result tells the Retry-After its job would get alone; null for an accepted one."""
    user = seed_user(db)
    job = {name: value for name, value in SEED_SINGLE.items() if name != "batch_name"}

    result = post_json(app_client, f"{prefix}/batch", user, {"batch_name": "b", "jobs": [job, job]})

    assert result.status_code == 200
    retries = [
        (one["status"], one["reason_code"], one["retry_after"]) for one in result.json["results"]
    ]
    # openai holds 2 tokens and refills 0.5 a second: the second job's 2 take 4 seconds, as
    # the seed's single job sent twice is told (test_seed_single_job_rejected).
    assert retries == [("Accepted", None, None), ("Rejected", "rate_limit", 4)]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_seed_atomic_batch_all_accepted(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user = seed_user(db)

    result = post_json(app_client, f"{prefix}/batch/atomic", user, SEED_BATCH)

    assert result.status_code == 202
    assert isinstance(result.json, list)
    assert len(result.json) == 2
    for answer in result.json:
        assert_decision(answer, "Accepted", "")
    assert result.json[0]["job_id"] != result.json[1]["job_id"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_seed_atomic_batch_any_rejected(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    user = seed_user(db, min_priority=3)
    # The seed's batch with its priorities changed: the first job's is under min_priority.
    first, second = SEED_BATCH["jobs"]
    body = {**SEED_BATCH, "jobs": [{**first, "priority": 2}, {**second, "priority": 8}]}

    result = post_json(app_client, f"{prefix}/batch/atomic", user, body)

    assert result.status_code == 207
    assert isinstance(result.json, list)
    first, second = result.json
    assert_decision(first, "Rejected", "priority too low")
    assert_decision(second, "Rejected", "batch rejected atomically")
    # The code of the job that sank the batch.
    assert result.headers["Janus-Reason-Code"] == "min_priority"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_an_atomic_batch_tells_the_code_of_the_first_job_refused_for_its_own_reason(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, prefix: str
) -> None:
    """Jobs are decided highest priority first, but the header names the first job in
    request order that was refused for a reason of its own, as the body lists them."""
    user = seed_user(db, min_priority=3, stripe_capacity=4)
    first, second = SEED_BATCH["jobs"]
    # The first is under min_priority, the second (decided first) asks stripe for 5 of 4.
    body = {**SEED_BATCH, "jobs": [{**first, "priority": 2}, {**second, "priority": 9}]}

    result = post_json(app_client, f"{prefix}/batch/atomic", user, body)

    assert result.status_code == 207
    assert [one["reason"] for one in result.json] == [
        "priority too low",
        "dependency 'stripe' cost 5 exceeds capacity 4",
    ]
    assert result.headers["Janus-Reason-Code"] == "min_priority"


# --- 401: who is asking -----------------------------------------------------------------------

MALFORMED_USER_IDS = ["", "not-a-uuid", "1234", "2dad64a8-3f87-4d6e-9b4c-1cfa5917fd4"]


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_missing_user_header_is_401(app_client: falcon.testing.TestClient, path: str) -> None:
    result = app_client.simulate_post(path, json=body_for(path))

    body = assert_error(result, 401)
    assert "errors" not in body


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_malformed_user_header_is_401(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, path: str
) -> None:
    for header in MALFORMED_USER_IDS:
        with subtests.test(header=header):
            result = app_client.simulate_post(
                path, json=body_for(path), headers={"X-User-ID": header}
            )

            assert_error(result, 401)


def test_unknown_user_is_401(app_client: falcon.testing.TestClient, open_user: UUID) -> None:
    result = post_json(
        app_client, SINGLE_ROUTES[0], "2dad64a8-3f87-4d6e-9b4c-1cfa5917fd4b", single()
    )

    assert_error(result, 401)


def test_errors_are_json_whatever_the_client_accepts(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests
) -> None:
    for accept in ("application/xml", "text/html", "text/plain"):
        with subtests.test(accept=accept):
            result = app_client.simulate_post(
                SINGLE_ROUTES[0], json=single(), headers={"Accept": accept}
            )

            assert_error(result, 401)


# --- 400: the body is not JSON, or not an object ---------------------------------------------

INVALID_JSON = [
    b'{"batch_name": "b", ',
    b"",
    b"{'batch_name': 'b'}",
    b"nul",
    b'{"a": 1} {"b": 2}',
    b"\xff\xfe",
    b'{"batch_name": "\xff"}',
]
NOT_OBJECTS = [b"[]", b"[{}]", b'"batch"', b"1", b"null", b"true"]


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_invalid_json_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    for text in INVALID_JSON:
        with subtests.test(text=text):
            assert_error(post_raw(app_client, path, open_user, text), 400)


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_body_that_is_not_an_object_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    for text in NOT_OBJECTS:
        with subtests.test(text=text):
            assert_error(post_raw(app_client, path, open_user, text), 400)


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_duplicate_keys_are_400(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str
) -> None:
    text = json.dumps(body_for(path))
    duplicated = text.replace(
        f'"batch_name": "{SEED_BATCH_NAME}"', '"batch_name": "a", "batch_name": "b"'
    )
    assert duplicated != text

    assert_error(post_raw(app_client, path, open_user, duplicated), 400)


def test_duplicate_dependency_is_400_not_last_one_wins(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, open_user: UUID
) -> None:
    text = (
        '{"batch_name": "b", "tenant_id": "t", "priority": 5,'
        ' "dependencies": {"openai": 1, "openai": 1000000}}'
    )

    assert_error(post_raw(app_client, SINGLE_ROUTES[0], open_user, text), 400)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_duplicate_key_inside_the_payload_is_400(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    text = '{"batch_name": "b", "tenant_id": "t", "priority": 5, "payload": {"k": 1, "k": 2}}'

    assert_error(post_raw(app_client, SINGLE_ROUTES[0], open_user, text), 400)


def test_non_finite_numbers_are_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for constant in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999"):
        text = '{"batch_name": "b", "tenant_id": "t", "priority": ' + constant + "}"
        with subtests.test(text=text):
            assert_error(post_raw(app_client, SINGLE_ROUTES[0], open_user, text), 400)


def test_nan_and_infinity_are_400_even_in_a_payload(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        text = '{"batch_name": "b", "tenant_id": "t", "priority": 5, "payload": {"x": %s}}'
        with subtests.test(constant=constant):
            result = post_raw(app_client, SINGLE_ROUTES[0], open_user, text % constant)

            body = assert_error(result, 400)
            assert f"{constant} is not valid JSON" in body["description"]


# --- 400: field by field ------------------------------------------------------------------------


def field_path(path: str, field: str) -> tuple[str, ...]:
    """Where `errors` names a job's field for `path`: at the top, or under jobs -> 0."""
    return (field,) if path in SINGLE_ROUTES else ("jobs", "0", field)


@pytest.mark.parametrize("field", ["batch_name", "tenant_id", "priority"])
def test_single_job_missing_required_field_is_400(
    app_client: falcon.testing.TestClient, open_user: UUID, field: str
) -> None:
    body = single()
    del body[field]

    assert_error(post_json(app_client, SINGLE_ROUTES[0], open_user, body), 400, field)


@pytest.mark.parametrize("path", PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_batch_missing_required_field_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    for field in ("batch_name", "jobs"):
        with subtests.test(field=field):
            body = batch(job())
            del body[field]

            assert_error(post_json(app_client, path, open_user, body), 400, field)


@pytest.mark.parametrize("path", PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_batch_job_missing_required_field_is_400(
    app_client: falcon.testing.TestClient,
    subtests: pytest.Subtests,
    db: psycopg.Connection,
    open_user: UUID,
    path: str,
) -> None:
    for field in ("tenant_id", "priority"):
        with subtests.test(field=field):
            broken = job()
            del broken[field]

            result = post_json(app_client, path, open_user, batch(job(), broken))

            assert_error(result, 400, "jobs", "1", field)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_unknown_top_level_field_is_400(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str
) -> None:
    body = {**body_for(path), "colour": "blue"}

    assert_error(post_json(app_client, path, open_user, body), 400, "colour")


@pytest.mark.parametrize("path", PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_unknown_field_in_a_batch_job_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    # A job inherits batch_name from its batch; it may not name its own.
    for field in ("colour", "batch_name", "jobs"):
        with subtests.test(field=field):
            body = batch(job(), {**job(), field: "x"})

            assert_error(post_json(app_client, path, open_user, body), 400, "jobs", "1", field)


BAD_PRIORITIES = ["8", 8.0, 8.5, True, False, None, 0, 11, -1, [8], {"p": 8}]


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_priority_that_is_not_an_integer_from_1_to_10_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    for priority in BAD_PRIORITIES:
        with subtests.test(priority=priority):
            result = post_json(app_client, path, open_user, body_for(path, priority=priority))

            assert_error(result, 400, *field_path(path, "priority"))


def test_priority_bounds_are_accepted(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    for priority in (1, 10):
        result = post_json(app_client, SINGLE_ROUTES[0], open_user, single(priority))

        assert result.status_code == 202, result.text


BAD_COSTS = [0, -1, 1_000_001, "1", 1.0, 1.5, True, None, [1], {"c": 1}]


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_cost_that_is_not_an_integer_from_1_to_a_million_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    for cost in BAD_COSTS:
        with subtests.test(cost=cost):
            body = body_for(path, dependencies={"openai": cost})

            result = post_json(app_client, path, open_user, body)

            assert_error(result, 400, *field_path(path, "dependencies"))


def test_cost_bounds_are_accepted(app_client: falcon.testing.TestClient, open_user: UUID) -> None:
    for cost in (1, 1_000_000):
        result = post_json(app_client, SINGLE_ROUTES[0], open_user, single(5, {"search": cost}))

        assert result.status_code == 202, result.text


def test_dependencies_that_are_not_an_object_are_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for dependencies in ([], ["openai"], "openai", 1, None, True):
        with subtests.test(dependencies=dependencies):
            body = {**single(), "dependencies": dependencies}

            result = post_json(app_client, SINGLE_ROUTES[0], open_user, body)

            assert_error(result, 400, "dependencies")


BAD_NAMES = ["", "x" * 256, 123, None, ["t"], {"t": 1}, True]


@pytest.mark.parametrize("path", JOB_ROUTES)
@pytest.mark.parametrize("field", ["tenant_id", "batch_name"])
def test_names_that_are_not_1_to_255_character_strings_are_400(
    app_client: falcon.testing.TestClient,
    subtests: pytest.Subtests,
    open_user: UUID,
    path: str,
    field: str,
) -> None:
    for value in BAD_NAMES:
        with subtests.test(value=value):
            if field == "batch_name":
                body = {**body_for(path), "batch_name": value}
                expected_path: tuple[str, ...] = ("batch_name",)
            else:
                body = body_for(path, tenant_id=value)
                expected_path = field_path(path, "tenant_id")

            assert_error(post_json(app_client, path, open_user, body), 400, *expected_path)


def test_names_of_1_and_255_characters_are_accepted(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, open_user: UUID
) -> None:
    for length in (1, 255):
        body = single(batch_name="b" * length, tenant_id="t" * length)

        result = post_json(app_client, SINGLE_ROUTES[0], open_user, body)

        assert result.status_code == 202
        row = stored_job(db, result.json["job_id"], "batch_name, tenant_id")
        assert row == {"batch_name": "b" * length, "tenant_id": "t" * length}


def test_more_than_32_dependencies_is_400(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    dependencies = {f"dep-{n:02}": 1 for n in range(33)}

    result = post_json(app_client, SINGLE_ROUTES[0], open_user, single(5, dependencies))

    assert_error(result, 400, "dependencies")


def test_32_dependencies_are_accepted(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    dependencies = {f"dep-{n:02}": 1 for n in range(32)}

    result = post_json(app_client, SINGLE_ROUTES[0], open_user, single(5, dependencies))

    assert result.status_code == 202


def test_dependency_name_that_is_not_1_to_100_characters_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for name in ("", "d" * 101):
        with subtests.test(length=len(name)):
            result = post_json(app_client, SINGLE_ROUTES[0], open_user, single(5, {name: 1}))

            assert_error(result, 400, "dependencies")


def test_dependency_name_of_100_characters_is_accepted(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    result = post_json(app_client, SINGLE_ROUTES[0], open_user, single(5, {"d" * 100: 1}))

    assert result.status_code == 202


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_payload_that_is_not_an_object_is_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    for payload in ([], [{"k": "v"}], "payload", 1, None, True):
        with subtests.test(payload=payload):
            result = post_json(app_client, path, open_user, body_for(path, payload=payload))

            assert_error(result, 400, *field_path(path, "payload"))


def sized_payload(size: int) -> dict[str, str]:
    """A payload of exactly `size` bytes of UTF-8 (two bytes per 'é') as the test client sends it.

    The limit is on the payload's text as sent, spaces included: that text is what is stored.
    """
    empty = len('{"k": ""}')
    payload = {"k": "é" * ((size - empty) // 2)}
    if (size - empty) % 2:
        payload["k"] += "x"
    assert len(json.dumps(payload, ensure_ascii=False).encode()) == size
    return payload


def test_payload_over_64_kib_is_400(app_client: falcon.testing.TestClient, open_user: UUID) -> None:
    result = post_json(
        app_client, SINGLE_ROUTES[0], open_user, single(payload=sized_payload(65537))
    )

    assert_error(result, 400, "payload")


def test_payload_over_64_kib_in_a_batch_job_is_400(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    body = batch(job(), job(payload=sized_payload(65537)))

    result = post_json(app_client, PARTIAL_ROUTES[0], open_user, body)

    assert_error(result, 400, "jobs", "1", "payload")


def test_payload_of_64_kib_is_accepted_and_stored_whole(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, open_user: UUID
) -> None:
    payload = sized_payload(65536)

    result = post_json(app_client, SINGLE_ROUTES[0], open_user, single(payload=payload))

    assert result.status_code == 202
    assert stored_job(db, result.json["job_id"], "payload") == {"payload": payload}


def test_deeply_nested_payload_is_not_a_server_error(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for depth in (300, 500, 900):
        with subtests.test(depth=depth):
            payload = '{"a": ' * depth + "1" + "}" * depth
            text = '{"batch_name": "b", "tenant_id": "t", "priority": 5, "payload": ' + payload
            text += "}"

            result = post_raw(app_client, SINGLE_ROUTES[0], open_user, text)

            # Well under 64 KiB: storing it is best, a clear 400 is acceptable, a 500 is not.
            if result.status_code != 202:
                assert_error(result, 400, "payload")


UNSTORABLE = [
    r'{"batch_name": "b\u0000", "tenant_id": "t", "priority": 5}',
    r'{"batch_name": "b", "tenant_id": "t\ud800", "priority": 5}',
    r'{"batch_name": "b", "tenant_id": "t", "priority": 5, "dependencies": {"a\u0000": 1}}',
    r'{"batch_name": "b", "tenant_id": "t", "priority": 5, "zz\ud800": 1}',
    r'{"batch_name": "b", "tenant_id": "t", "priority": 100000000000000000000000000000}',
    r'{"batch_name": "b", "tenant_id": "t", "priority": 5, "dependencies": {"a": 1e30}}',
]


def test_text_and_numbers_postgres_cannot_store_are_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for text in UNSTORABLE:
        with subtests.test(text=text):
            assert_error(post_raw(app_client, SINGLE_ROUTES[0], open_user, text), 400)


# --- 400: batch sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_jobs_that_are_not_a_list_of_objects_are_400(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    not_lists_of_objects: list[Any] = [[], {"0": {}}, "jobs", None, [1], [[]], [None]]
    for jobs in not_lists_of_objects:
        with subtests.test(jobs=jobs):
            result = post_json(app_client, path, open_user, {"batch_name": "b", "jobs": jobs})

            assert_error(result, 400, "jobs")


@pytest.mark.parametrize("path", PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_batch_size_is_bounded_by_the_setting(
    small_batch_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    open_user: UUID,
    path: str,
) -> None:
    too_many = post_json(small_batch_client, path, open_user, batch(*[job()] * 4))
    assert_error(too_many, 400, "jobs")
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)

    most = post_json(small_batch_client, path, open_user, batch(*[job()] * 3))

    assert most.status_code in (200, 202)
    answers = most.json["results"] if path in PARTIAL_ROUTES else most.json
    assert [answer["status"] for answer in answers] == ["Accepted"] * 3


def test_default_batch_maximum_is_1000(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, open_user: UUID
) -> None:
    tiny = {"tenant_id": "t", "priority": 5}

    too_many = post_json(app_client, PARTIAL_ROUTES[0], open_user, batch(*[tiny] * 1001))
    most = post_json(app_client, PARTIAL_ROUTES[0], open_user, batch(*[tiny] * 1000))

    assert_error(too_many, 400, "jobs")
    assert most.status_code == 200
    assert (most.json["total"], most.json["accepted"], most.json["rejected"]) == (1000, 1000, 0)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (1000,)


# --- 413, 415 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_body_over_1_mib_is_413(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str
) -> None:
    result = post_raw(app_client, path, open_user, padded_body(MIB + 1))

    assert_error(result, 413)


def test_body_of_exactly_1_mib_is_read(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    result = post_raw(app_client, SINGLE_ROUTES[0], open_user, padded_body(MIB))

    assert result.status_code == 202


NOT_JSON_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"]


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_body_that_is_not_sent_as_json_is_415(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID, path: str
) -> None:
    text = json.dumps(body_for(path))
    for content_type in NOT_JSON_TYPES:
        with subtests.test(content_type=content_type):
            assert_error(post_raw(app_client, path, open_user, text, content_type), 415)


# --- Routes and methods -------------------------------------------------------------------------

# GET / is the dashboard's page (tests/test_dashboard_page.py).
UNKNOWN_ROUTES = [
    "/index.html",
    "/jobs",
    "/dashboard",
    "/admin/jobs",
    "/dashboard/jobs/x",
    "/health/x",
]
# GET /dashboard/jobs is the job history (tests/test_dashboard_history.py); /system/jobs has none.
WRONG_METHODS = [("GET", route) for route in JOB_ROUTES if route != "/dashboard/jobs"] + [
    ("PUT", JOB_ROUTES[0]),
    ("DELETE", ATOMIC_ROUTES[1]),
    ("PATCH", PARTIAL_ROUTES[0]),
    ("POST", "/health"),
]


def test_unknown_route_is_404_json(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for path in UNKNOWN_ROUTES:
        for method in ("GET", "POST"):
            with subtests.test(method=method, path=path):
                result = app_client.simulate_request(
                    method, path, json=single(), headers={"X-User-ID": str(open_user)}
                )

                assert_error(result, 404)


def test_wrong_method_is_405_json(
    app_client: falcon.testing.TestClient, subtests: pytest.Subtests, open_user: UUID
) -> None:
    for method, path in WRONG_METHODS:
        with subtests.test(method=method, path=path):
            result = app_client.simulate_request(
                method, path, json=single(), headers={"X-User-ID": str(open_user)}
            )

            assert_error(result, 405)


# --- Real HTTP, through gunicorn ------------------------------------------------------------------


@pytest.fixture
def server_url(gunicorn_server: Any) -> str:
    """The base URL of the real service, started by gunicorn as the Procfile starts it."""
    url: str = gunicorn_server.url
    return url.rstrip("/")


def test_over_http_health_and_the_seed_single_job(server_url: str, db: psycopg.Connection) -> None:
    user = seed_user(db)
    headers = {"X-User-ID": str(user)}

    health = requests.get(f"{server_url}/health", timeout=10)
    accepted = requests.post(f"{server_url}/dashboard/jobs", json=SEED_SINGLE, headers=headers)
    rejected = requests.post(f"{server_url}/system/jobs", json=SEED_SINGLE, headers=headers)

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert accepted.status_code == 202
    assert_decision(accepted.json(), "Accepted", "")
    assert rejected.status_code == 429
    assert_decision(rejected.json(), "Rejected", "dependency 'openai' rate limit exceeded")
    assert rejected.headers["Retry-After"] == "4"
    assert rejected.headers["Content-Type"].startswith(JSON)


def test_over_http_401(server_url: str, db: psycopg.Connection) -> None:
    url = f"{server_url}/dashboard/jobs"

    missing = requests.post(url, json=SEED_SINGLE, timeout=10)
    malformed = requests.post(url, json=SEED_SINGLE, headers={"X-User-ID": "me"}, timeout=10)
    unknown = requests.post(
        url,
        json=SEED_SINGLE,
        headers={"X-User-ID": "2dad64a8-3f87-4d6e-9b4c-1cfa5917fd4b"},
        timeout=10,
    )

    for response in (missing, malformed, unknown):
        assert_error(response, 401)


def test_over_http_413_with_a_content_length(server_url: str, open_user: UUID) -> None:
    response = requests.post(
        f"{server_url}/dashboard/jobs/batch",
        data=padded_body(MIB + 1),
        headers={"X-User-ID": str(open_user), "Content-Type": JSON},
        timeout=10,
    )

    assert_error(response, 413)


def chunked(body: bytes, size: int = 65536) -> Iterator[bytes]:
    """`body` in chunks, so that `requests` sends it with Transfer-Encoding: chunked."""
    return (body[start : start + size] for start in range(0, len(body), size))


def test_over_http_413_when_chunked(server_url: str, open_user: UUID) -> None:
    response = requests.post(
        f"{server_url}/system/jobs",
        data=chunked(padded_body(MIB + 1)),
        headers={"X-User-ID": str(open_user), "Content-Type": JSON},
        timeout=10,
    )

    assert_error(response, 413)


def test_over_http_a_small_chunked_body_is_read(server_url: str, open_user: UUID) -> None:
    response = requests.post(
        f"{server_url}/dashboard/jobs",
        data=chunked(json.dumps(single(5, {"openai": 1})).encode(), size=16),
        headers={"X-User-ID": str(open_user), "Content-Type": JSON},
        timeout=10,
    )

    assert response.status_code == 202, response.text
    assert_decision(response.json(), "Accepted", "")


def test_over_http_400_404_405_415_are_json(server_url: str, open_user: UUID) -> None:
    headers = {"X-User-ID": str(open_user), "Content-Type": JSON}

    invalid = requests.post(f"{server_url}/dashboard/jobs", data=b"{", headers=headers, timeout=10)
    missing_route = requests.get(f"{server_url}/nowhere", timeout=10)
    wrong_method = requests.get(f"{server_url}/system/jobs", headers=headers, timeout=10)
    plain_text = requests.post(
        f"{server_url}/dashboard/jobs",
        data=json.dumps(single()),
        headers={"X-User-ID": str(open_user), "Content-Type": "text/plain"},
        timeout=10,
    )

    assert_error(invalid, 400)
    assert_error(plain_text, 415)
    assert_error(missing_route, 404)
    assert_error(wrong_method, 405)


def test_over_http_deeply_nested_payload_is_not_a_server_error(
    server_url: str, open_user: UUID
) -> None:
    payload = '{"a": ' * 500 + "1" + "}" * 500
    text = '{"batch_name": "b", "tenant_id": "t", "priority": 5, "payload": ' + payload + "}"

    response = requests.post(
        f"{server_url}/dashboard/jobs",
        data=text.encode(),
        headers={"X-User-ID": str(open_user), "Content-Type": JSON},
        timeout=10,
    )

    if response.status_code != 202:
        assert_error(response, 400, "payload")


def test_over_http_a_post_without_body_or_length_is_400_not_a_hang(
    server_url: str, open_user: UUID
) -> None:
    host, port = server_url.removeprefix("http://").split(":")
    request = (
        "POST /dashboard/jobs HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"X-User-ID: {open_user}\r\n"
        "Content-Type: application/json\r\n"
        "Connection: close\r\n\r\n"
    )

    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode())
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    error = json.loads(body)
    assert set(error) == ERROR_KEYS
