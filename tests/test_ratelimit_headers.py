"""RateLimit-Policy and RateLimit on every job answer, checked against the buckets' rows.

The headers are the structured-field form of draft-ietf-httpapi-ratelimit-headers (see
janus/resources/ratelimit.py). Each test reads the bucket rows the decision left
(`token_buckets`: a bucket the decision debited holds its tokens and effective refill as of
the decision) and works out what the headers must say with Decimal arithmetic of its own.
Refill is 0, or the bucket was debited by the request, wherever a number is asserted exactly.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest
import requests

from janus.admission import Budget
from janus.resources.ratelimit import SF_INTEGER_MAX, ratelimit_headers
from tests.conftest import GunicornServer
from tests.support.app import ATOMIC_ROUTES, PARTIAL_ROUTES, SINGLE_ROUTES, post_json
from tests.support.bodies import batch, job, single
from tests.support.factories import limits, user_with_config

Params = dict[str, int]


# --- Reading the headers as a client would ---------------------------------------------------

# One member of an sf-list whose item is an sf-string with Integer parameters: all the draft
# uses. RFC 9651: list members are separated by a comma and optional spaces.
_MEMBER = re.compile(
    r'"(?P<name>(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"(?P<params>(?:;[a-z][a-z0-9_.*-]*=\d{1,15})*)'
)
_SEPARATOR = re.compile(r"[ \t]*,[ \t]*")


def parse_sf_list(value: str) -> dict[str, Params]:
    """An sf-list of String items with Integer parameters: {name: {parameter: value}}."""
    members: dict[str, Params] = {}
    position = 0
    while True:
        match = _MEMBER.match(value, position)
        assert match is not None, f"not an sf-list of strings at {position}: {value!r}"
        name = re.sub(r"\\(.)", r"\1", match["name"])
        params = dict(
            (key, int(number))
            for key, number in (item.split("=") for item in match["params"].split(";")[1:])
        )
        assert name not in members, f"{name!r} twice in {value!r}"
        members[name] = params
        position = match.end()
        if position == len(value):
            return members
        separator = _SEPARATOR.match(value, position)
        assert separator is not None, f"no comma at {position}: {value!r}"
        position = separator.end()


def told(result: Any) -> tuple[dict[str, Params], dict[str, Params]]:
    """(RateLimit-Policy, RateLimit) of an answer, parsed; both must be there."""
    headers = result.headers
    assert "RateLimit-Policy" in headers and "RateLimit" in headers, dict(headers)
    policy = parse_sf_list(headers["RateLimit-Policy"])
    limit = parse_sf_list(headers["RateLimit"])
    assert list(policy) == list(limit), "the two headers name the same policies, in one order"
    return policy, limit


# --- What the rows say the headers must be ---------------------------------------------------


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def expected_from_rows(
    db: psycopg.Connection, user_id: UUID, names: list[str]
) -> tuple[dict[str, Params], dict[str, Params]]:
    """What the headers must say of the buckets `names`, from their stored rows.

    Exact when each row is as the decision left it: debited by it, or never refilling.
    """
    rows = db.execute(
        """
        SELECT dependency, capacity, refill_per_second, effective_refill_per_second, tokens
          FROM token_buckets
         WHERE user_id = %s AND dependency = ANY(%s)
         ORDER BY dependency
        """,
        [user_id, names],
    ).fetchall()
    assert [row[0] for row in rows] == sorted(names)
    policy: dict[str, Params] = {}
    limit: dict[str, Params] = {}
    for name, capacity, refill, effective, tokens in rows:
        policy[name] = {"q": capacity}
        if refill > 0:
            policy[name]["w"] = _ceil(Decimal(capacity) / refill)
        limit[name] = {"r": _floor(tokens)}
        if tokens >= capacity:
            limit[name]["t"] = 0
        elif effective > 0:
            limit[name]["t"] = _ceil((_floor(tokens) + 1 - tokens) / effective)
    return policy, limit


def assert_told_as_rows(result: Any, db: psycopg.Connection, user_id: UUID, *names: str) -> None:
    """The answer's headers say exactly what the rows of `names` say."""
    assert told(result) == expected_from_rows(db, user_id, list(names))


# --- Every kind of job answer ----------------------------------------------------------------


@pytest.mark.parametrize("path", SINGLE_ROUTES)
def test_an_accepted_job_tells_each_bucket_it_left(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    # openai: a refill of 3/s fills 10 in 4 s (3.33, rounded up); stripe never refills.
    user_id = user_with_config(db, {"openai": limits(10, 3), "stripe": limits(4)})

    result = post_json(app_client, path, user_id, single(10, {"openai": 3, "stripe": 1}))

    assert result.status_code == 202
    # Both buckets were debited: their rows are as the decision left them.
    assert_told_as_rows(result, db, user_id, "openai", "stripe")
    # openai was full, so it holds exactly 7: its 8th token comes in 1/3 s, told as 1.
    assert result.headers["RateLimit-Policy"] == '"openai";q=10;w=4, "stripe";q=4'
    assert result.headers["RateLimit"] == '"openai";r=7;t=1, "stripe";r=3'


@pytest.mark.parametrize("path", SINGLE_ROUTES)
def test_a_rate_limited_job_tells_the_bucket_beside_retry_after(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    # 0.001 tokens a second: the 1 token the job needs takes 1,000 s.
    user_id = user_with_config(db, {"openai": limits(4, 0.001)}, priority_reserve=0)
    assert post_json(app_client, path, user_id, single(10, {"openai": 4})).status_code == 202
    emptied = expected_from_rows(db, user_id, ["openai"])

    result = post_json(app_client, path, user_id, single(10, {"openai": 1}))

    assert result.status_code == 429
    assert result.headers["Retry-After"] == "1000"
    policy, limit = told(result)
    assert policy == emptied[0] == {"openai": {"q": 4, "w": 4000}}
    # Nothing taken: the bucket as the first job left it, plus what refilled since (well
    # under one token, so still 0; the next token still 1,000 s away, less under a second).
    assert emptied[1] == {"openai": {"r": 0, "t": 1000}}
    assert limit == emptied[1]
    assert int(result.headers["Retry-After"]) >= limit["openai"]["t"]


@pytest.mark.parametrize("path", PARTIAL_ROUTES)
def test_a_partial_batch_tells_the_buckets_after_all_its_jobs(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user_id = user_with_config(db, {"openai": limits(10), "stripe": limits(5)})
    body = batch(job(5, {"openai": 3}), job(5, {"openai": 8}), job(9, {"stripe": 2}))

    result = post_json(app_client, path, user_id, body)

    assert result.status_code == 200
    assert (result.json["accepted"], result.json["rejected"]) == (2, 1)
    assert_told_as_rows(result, db, user_id, "openai", "stripe")
    assert told(result)[1] == {"openai": {"r": 7}, "stripe": {"r": 3}}


@pytest.mark.parametrize("path", ATOMIC_ROUTES)
def test_an_accepted_atomic_batch_tells_the_buckets_it_left(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 2)})
    body = batch(job(5, {"openai": 3}), job(5, {"openai": 4}))

    result = post_json(app_client, path, user_id, body)

    assert result.status_code == 202
    assert_told_as_rows(result, db, user_id, "openai")
    assert result.headers["RateLimit"] == '"openai";r=3;t=1'


@pytest.mark.parametrize("path", ATOMIC_ROUTES)
def test_a_rejected_atomic_batch_tells_the_buckets_untouched(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user_id = user_with_config(db, {"openai": limits(10), "stripe": limits(3)}, min_priority=3)
    post_json(app_client, SINGLE_ROUTES[0], user_id, single(5, {"openai": 4}))
    # The first job alone would take 3 of openai's 6 and 1 of stripe; the second fails.
    body = batch(job(5, {"openai": 3, "stripe": 1}), job(2, {"openai": 1}))

    result = post_json(app_client, path, user_id, body)

    assert result.status_code == 207
    assert_told_as_rows(result, db, user_id, "openai", "stripe")
    # Not 3 and 2: the batch took nothing. stripe is full, so its t is 0.
    assert told(result)[1] == {"openai": {"r": 6}, "stripe": {"r": 3, "t": 0}}


# --- What is told, and what is not -----------------------------------------------------------


def test_the_reset_counts_the_effective_refill_and_the_window_the_configured_one(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    adaptive = {
        "capacity": 10,
        "refill_per_second": 0.5,
        "adaptive": {"decrease": 0.5, "floor": 0.1, "recovery_per_minute": 0.001},
    }
    user_id = user_with_config(db, {"openai": adaptive}, priority_reserve=0)
    db.execute("SELECT report_upstream_throttled(%s, ARRAY['openai'])", [user_id])

    result = post_json(app_client, SINGLE_ROUTES[0], user_id, single(5, {"openai": 3}))

    assert result.status_code == 202
    assert_told_as_rows(result, db, user_id, "openai")
    # A full refill at the configured 0.5/s takes 20 s; the next token, at about 0.25/s, 4 s.
    assert result.headers["RateLimit-Policy"] == '"openai";q=10;w=20'
    assert result.headers["RateLimit"] == '"openai";r=7;t=4'


def test_a_dependency_without_a_bucket_gets_no_policy(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)}, unknown_dependencies="allow")

    both = post_json(app_client, SINGLE_ROUTES[0], user_id, single(5, {"openai": 1, "s3": 1}))
    unknown_only = post_json(app_client, SINGLE_ROUTES[0], user_id, single(5, {"s3": 1}))
    no_dependency = post_json(app_client, PARTIAL_ROUTES[0], user_id, batch(job(5)))

    assert both.status_code == 202
    assert told(both) == ({"openai": {"q": 10}}, {"openai": {"r": 9}})
    # The draft's lists are never empty: nothing to tell, no header.
    for result in (unknown_only, no_dependency):
        assert result.status_code in (200, 202)
        assert "RateLimit-Policy" not in result.headers
        assert "RateLimit" not in result.headers


def test_a_name_an_sf_string_cannot_hold_is_left_out_and_quotes_are_escaped(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    names = {'say "hi" \\o/': limits(5), "données": limits(5), "tab\there": limits(5)}
    user_id = user_with_config(db, {"openai": limits(5), **names})

    result = post_json(
        app_client, SINGLE_ROUTES[0], user_id, single(5, {"openai": 1, **dict.fromkeys(names, 1)})
    )
    only_unsayable = post_json(
        app_client, SINGLE_ROUTES[0], user_id, single(5, {"données": 1, "tab\there": 1})
    )

    assert result.status_code == only_unsayable.status_code == 202
    assert result.headers["RateLimit-Policy"] == '"openai";q=5, "say \\"hi\\" \\\\o/";q=5'
    assert told(result)[1] == {"openai": {"r": 4}, 'say "hi" \\o/': {"r": 4}}
    assert "RateLimit" not in only_unsayable.headers
    assert "RateLimit-Policy" not in only_unsayable.headers


def test_a_replayed_answer_tells_no_budget(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})
    body = single(5, {"openai": 2})
    key = {"Idempotency-Key": "once"}

    first = post_json(app_client, SINGLE_ROUTES[1], user_id, body, key)
    replayed = post_json(app_client, SINGLE_ROUTES[1], user_id, body, key)

    assert told(first)[1] == {"openai": {"r": 8}}
    # It decides nothing and reads no bucket, as it gives no Retry-After.
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert "RateLimit" not in replayed.headers
    assert "RateLimit-Policy" not in replayed.headers


def test_huge_windows_and_waits_are_told_as_the_largest_sf_integer() -> None:
    budgets = [
        Budget("slow", quota=10**12, window=10**21, remaining=0, reset=10**20),
        Budget("never", quota=3, window=None, remaining=1, reset=None),
        Budget("full", quota=3, window=2, remaining=3, reset=0),
    ]

    headers = ratelimit_headers(budgets)

    assert headers == {
        "RateLimit-Policy": f'"slow";q={10**12};w={SF_INTEGER_MAX}, "never";q=3, "full";q=3;w=2',
        "RateLimit": f'"slow";r=0;t={SF_INTEGER_MAX}, "never";r=1, "full";r=3;t=0',
    }
    assert ratelimit_headers([]) == {}


# --- Over real HTTP ----------------------------------------------------------------------------


def test_over_http_both_headers_on_an_accepted_and_a_rejected_job(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(4, 0.001)}, priority_reserve=0)
    url = gunicorn_server.url.rstrip("/") + SINGLE_ROUTES[1]
    headers = {"X-User-ID": str(user_id)}

    accepted = requests.post(url, json=single(10, {"openai": 3}), headers=headers, timeout=10)
    after_accepted = expected_from_rows(db, user_id, ["openai"])
    rejected = requests.post(url, json=single(10, {"openai": 2}), headers=headers, timeout=10)

    assert accepted.status_code == 202
    assert (
        told(accepted)
        == after_accepted
        == ({"openai": {"q": 4, "w": 4000}}, {"openai": {"r": 1, "t": 1000}})
    )
    assert rejected.status_code == 429
    assert rejected.headers["Retry-After"] == "1000"
    assert told(rejected) == after_accepted
