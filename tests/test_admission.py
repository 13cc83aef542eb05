"""Admission through the real app and a real Postgres: reasons, order, tokens, batches, storage.

Every test gets a fresh migrated database, sets its user and config through the factories, and
sends requests through the app `create_app` builds. Refill is 0 wherever a count or a token
level is asserted exactly, so outcomes do not depend on how fast the machine is.
"""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest

from tests.support.answers import RATE_LIMITED
from tests.support.app import ATOMIC_ROUTES, PARTIAL_ROUTES, SINGLE_ROUTES, post_json
from tests.support.bodies import batch, job, single
from tests.support.factories import (
    activate_config,
    bucket_tokens,
    create_user,
    jobs_of,
    limits,
    stored_job,
    stored_tokens,
    user_with_config,
)

SINGLE = SINGLE_ROUTES[0]
PARTIAL = PARTIAL_ROUTES[0]
ATOMIC = ATOMIC_ROUTES[0]


def stored(db: psycopg.Connection, job_id: str) -> dict[str, Any]:
    """The jobs row of `job_id`, with the payload as the text Postgres holds."""
    return stored_job(
        db,
        job_id,
        "user_id, source, batch_name, tenant_id, priority, dependencies,"
        " payload::text AS payload_text, status, reason",
    )


def submit(
    client: falcon.testing.TestClient,
    user_id: UUID,
    priority: int = 5,
    dependencies: dict[str, int] | None = None,
    **extra: Any,
) -> falcon.testing.Result:
    """One single job through the dashboard route."""
    return post_json(client, SINGLE, user_id, single(priority, dependencies, **extra))


def assert_accepted(result: falcon.testing.Result) -> None:
    """`result` is a single job's 202."""
    assert result.status_code == 202, result.json
    assert result.json["status"] == "Accepted"
    assert result.json["reason"] == ""


def assert_rejected(result: falcon.testing.Result, reason: str) -> None:
    """`result` is a single job's 429 for exactly `reason`."""
    assert result.status_code == 429, result.json
    assert result.json["status"] == "Rejected"
    assert result.json["reason"] == reason


# --- Each rejection reason, with its exact text ----------------------------------------------


def test_priority_below_min_priority_is_rejected(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)}, min_priority=5)

    result = submit(app_client, user_id, priority=4, dependencies={"openai": 1})

    assert_rejected(result, "priority too low")
    assert "Retry-After" not in result.headers
    assert bucket_tokens(db, user_id, "openai") == 10
    assert_accepted(submit(app_client, user_id, priority=5, dependencies={"openai": 1}))


def test_dependency_missing_from_config_is_rejected(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})

    result = submit(app_client, user_id, dependencies={"openai": 1, "stripe": 1})

    assert_rejected(result, "dependency 'stripe' is not configured")
    assert "Retry-After" not in result.headers
    assert bucket_tokens(db, user_id, "openai") == 10


def test_cost_above_capacity_is_rejected(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 5)})

    result = submit(app_client, user_id, dependencies={"openai": 11})

    assert_rejected(result, "dependency 'openai' cost 11 exceeds capacity 10")
    assert "Retry-After" not in result.headers
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10}))


def test_empty_bucket_is_rate_limited(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 8}))

    result = submit(app_client, user_id, dependencies={"openai": 3})

    assert_rejected(result, RATE_LIMITED)
    assert bucket_tokens(db, user_id, "openai") == 2


# --- The order of the checks -------------------------------------------------------------------


def test_priority_is_checked_before_everything_else(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)}, min_priority=6)
    assert_accepted(submit(app_client, user_id, priority=10, dependencies={"openai": 10}))

    result = submit(app_client, user_id, priority=2, dependencies={"unknown": 1, "openai": 99})

    assert_rejected(result, "priority too low")


def test_unconfigured_is_checked_before_capacity_of_every_dependency(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"aaa": limits(10)})

    # 'aaa' (over capacity) sorts before 'zzz' (not configured), yet the configured check
    # runs over every dependency before the capacity check runs over any.
    result = submit(app_client, user_id, dependencies={"aaa": 11, "zzz": 1})

    assert_rejected(result, "dependency 'zzz' is not configured")


def test_capacity_is_checked_before_tokens_of_every_dependency(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"aaa": limits(10), "bbb": limits(10)})
    assert_accepted(submit(app_client, user_id, dependencies={"aaa": 10}))

    result = submit(app_client, user_id, dependencies={"aaa": 1, "bbb": 11})

    assert_rejected(result, "dependency 'bbb' cost 11 exceeds capacity 10")


def test_unconfigured_dependencies_are_reported_in_name_order(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})

    result = submit(app_client, user_id, dependencies={"zeta": 1, "openai": 1, "alpha": 1})

    assert_rejected(result, "dependency 'alpha' is not configured")


def test_over_capacity_dependencies_are_reported_in_name_order(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"stripe": limits(5), "openai": limits(7)})

    result = submit(app_client, user_id, dependencies={"stripe": 6, "openai": 8})

    assert_rejected(result, "dependency 'openai' cost 8 exceeds capacity 7")


def test_short_buckets_are_reported_in_name_order(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"stripe": limits(5), "openai": limits(5)})
    assert_accepted(submit(app_client, user_id, dependencies={"stripe": 5, "openai": 5}))

    result = submit(app_client, user_id, dependencies={"stripe": 1, "openai": 1})

    assert_rejected(result, RATE_LIMITED)


# --- unknown_dependencies "allow", and jobs without dependencies ------------------------------


def test_allow_admits_an_unconfigured_dependency_without_limiting_it(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(1)}, unknown_dependencies="allow")

    for _ in range(3):
        assert_accepted(submit(app_client, user_id, dependencies={"search": 1_000_000}))
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 1, "search": 5}))
    # The configured dependency is still limited, and the unknown one got no bucket.
    assert_rejected(
        submit(app_client, user_id, dependencies={"openai": 1, "search": 5}),
        RATE_LIMITED,
    )
    buckets = db.execute(
        "SELECT dependency FROM token_buckets WHERE user_id = %s", [user_id]
    ).fetchall()
    assert buckets == [("openai",)]
    assert bucket_tokens(db, user_id, "openai") == 0


def test_job_without_dependencies_is_admitted_even_when_buckets_are_empty(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(1)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 1}))

    absent = submit(app_client, user_id)
    empty = submit(app_client, user_id, dependencies={})

    assert_accepted(absent)
    assert_accepted(empty)
    assert stored(db, absent.json["job_id"])["dependencies"] == {}
    assert stored(db, empty.json["job_id"])["dependencies"] == {}


def test_job_without_dependencies_still_needs_the_priority(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(1)}, min_priority=3)

    assert_rejected(submit(app_client, user_id, priority=2), "priority too low")


# --- Token accounting ---------------------------------------------------------------------------


def test_bucket_admits_exactly_its_capacity(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})

    results = [submit(app_client, user_id, dependencies={"openai": 1}) for _ in range(11)]

    for result in results[:10]:
        assert_accepted(result)
    assert_rejected(results[10], RATE_LIMITED)
    assert stored_tokens(db, user_id, "openai") == 0
    assert bucket_tokens(db, user_id, "openai") == 0
    # More rejections leave it at zero, never below.
    assert_rejected(submit(app_client, user_id, dependencies={"openai": 5}), RATE_LIMITED)
    assert stored_tokens(db, user_id, "openai") == 0


def test_a_job_takes_all_of_its_costs_or_none(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10), "stripe": limits(10)})
    assert_accepted(submit(app_client, user_id, dependencies={"stripe": 8}))

    result = submit(app_client, user_id, dependencies={"openai": 5, "stripe": 5})

    assert_rejected(result, "dependency 'stripe' rate limit exceeded")
    assert bucket_tokens(db, user_id, "openai") == 10
    assert bucket_tokens(db, user_id, "stripe") == 2
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 5, "stripe": 2}))
    assert bucket_tokens(db, user_id, "openai") == 5
    assert bucket_tokens(db, user_id, "stripe") == 0


def test_bucket_refills_over_time(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 20)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10}))
    assert_rejected(submit(app_client, user_id, dependencies={"openai": 8}), RATE_LIMITED)

    time.sleep(0.3)  # 20 tokens/s: about 6 tokens back

    assert_accepted(submit(app_client, user_id, dependencies={"openai": 5}))
    assert bucket_tokens(db, user_id, "openai") < 5


def test_refill_never_goes_above_capacity(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 1)})
    time.sleep(0.3)  # a full bucket that would hold 10.3 without the cap

    assert bucket_tokens(db, user_id, "openai") == 10
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10}))
    assert stored_tokens(db, user_id, "openai") == 0
    result = submit(app_client, user_id, dependencies={"openai": 1})
    assert_rejected(result, RATE_LIMITED)
    assert result.headers["Retry-After"] == "1"


# --- Retry-After --------------------------------------------------------------------------------


def test_retry_after_is_the_wait_until_the_job_fits(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 1)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10}))

    result = submit(app_client, user_id, dependencies={"openai": 3})

    assert_rejected(result, RATE_LIMITED)
    assert result.headers["Retry-After"] == "3"


def test_retry_after_is_at_least_one_second(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 2)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10}))

    # One token at 2 per second is half a second away: rounded up to a whole second.
    result = submit(app_client, user_id, dependencies={"openai": 1})

    assert_rejected(result, RATE_LIMITED)
    assert result.headers["Retry-After"] == "1"


def test_retry_after_waits_for_the_slowest_dependency(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 1), "stripe": limits(10, 1)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10, "stripe": 10}))

    result = submit(app_client, user_id, dependencies={"openai": 2, "stripe": 5})

    assert_rejected(result, RATE_LIMITED)
    assert result.headers["Retry-After"] == "5"


def test_retry_after_counts_the_priority_reserve(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(100, 10)}, priority_reserve=0.2)
    assert_accepted(submit(app_client, user_id, priority=10, dependencies={"openai": 100}))

    # Priority 1 must leave 20 behind: 10 + 20 tokens at 10 per second is 3 seconds.
    result = submit(app_client, user_id, priority=1, dependencies={"openai": 10})

    assert_rejected(result, RATE_LIMITED)
    assert result.headers["Retry-After"] == "3"


def test_no_retry_after_when_a_bucket_never_refills(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10}))

    result = submit(app_client, user_id, dependencies={"openai": 1})

    assert_rejected(result, RATE_LIMITED)
    assert "Retry-After" not in result.headers


def test_no_retry_after_when_any_short_bucket_never_refills(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 1), "stripe": limits(10, 0)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 10, "stripe": 10}))

    result = submit(app_client, user_id, dependencies={"openai": 1, "stripe": 1})

    assert_rejected(result, RATE_LIMITED)
    assert "Retry-After" not in result.headers


def test_no_retry_after_when_the_reserve_can_never_let_the_job_in(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10, 1)}, priority_reserve=0.5)

    # Priority 1 must leave 5 of 10 behind, so a cost of 6 never fits, however long it waits.
    result = submit(app_client, user_id, priority=1, dependencies={"openai": 6})

    assert_rejected(result, RATE_LIMITED)
    assert "Retry-After" not in result.headers


# --- The priority reserve -----------------------------------------------------------------------


def test_lowest_priority_stops_at_the_reserve(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(100)}, priority_reserve=0.2)

    assert_rejected(
        submit(app_client, user_id, priority=1, dependencies={"openai": 81}),
        RATE_LIMITED,
    )
    assert_accepted(submit(app_client, user_id, priority=1, dependencies={"openai": 80}))
    assert_rejected(
        submit(app_client, user_id, priority=1, dependencies={"openai": 1}),
        RATE_LIMITED,
    )
    assert bucket_tokens(db, user_id, "openai") == 20


def test_highest_priority_can_empty_the_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(100)}, priority_reserve=0.2)
    assert_accepted(submit(app_client, user_id, priority=1, dependencies={"openai": 80}))
    assert_rejected(
        submit(app_client, user_id, priority=9, dependencies={"openai": 20}),
        RATE_LIMITED,
    )

    assert_accepted(submit(app_client, user_id, priority=10, dependencies={"openai": 20}))

    assert bucket_tokens(db, user_id, "openai") == 0


def test_middle_priority_stops_at_its_share_of_the_reserve(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    # C x f x (10 - p) / 9 = 90 x 0.2 x 6 / 9 = 12 tokens kept back from priority 4.
    user_id = user_with_config(db, {"openai": limits(90)}, priority_reserve=0.2)

    assert_rejected(
        submit(app_client, user_id, priority=4, dependencies={"openai": 79}),
        RATE_LIMITED,
    )
    assert_accepted(submit(app_client, user_id, priority=4, dependencies={"openai": 78}))
    assert_rejected(
        submit(app_client, user_id, priority=4, dependencies={"openai": 1}),
        RATE_LIMITED,
    )
    assert bucket_tokens(db, user_id, "openai") == 12
    # Priority 7 keeps back 90 x 0.2 x 3 / 9 = 6, so it may take 6 more.
    assert_rejected(
        submit(app_client, user_id, priority=7, dependencies={"openai": 7}),
        RATE_LIMITED,
    )
    assert_accepted(submit(app_client, user_id, priority=7, dependencies={"openai": 6}))
    assert bucket_tokens(db, user_id, "openai") == 6


def test_no_reserve_is_a_plain_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(100)}, priority_reserve=0)

    assert_accepted(submit(app_client, user_id, priority=1, dependencies={"openai": 100}))

    assert bucket_tokens(db, user_id, "openai") == 0


# --- Partial batches ----------------------------------------------------------------------------


def test_partial_batch_decides_highest_priority_first_and_answers_in_request_order(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})
    body = batch(
        job(2, {"openai": 6}, tenant_id="low-a"),
        job(9, {"openai": 6}, tenant_id="high"),
        job(2, {"openai": 4}, tenant_id="low-b"),
        job(2, {"openai": 4}, tenant_id="low-c"),
    )
    # Request order would admit low-a and low-b. Highest priority first, ties in request
    # order, admits high (4 left), rejects low-a, admits low-b (0 left), rejects low-c.
    # Ties in reverse order would admit low-c instead of low-b.

    result = post_json(app_client, PARTIAL, user_id, body)

    assert result.status_code == 200
    assert result.json["total"] == 4
    assert result.json["accepted"] == 2
    assert result.json["rejected"] == 2
    answers = result.json["results"]
    assert [(answer["status"], answer["reason"]) for answer in answers] == [
        ("Rejected", RATE_LIMITED),
        ("Accepted", ""),
        ("Accepted", ""),
        ("Rejected", RATE_LIMITED),
    ]
    rows = [stored(db, answer["job_id"]) for answer in answers]
    assert [row["tenant_id"] for row in rows] == ["low-a", "high", "low-b", "low-c"]
    assert [(row["status"], row["reason"]) for row in rows] == [
        ("Rejected", RATE_LIMITED),
        ("Accepted", ""),
        ("Accepted", ""),
        ("Rejected", RATE_LIMITED),
    ]
    assert bucket_tokens(db, user_id, "openai") == 0


def test_partial_batch_stores_every_job_with_its_own_reason(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(5), "stripe": limits(3)}, min_priority=2)
    body = batch(
        job(1, {"openai": 1}, tenant_id="t1"),
        job(5, {"search": 1}, tenant_id="t2"),
        job(5, {"stripe": 4}, tenant_id="t3"),
        job(5, {"openai": 5, "stripe": 3}, tenant_id="t4"),
        job(5, {"openai": 1}, tenant_id="t5"),
        job(5, tenant_id="t6"),
        batch_name="nightly",
    )
    expected = [
        ("Rejected", "priority too low"),
        ("Rejected", "dependency 'search' is not configured"),
        ("Rejected", "dependency 'stripe' cost 4 exceeds capacity 3"),
        ("Accepted", ""),
        ("Rejected", RATE_LIMITED),
        ("Accepted", ""),
    ]

    result = post_json(app_client, PARTIAL, user_id, body)

    assert result.status_code == 200
    assert (result.json["total"], result.json["accepted"], result.json["rejected"]) == (
        6,
        2,
        4,
    )
    answers = result.json["results"]
    assert [(answer["status"], answer["reason"]) for answer in answers] == expected
    rows = [stored(db, answer["job_id"]) for answer in answers]
    assert [(row["status"], row["reason"]) for row in rows] == expected
    assert [row["tenant_id"] for row in rows] == ["t1", "t2", "t3", "t4", "t5", "t6"]
    assert {row["batch_name"] for row in rows} == {"nightly"}
    assert {row["user_id"] for row in rows} == {user_id}
    assert jobs_of(db, user_id) == 6
    assert bucket_tokens(db, user_id, "openai") == 0
    assert bucket_tokens(db, user_id, "stripe") == 0


# --- Atomic batches -----------------------------------------------------------------------------


def test_atomic_batch_all_accepted_stores_every_job(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10), "stripe": limits(10)})
    body = batch(
        job(2, {"openai": 3}, tenant_id="first"),
        job(9, {"stripe": 4}, tenant_id="second"),
        job(5, {"openai": 7, "stripe": 6}, tenant_id="third"),
    )

    result = post_json(app_client, ATOMIC, user_id, body)

    assert result.status_code == 202
    assert [(answer["status"], answer["reason"]) for answer in result.json] == [
        ("Accepted", ""),
        ("Accepted", ""),
        ("Accepted", ""),
    ]
    rows = [stored(db, answer["job_id"]) for answer in result.json]
    assert [row["tenant_id"] for row in rows] == ["first", "second", "third"]
    assert {row["status"] for row in rows} == {"Accepted"}
    assert jobs_of(db, user_id) == 3
    assert bucket_tokens(db, user_id, "openai") == 0
    assert bucket_tokens(db, user_id, "stripe") == 0


def test_atomic_batch_with_a_rejection_takes_nothing_and_stores_nothing(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10), "stripe": limits(3)}, min_priority=2)
    body = batch(
        job(5, {"openai": 2}),
        job(1, {"openai": 1}),
        job(5, {"openai": 2, "stripe": 2}),
        job(5, {"search": 1}),
        job(5),
    )

    result = post_json(app_client, ATOMIC, user_id, body)

    assert result.status_code == 207
    assert [(answer["status"], answer["reason"]) for answer in result.json] == [
        ("Rejected", "batch rejected atomically"),
        ("Rejected", "priority too low"),
        ("Rejected", "batch rejected atomically"),
        ("Rejected", "dependency 'search' is not configured"),
        ("Rejected", "batch rejected atomically"),
    ]
    assert len({answer["job_id"] for answer in result.json}) == 5
    assert "Retry-After" not in result.headers
    assert stored_tokens(db, user_id, "openai") == 10
    assert stored_tokens(db, user_id, "stripe") == 3
    assert jobs_of(db, user_id) == 0


def test_atomic_batch_jobs_see_the_buckets_as_earlier_jobs_left_them(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})

    # Each fits alone; together they do not. The later, higher-priority job goes first.
    result = post_json(
        app_client, ATOMIC, user_id, batch(job(2, {"openai": 6}), job(9, {"openai": 6}))
    )

    assert result.status_code == 207
    assert [(answer["status"], answer["reason"]) for answer in result.json] == [
        ("Rejected", RATE_LIMITED),
        ("Rejected", "batch rejected atomically"),
    ]
    assert stored_tokens(db, user_id, "openai") == 10
    assert jobs_of(db, user_id) == 0


def test_atomic_batch_that_exactly_fits_empties_the_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})

    result = post_json(
        app_client, ATOMIC, user_id, batch(job(2, {"openai": 6}), job(9, {"openai": 4}))
    )

    assert result.status_code == 202
    assert [answer["status"] for answer in result.json] == ["Accepted", "Accepted"]
    assert stored_tokens(db, user_id, "openai") == 0
    assert jobs_of(db, user_id) == 2


def test_atomic_batch_ties_are_decided_in_request_order(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})

    result = post_json(
        app_client, ATOMIC, user_id, batch(job(4, {"openai": 6}), job(4, {"openai": 5}))
    )

    assert result.status_code == 207
    assert [answer["reason"] for answer in result.json] == [
        "batch rejected atomically",
        RATE_LIMITED,
    ]
    assert stored_tokens(db, user_id, "openai") == 10


# --- What is stored -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "source"),
    [
        (SINGLE_ROUTES[0], "dashboard"),
        (SINGLE_ROUTES[1], "system"),
        (PARTIAL_ROUTES[0], "dashboard"),
        (PARTIAL_ROUTES[1], "system"),
        (ATOMIC_ROUTES[0], "dashboard"),
        (ATOMIC_ROUTES[1], "system"),
    ],
)
def test_each_job_records_the_route_it_came_through(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str, source: str
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})
    if path in SINGLE_ROUTES:
        result = post_json(app_client, path, user_id, single(5, {"openai": 1}))
        job_ids = [result.json["job_id"]]
    else:
        result = post_json(app_client, path, user_id, batch(job(5, {"openai": 1}), job(5)))
        answers = result.json["results"] if path in PARTIAL_ROUTES else result.json
        job_ids = [answer["job_id"] for answer in answers]

    assert result.status_code in (200, 202)
    assert [stored(db, job_id)["source"] for job_id in job_ids] == [source] * len(job_ids)
    assert jobs_of(db, user_id) == len(job_ids)


def test_rejected_single_job_is_stored_with_its_reason(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})

    result = submit(app_client, user_id, dependencies={"openai": 11})

    row = stored(db, result.json["job_id"])
    assert (row["status"], row["reason"]) == (
        "Rejected",
        "dependency 'openai' cost 11 exceeds capacity 10",
    )


PAYLOAD_TEXT = (
    '{"zeta": 1, "alpha": {"ünïcødé": "日本語 ✓ 🚀", "list": [1, 2.5, null, true, "x"],'
    ' "empty": {}, "deep": {"b": {"a": [{"y": 1, "x": 2}]}}}, "big": 12345678901234567890,'
    ' "escaped": "line\\nbreak \\"quoted\\" back\\\\slash", "middle": false}'
)


def ordered(text: str) -> Any:
    """`text` parsed with every object as a list of pairs, so key order is compared too."""
    return json.loads(text, object_pairs_hook=list)


def test_payload_is_stored_as_sent(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10), "stripe": limits(10)})
    body = (
        '{"batch_name": "b\\u00e4tch", "tenant_id": "tenant-ü", "priority": 7,'
        ' "dependencies": {"stripe": 2, "openai": 3}, "payload": ' + PAYLOAD_TEXT + "}"
    )

    result = app_client.simulate_post(
        SINGLE,
        body=body.encode(),
        headers={"X-User-ID": str(user_id), "Content-Type": "application/json"},
    )

    assert_accepted(result)
    row = stored(db, result.json["job_id"])
    assert ordered(row["payload_text"]) == ordered(PAYLOAD_TEXT)
    assert row["batch_name"] == "bätch"
    assert row["tenant_id"] == "tenant-ü"
    assert row["priority"] == 7
    assert row["dependencies"] == {"stripe": 2, "openai": 3}
    assert row["user_id"] == user_id


def test_payload_of_batch_jobs_is_stored_as_sent(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})
    body = (
        '{"batch_name": "many", "jobs": ['
        '{"tenant_id": "a", "priority": 3, "payload": ' + PAYLOAD_TEXT + "},"
        '{"tenant_id": "b", "priority": 4, "dependencies": {"openai": 1}}]}'
    )

    result = app_client.simulate_post(
        PARTIAL,
        body=body.encode(),
        headers={"X-User-ID": str(user_id), "Content-Type": "application/json"},
    )

    assert result.status_code == 200
    first, second = (stored(db, answer["job_id"]) for answer in result.json["results"])
    assert ordered(first["payload_text"]) == ordered(PAYLOAD_TEXT)
    assert (first["tenant_id"], first["priority"], first["dependencies"]) == (
        "a",
        3,
        {},
    )
    assert json.loads(second["payload_text"]) == {}
    assert (second["tenant_id"], second["priority"], second["dependencies"]) == (
        "b",
        4,
        {"openai": 1},
    )
    assert {first["batch_name"], second["batch_name"]} == {"many"}


# --- Who may decide -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", SINGLE_ROUTES + PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_paused_config_is_forbidden(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)}, paused=True)
    body = single(5, {"openai": 1}) if path in SINGLE_ROUTES else batch(job(5, {"openai": 1}))

    result = post_json(app_client, path, user_id, body)

    assert result.status_code == 403
    assert result.json == {"title": "403 Forbidden", "description": "service paused"}
    assert stored_tokens(db, user_id, "openai") == 10
    assert jobs_of(db, user_id) == 0


@pytest.mark.parametrize("path", SINGLE_ROUTES + PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_user_without_active_config_is_forbidden(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user_id = create_user(db)
    body = single(5) if path in SINGLE_ROUTES else batch(job(5))

    result = post_json(app_client, path, user_id, body)

    assert result.status_code == 403
    assert result.json == {"title": "403 Forbidden", "description": "no active config"}
    assert jobs_of(db, user_id) == 0


@pytest.mark.parametrize("path", SINGLE_ROUTES + PARTIAL_ROUTES + ATOMIC_ROUTES)
def test_unknown_user_is_unauthorized(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user_with_config(db, {"openai": limits(10)})
    body = single(5) if path in SINGLE_ROUTES else batch(job(5))

    result = post_json(app_client, path, uuid4(), body)

    assert result.status_code == 401
    assert set(result.json) == {"title", "description"}
    assert result.json["title"] == "401 Unauthorized"
    row = db.execute("SELECT count(*) FROM jobs").fetchone()
    assert row == (0,)


def test_pausing_takes_effect_on_the_next_request(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)})
    assert_accepted(submit(app_client, user_id, dependencies={"openai": 4}))

    activate_config(db, user_id, {"openai": limits(10)}, paused=True)
    paused = submit(app_client, user_id, dependencies={"openai": 1})
    activate_config(db, user_id, {"openai": limits(10)}, paused=False)
    resumed = submit(app_client, user_id, dependencies={"openai": 6})

    assert paused.status_code == 403
    assert paused.json["description"] == "service paused"
    assert_accepted(resumed)
    assert bucket_tokens(db, user_id, "openai") == 0


def test_one_user_cannot_spend_another_users_buckets(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    alice = user_with_config(db, {"openai": limits(5)})
    bob = user_with_config(db, {"openai": limits(5), "stripe": limits(5)})

    for _ in range(5):
        assert_accepted(submit(app_client, alice, dependencies={"openai": 1}))
    assert_rejected(submit(app_client, alice, dependencies={"openai": 1}), RATE_LIMITED)
    # Bob's identically named bucket is untouched, and Alice cannot use Bob's 'stripe'.
    assert bucket_tokens(db, bob, "openai") == 5
    assert_rejected(
        submit(app_client, alice, dependencies={"stripe": 1}),
        "dependency 'stripe' is not configured",
    )
    assert_accepted(submit(app_client, bob, dependencies={"openai": 5, "stripe": 5}))
    assert bucket_tokens(db, alice, "openai") == 0
    assert bucket_tokens(db, bob, "openai") == 0
    assert bucket_tokens(db, bob, "stripe") == 0
    assert jobs_of(db, alice) == 7
    assert jobs_of(db, bob) == 1
