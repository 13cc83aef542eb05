"""A payload is stored exactly as sent: every number keeps its text, every string its value.

Through every job route, in-process and once through gunicorn; read back from the database.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest
import requests

from tests.conftest import GunicornServer
from tests.support.app import ATOMIC_ROUTES, PARTIAL_ROUTES, SINGLE_ROUTES
from tests.support.factories import stored_job

# Every form the JSON grammar gives a number, and values no double holds.
NUMBERS = [
    "0",
    "-0",
    "7",
    "-7",
    "1.10",
    "1.0",
    "-0.0",
    "0.000",
    "1e2",
    "1E2",
    "1e+2",
    "1e-2",
    "-1.5E-10",
    "2.5e-0",
    "100e000",
    "1e400",
    "-1e400",
    "1e-400",
    "12345678901234567890.123",
    "9007199254740993",
    "9" * 50,
    "-" + "9" * 5000,
    "0." + "1234567890" * 10,
    "3.14159265358979323846264338327950288",
]
# Every escape JSON has, escaped characters Postgres text could not hold (the json column
# keeps their escapes), and raw non-ASCII text.
STRINGS = [
    r'"\"\\\/\b\f\n\r\t"',
    r'"\u0000"',
    r'"nul \u0000 inside"',
    r'"\ud800"',
    r'"\udfff lone low"',
    r'"\ud83d\ude00"',
    r'"\u00e9 \u00E9 \u2028\u2029"',
    '"é 😀 \u2028"',
    r'"/ and \/"',
    '""',
]


def payload_text() -> str:
    """A payload holding every number and string above, in objects and arrays, oddly spaced."""
    members = [f'"n{i}": {number}' for i, number in enumerate(NUMBERS)]
    members += [f'"s{i}":{string}' for i, string in enumerate(STRINGS)]
    members.append(f'"numbers" : [ {", ".join(NUMBERS)} ]')
    members.append(f'"strings":[{",".join(STRINGS)}]')
    members.append('"nested": {"a": [{"b": 1.10, "c": [-0, 1e400]}], "\\u0000key": "\\ud800"}')
    members.append('"plain": [true, false, null, {}, []]')
    return "{\n  " + ",\n  ".join(members) + "\n}"


def exact(text: str) -> Any:
    """`text` parsed with every number kept as its text and every string as its value."""
    return json.loads(text, parse_int=str, parse_float=str, parse_constant=str)


PAYLOAD = payload_text()


def body_text(path: str, payload: str) -> str:
    """A body for `path` whose first job carries `payload`, written as is."""
    job = '{"tenant_id": "t", "priority": 5, "dependencies": {"openai": 1}, "payload": PAYLOAD}'
    if path in SINGLE_ROUTES:
        return job.replace("{", '{"batch_name": "b", ', 1).replace("PAYLOAD", payload)
    jobs = [job.replace("PAYLOAD", payload), job.replace("PAYLOAD", "{}")]
    return '{"batch_name": "b", "jobs": [' + ", ".join(jobs) + "]}"


def decisions_of(path: str, body: Any) -> list[dict[str, Any]]:
    """The decisions of an answer of `path`."""
    if path in SINGLE_ROUTES:
        return [body]
    if path in PARTIAL_ROUTES:
        return list(body["results"])
    return list(body)


def stored_payload(db: psycopg.Connection, job_id: str) -> str:
    """The payload of job `job_id` as the database holds it."""
    text: str = stored_job(db, job_id, "payload::text AS payload")["payload"]
    return text


def test_the_payload_covers_what_it_claims() -> None:
    parsed = exact(PAYLOAD)
    assert parsed["numbers"] == NUMBERS
    assert parsed["n1"] == "-0" and parsed["n15"] == "1e400"
    assert parsed["s1"] == "\x00" and parsed["s3"] == "\ud800"
    assert len(PAYLOAD.encode()) < 64 * 1024


@pytest.mark.parametrize("path", SINGLE_ROUTES + PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_every_number_and_string_is_stored_as_sent(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, openai_user: UUID, path: str
) -> None:
    result = app_client.simulate_post(
        path,
        body=body_text(path, PAYLOAD).encode(),
        headers={"X-User-ID": str(openai_user), "Content-Type": "application/json"},
    )

    assert result.status_code in (200, 202), result.text
    decisions = decisions_of(path, result.json)
    assert {decision["status"] for decision in decisions} == {"Accepted"}
    stored = stored_payload(db, decisions[0]["job_id"])
    assert stored == PAYLOAD
    assert exact(stored) == exact(PAYLOAD)
    if len(decisions) > 1:
        assert stored_payload(db, decisions[1]["job_id"]) == "{}"


def test_a_missing_payload_is_stored_as_an_empty_object(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, openai_user: UUID
) -> None:
    body = '{"batch_name": "b", "tenant_id": "t", "priority": 5}'

    result = app_client.simulate_post(
        SINGLE_ROUTES[0],
        body=body.encode(),
        headers={"X-User-ID": str(openai_user), "Content-Type": "application/json"},
    )

    assert result.status_code == 202, result.text
    assert stored_payload(db, result.json["job_id"]) == "{}"


@pytest.mark.concurrency
def test_every_number_and_string_is_stored_as_sent_through_gunicorn(
    gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    path = ATOMIC_ROUTES[1]

    response = requests.post(
        gunicorn_server.url + path,
        data=body_text(path, PAYLOAD).encode(),
        headers={"X-User-ID": str(openai_user), "Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 202, response.text
    [first, second] = response.json()
    assert stored_payload(db, first["job_id"]) == PAYLOAD
    assert stored_payload(db, second["job_id"]) == "{}"
