"""Tenant shares: each tenant's own bucket per dependency, at its share of the dependency's.

The exact decisions go through the real app in-process (`app_client`) on a real Postgres,
config changes through PUT /dashboard/config and rollback, pruning through the CLI's code;
the issue's done-when (a hog tenant among others, a thousand jobs) through real gunicorn and
concurrent HTTP clients. Refill is 0 wherever a count or a token level is asserted exactly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest
import requests

from janus.db.maintenance import prune_full_tenant_buckets
from tests.support.answers import Answer, over_share, rate_limited
from tests.support.app import (
    ATOMIC_ROUTES,
    CONFIG,
    PARTIAL_ROUTES,
    SINGLE_ROUTES,
    headers_for,
    post_json,
    put_config,
)
from tests.support.bodies import batch, job, single
from tests.support.burst import (
    Call,
    assert_no_server_error,
    assert_tenant_shares_kept,
    burst,
    deadlocks_detected,
    statuses,
    stored_jobs,
)
from tests.support.burst import single as single_call
from tests.support.factories import (
    activate_config,
    bucket_tokens,
    create_user,
    jobs_of,
    limits,
    tenant_bucket_rows,
    tenant_tokens,
    user_with_config,
)

SINGLE = SINGLE_ROUTES[0]
PARTIAL = PARTIAL_ROUTES[0]
ATOMIC = ATOMIC_ROUTES[0]
VERSIONS = "/dashboard/config/versions"


def submit(
    client: falcon.testing.TestClient,
    user_id: UUID,
    tenant: str,
    cost: int,
    *,
    priority: int = 5,
    dependency: str = "openai",
) -> Answer:
    """One single job of `tenant` needing `cost` of `dependency`."""
    body = single(priority, {dependency: cost}, tenant_id=tenant)
    return Answer.of(post_json(client, SINGLE, user_id, body))


def decision(answer: Answer) -> tuple[int, str, str | None]:
    """A single job's answer as (status code, reason, Retry-After)."""
    return answer.status, answer.json()["reason"], answer.headers.get("retry-after")


def accepted(answer: Answer) -> bool:
    """Whether a single job was accepted (and answered as such)."""
    assert answer.status in (202, 429), answer.text
    return answer.status == 202


def tenant_bucket(db: psycopg.Connection, user_id: UUID, dependency: str, tenant: str) -> Any:
    """The stored row of a tenant bucket: (capacity, refill_per_second, tokens), or None."""
    return db.execute(
        "SELECT capacity::float8, refill_per_second::float8, tokens::float8 FROM tenant_buckets"
        " WHERE user_id = %s AND dependency = %s AND tenant_id = %s",
        [user_id, dependency, tenant],
    ).fetchone()


# --- Exact decisions ----------------------------------------------------------------------------


def test_a_tenant_gets_exactly_its_share_and_others_still_get_theirs(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Share 0.5 of 10: 5 jobs of cost 1 per tenant, then the tenant reason, never Retry-After."""
    user_id = user_with_config(db, {"openai": limits(10)}, tenant_share=0.5)

    hog = [submit(app_client, user_id, "hog", 1) for _ in range(8)]

    assert [accepted(answer) for answer in hog] == [True] * 5 + [False] * 3
    assert {decision(answer) for answer in hog[5:]} == {(429, over_share("hog"), None)}
    assert tenant_tokens(db, user_id, "openai", "hog") == 0
    assert bucket_tokens(db, user_id, "openai") == 5

    # Another tenant's bucket is its own: full, so it gets its 5 while the hog gets nothing.
    other = [submit(app_client, user_id, "other", 1) for _ in range(5)]
    assert [accepted(answer) for answer in other] == [True] * 5
    assert not accepted(submit(app_client, user_id, "hog", 1))

    # The dependency is now empty: a third tenant, whose own bucket is full, is refused by it.
    third = submit(app_client, user_id, "third", 1)
    assert decision(third) == (429, rate_limited(), None)
    assert tenant_tokens(db, user_id, "openai", "third") is None  # never debited: no row
    assert bucket_tokens(db, user_id, "openai") == 0
    assert tenant_bucket_rows(db, user_id) == {("openai", "hog"): 0, ("openai", "other"): 0}
    # Every answer was stored as given: 10 accepted jobs, 5 + 1 + 1 rejected.
    rows = db.execute(
        "SELECT tenant_id, status, count(*) FROM jobs WHERE user_id = %s GROUP BY 1, 2",
        [user_id],
    ).fetchall()
    assert set(rows) == {
        ("hog", "Accepted", 5),
        ("hog", "Rejected", 4),
        ("other", "Accepted", 5),
        ("third", "Rejected", 1),
    }


def test_overrides_give_a_tenant_a_smaller_share_or_no_limit_at_all(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """An override of 0.2 gives 2 of 10; an override of 1 lets a tenant take the whole bucket."""
    user_id = user_with_config(
        db,
        {"openai": limits(10)},
        tenant_share=0.5,
        tenant_overrides={"small": 0.2, "vip": 1},
    )

    small = [submit(app_client, user_id, "small", 1) for _ in range(4)]
    assert [accepted(answer) for answer in small] == [True, True, False, False]
    assert decision(small[2]) == (429, over_share("small"), None)
    assert tenant_bucket(db, user_id, "openai", "small") == (2, 0, 0)

    vip = [submit(app_client, user_id, "vip", 1) for _ in range(9)]
    # The 8 tokens the dependency has left, well beyond the default share of 5.
    assert [accepted(answer) for answer in vip] == [True] * 8 + [False]
    assert decision(vip[8]) == (429, rate_limited(), None)
    assert tenant_bucket(db, user_id, "openai", "vip") is None
    assert bucket_tokens(db, user_id, "openai") == 0


def test_a_cost_above_the_share_is_refused_by_the_tenant_without_retry_after(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Cost 6 under a share of 5: never fits the tenant's bucket, so no Retry-After, though
    both buckets refill and the dependency's would take it at once."""
    user_id = user_with_config(db, {"openai": limits(10, 1)}, tenant_share=0.5)

    assert decision(submit(app_client, user_id, "t", 6)) == (429, over_share("t"), None)
    # Above the dependency's own capacity, the dependency's reason comes first.
    too_big = decision(submit(app_client, user_id, "t", 11))
    assert too_big == (429, "dependency 'openai' cost 11 exceeds capacity 10", None)
    # Exactly the share fits, and nothing was taken before.
    assert accepted(submit(app_client, user_id, "t", 5))
    assert tenant_bucket_rows(db, user_id) == {("openai", "t"): 0}


def test_retry_after_is_the_wait_for_the_tenant_bucket_at_its_share_of_the_refill(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Capacity 100 refilling 10/s at share 0.5: the tenant refills at 5/s, so a job of 10
    after the tenant emptied its 50 waits 10 / 5 = 2 s, though the dependency has 50."""
    user_id = user_with_config(db, {"openai": limits(100, 10)}, tenant_share=0.5)
    assert accepted(submit(app_client, user_id, "t", 50))

    assert decision(submit(app_client, user_id, "t", 10)) == (429, over_share("t"), "2")
    # 5 tokens take 1 s; a job of 1 could already fit by the time it is decided.
    assert decision(submit(app_client, user_id, "t", 5)) == (429, over_share("t"), "1")
    assert tenant_bucket(db, user_id, "openai", "t")[:2] == (50, 5)


def test_the_dependency_reason_wins_and_retry_after_waits_for_the_slowest_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Both buckets short: the dependency's reason, but the wait of the tenant's, the longer."""
    user_id = user_with_config(db, {"openai": limits(100, 10)}, tenant_share=0.5)
    assert accepted(submit(app_client, user_id, "a", 50))
    assert accepted(submit(app_client, user_id, "b", 50))

    # Short 30 at 10/s in the dependency (3 s), short 30 at 5/s in the tenant's bucket (6 s).
    assert decision(submit(app_client, user_id, "a", 30)) == (429, rate_limited(), "6")


def test_the_dependency_reason_wins_when_neither_bucket_refills(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)}, tenant_share=0.5)
    for tenant in ("a", "b"):
        assert accepted(submit(app_client, user_id, tenant, 5))

    assert decision(submit(app_client, user_id, "a", 1)) == (429, rate_limited(), None)


def test_the_priority_reserve_applies_within_the_tenant_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Reserve 0.5, share 0.5 of 100: priority 1 must leave 50 x 0.5 x 9/9 = 25 of the tenant's
    50 (the dependency's own reserve, 50 of 100, is never reached); priority 10 takes the rest."""
    user_id = user_with_config(db, {"openai": limits(100)}, tenant_share=0.5, priority_reserve=0.5)

    low = [submit(app_client, user_id, "t", 1, priority=1) for _ in range(26)]
    assert [accepted(answer) for answer in low] == [True] * 25 + [False]
    assert decision(low[25]) == (429, over_share("t"), None)
    # Priority 5 must leave 50 x 0.5 x 5 / 9 = 13.9: from 25 it may take 11.
    mid = [submit(app_client, user_id, "t", 1, priority=5) for _ in range(12)]
    assert [accepted(answer) for answer in mid] == [True] * 11 + [False]
    high = [submit(app_client, user_id, "t", 1, priority=10) for _ in range(15)]
    assert [accepted(answer) for answer in high] == [True] * 14 + [False]
    assert tenant_tokens(db, user_id, "openai", "t") == 0
    assert bucket_tokens(db, user_id, "openai") == 50


def test_retry_after_counts_the_priority_reserve_within_the_tenant_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Capacity 90 refilling 9/s, share 0.5, reserve 0.2: the tenant's 45 refill at 4.5/s, and
    priority 1 must leave 45 x 0.2 = 9. Emptied, a job of 4 at priority 1 waits for 13
    tokens (3 s), at priority 10 for 4 (1 s); the dependency keeps 45, past its own reserve."""
    user_id = user_with_config(
        db, {"openai": limits(90, 9)}, tenant_share=0.5, priority_reserve=0.2
    )
    assert accepted(submit(app_client, user_id, "t", 45, priority=10))

    low = submit(app_client, user_id, "t", 4, priority=1)
    high = submit(app_client, user_id, "t", 4, priority=10)

    assert decision(low) == (429, over_share("t"), "3")
    assert decision(high) == (429, over_share("t"), "1")


def test_an_atomic_batch_with_a_job_over_its_share_takes_and_stores_nothing(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": limits(10)}, tenant_share=0.5)
    assert accepted(submit(app_client, user_id, "a", 3))

    body = batch(
        job(5, {"openai": 2}, tenant_id="b"),
        job(5, {"openai": 3}, tenant_id="a"),  # a has 2 of its 5 left
        job(5, {"openai": 1}, tenant_id="c"),
    )
    result = Answer.of(post_json(app_client, ATOMIC, user_id, body))

    assert result.status == 207, result.text
    assert [(d["status"], d["reason"]) for d in result.json()] == [
        ("Rejected", "batch rejected atomically"),
        ("Rejected", over_share("a")),
        ("Rejected", "batch rejected atomically"),
    ]
    assert jobs_of(db, user_id) == 1
    assert bucket_tokens(db, user_id, "openai") == 7
    assert tenant_bucket_rows(db, user_id) == {("openai", "a"): 2}

    # The same batch, once it fits a's share, takes from all three tenants' buckets.
    body["jobs"][1]["dependencies"] = {"openai": 2}
    result = Answer.of(post_json(app_client, ATOMIC, user_id, body))
    assert result.status == 202, result.text
    assert tenant_bucket_rows(db, user_id) == {
        ("openai", "a"): 0,
        ("openai", "b"): 3,
        ("openai", "c"): 4,
    }
    assert bucket_tokens(db, user_id, "openai") == 2


def test_a_partial_batch_debits_each_tenant_bucket_job_by_job(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Share 0.25 of 20: 5 tokens per tenant, taken in request order (one priority)."""
    user_id = user_with_config(db, {"openai": limits(20)}, tenant_share=0.25)
    body = batch(
        job(5, {"openai": 2}, tenant_id="a"),
        job(5, {"openai": 2}, tenant_id="a"),
        job(5, {"openai": 2}, tenant_id="a"),  # a has 1 left
        job(5, {"openai": 3}, tenant_id="b"),
        job(5, {"openai": 1}, tenant_id="a"),  # a's last token
        job(5, {"openai": 3}, tenant_id="b"),  # b has 2 left
    )

    result = Answer.of(post_json(app_client, PARTIAL, user_id, body))

    assert result.status == 200, result.text
    assert [(d["status"], d["reason"]) for d in result.json()["results"]] == [
        ("Accepted", ""),
        ("Accepted", ""),
        ("Rejected", over_share("a")),
        ("Accepted", ""),
        ("Accepted", ""),
        ("Rejected", over_share("b")),
    ]
    assert tenant_bucket_rows(db, user_id) == {("openai", "a"): 0, ("openai", "b"): 2}
    assert bucket_tokens(db, user_id, "openai") == 12
    stored = db.execute(
        "SELECT status, count(*) FROM jobs WHERE user_id = %s GROUP BY 1", [user_id]
    ).fetchall()
    assert set(stored) == {("Accepted", 4), ("Rejected", 2)}


def test_each_dependency_of_a_job_has_its_own_tenant_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """A job needing two dependencies takes from both tenant buckets, or from neither."""
    user_id = user_with_config(db, {"openai": limits(10), "search": limits(4)}, tenant_share=0.5)
    body = single(5, {"openai": 2, "search": 2}, tenant_id="t")
    assert post_json(app_client, SINGLE, user_id, body).status_code == 202

    refused = Answer.of(post_json(app_client, SINGLE, user_id, body))

    # search's share (2) is spent, openai's (5) is not; nothing of openai's is taken either.
    assert decision(refused) == (429, over_share("t", "search"), None)
    assert tenant_bucket_rows(db, user_id) == {("openai", "t"): 3, ("search", "t"): 0}
    assert bucket_tokens(db, user_id, "openai") == 8


# --- Config changes -----------------------------------------------------------------------------


def _shared_config(share: float, **dependencies: dict[str, Any]) -> dict[str, Any]:
    """A config body for PUT, without the reserve (the contract's default is 0.2)."""
    return {
        "dependencies": dependencies or {"openai": limits(100)},
        "tenant_share": share,
        "priority_reserve": 0,
    }


def test_a_smaller_share_clamps_the_tenant_buckets_to_their_new_capacity(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    put_config(app_client, user_id, _shared_config(0.5))
    assert accepted(submit(app_client, user_id, "a", 10))  # a keeps 40 of 50
    assert accepted(submit(app_client, user_id, "b", 45))  # b keeps 5

    put_config(app_client, user_id, _shared_config(0.25))

    assert tenant_bucket(db, user_id, "openai", "a") == (25, 0, 25)
    assert tenant_bucket(db, user_id, "openai", "b") == (25, 0, 5)
    # What is left is all the tenants may take, under the new share.
    a = [submit(app_client, user_id, "a", 1) for _ in range(26)]
    assert [accepted(answer) for answer in a] == [True] * 25 + [False]
    assert decision(a[25]) == (429, over_share("a"), None)
    assert not accepted(submit(app_client, user_id, "b", 6))
    assert accepted(submit(app_client, user_id, "b", 5))
    assert bucket_tokens(db, user_id, "openai") == 100 - 55 - 25 - 5


def test_a_new_share_gives_the_tenant_buckets_its_share_of_the_refill(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    put_config(app_client, user_id, _shared_config(0.5, openai=limits(100, 8)))
    assert accepted(submit(app_client, user_id, "a", 50))
    assert tenant_bucket(db, user_id, "openai", "a")[:2] == (50, 4)

    put_config(app_client, user_id, _shared_config(0.25, openai=limits(200, 8)))

    assert tenant_bucket(db, user_id, "openai", "a")[:2] == (50, 2)


def test_a_grown_share_finds_a_full_tenant_bucket_full_at_its_new_capacity(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """A tenant bucket full again at the activation is dropped, as `janus prune` would drop it:
    pruned or not, a full tenant is full at its new share (no row is a full bucket)."""
    user_id = create_user(db)
    put_config(app_client, user_id, _shared_config(0.25, openai=limits(100, 100)))
    assert accepted(submit(app_client, user_id, "a", 25))
    # Empty at 25 tokens/s: full again (25) after 1 s, and 1.5 s pass.
    time.sleep(1.5)

    put_config(app_client, user_id, _shared_config(0.5, openai=limits(100, 0)))

    assert tenant_bucket_rows(db, user_id) == {}
    assert accepted(submit(app_client, user_id, "a", 50))
    assert tenant_bucket(db, user_id, "openai", "a") == (50, 0, 0)


def test_a_grown_share_keeps_the_tokens_of_a_tenant_bucket_not_full(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """As a kept dependency bucket does: its tokens stay, under the new capacity and refill."""
    user_id = create_user(db)
    put_config(app_client, user_id, _shared_config(0.25))
    assert accepted(submit(app_client, user_id, "a", 10))

    put_config(app_client, user_id, _shared_config(0.5))

    assert tenant_bucket(db, user_id, "openai", "a") == (50, 0, 15)


def test_a_share_of_one_deletes_the_tenant_buckets(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    put_config(
        app_client,
        user_id,
        {**_shared_config(0.5), "tenant_overrides": {"small": 0.1}},
    )
    for tenant in ("a", "small"):
        assert accepted(submit(app_client, user_id, tenant, 10))
    assert set(tenant_bucket_rows(db, user_id)) == {("openai", "a"), ("openai", "small")}

    # Share 1 for all but "small", which keeps its override.
    put_config(app_client, user_id, {**_shared_config(1), "tenant_overrides": {"small": 0.2}})
    assert tenant_bucket(db, user_id, "openai", "small") == (20, 0, 0)
    assert tenant_bucket_rows(db, user_id) == {("openai", "small"): 0}
    # a is no longer limited apart: 70 more, well beyond its old share of 50.
    a = [submit(app_client, user_id, "a", 10) for _ in range(7)]
    assert [accepted(answer) for answer in a] == [True] * 7
    assert tenant_bucket_rows(db, user_id) == {("openai", "small"): 0}

    put_config(app_client, user_id, _shared_config(1))
    assert tenant_bucket_rows(db, user_id) == {}
    assert accepted(submit(app_client, user_id, "small", 10))


def test_removing_a_dependency_deletes_its_tenant_buckets(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    both = {"openai": limits(100), "search": limits(10)}
    put_config(app_client, user_id, _shared_config(0.5, **both))
    body = single(5, {"openai": 10, "search": 1}, tenant_id="a")
    assert post_json(app_client, SINGLE, user_id, body).status_code == 202
    assert set(tenant_bucket_rows(db, user_id)) == {("openai", "a"), ("search", "a")}

    put_config(app_client, user_id, _shared_config(0.5, openai=limits(100)))

    assert tenant_bucket_rows(db, user_id) == {("openai", "a"): 40}
    # Back again, search's tenant bucket starts full (no row), as its dependency's does.
    put_config(app_client, user_id, _shared_config(0.5, **both))
    assert tenant_bucket_rows(db, user_id) == {("openai", "a"): 40}
    assert accepted(submit(app_client, user_id, "a", 5, dependency="search"))


def test_rollback_brings_the_tenant_buckets_to_the_old_version(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    v1 = put_config(app_client, user_id, _shared_config(0.2))["version"]
    v2 = put_config(app_client, user_id, _shared_config(0.5))["version"]
    assert accepted(submit(app_client, user_id, "a", 30))  # a keeps 20 of 50
    assert accepted(submit(app_client, user_id, "b", 5))  # b keeps 45 of 50

    rollback = app_client.simulate_post(f"{VERSIONS}/{v1}/activate", headers=headers_for(user_id))

    assert rollback.status_code == 200, rollback.text
    assert tenant_bucket(db, user_id, "openai", "a") == (20, 0, 20)
    assert tenant_bucket(db, user_id, "openai", "b") == (20, 0, 20)
    assert decision(submit(app_client, user_id, "a", 21)) == (429, over_share("a"), None)

    # Forward again to 0.5: both are full at the activation, so both start full at 50, as a
    # tenant whose full bucket `janus prune` had deleted would (no row is a full bucket).
    again = app_client.simulate_post(f"{VERSIONS}/{v2}/activate", headers=headers_for(user_id))
    assert again.status_code == 200, again.text
    assert tenant_bucket_rows(db, user_id) == {}
    assert accepted(submit(app_client, user_id, "a", 21))
    assert tenant_bucket(db, user_id, "openai", "a") == (50, 0, 29)

    # And back to a version without shares: no tenant bucket is left.
    v3 = put_config(app_client, user_id, _shared_config(1))["version"]
    put_config(app_client, user_id, _shared_config(0.5))
    assert accepted(submit(app_client, user_id, "a", 1))
    result = app_client.simulate_post(f"{VERSIONS}/{v3}/activate", headers=headers_for(user_id))
    assert result.status_code == 200, result.text
    assert tenant_bucket_rows(db, user_id) == {}


def test_a_job_decided_while_a_new_share_is_activated_is_held_to_the_new_share(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, database_url: str
) -> None:
    """A job that arrives while an activation is under way waits for the buckets it locks, and
    is then decided by the version the buckets were brought to, not the one it first read."""
    user_id = user_with_config(db, {"openai": limits(100)}, tenant_share=0.5)
    answers: list[Answer] = []
    with psycopg.connect(database_url) as activation:
        # Share 0.25, activated in a transaction left open: its bucket locks are held.
        activate_config(activation, user_id, {"openai": limits(100)}, tenant_share=0.25)
        deciding = threading.Thread(
            target=lambda: answers.append(submit(app_client, user_id, "new", 30))
        )
        deciding.start()
        deadline = time.monotonic() + 10
        while db.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone() != (1,):
            assert time.monotonic() < deadline, "the job never waited for the activation"
            time.sleep(0.01)
        activation.commit()
        deciding.join(timeout=30)

    # A new tenant's bucket under share 0.25 holds 25, so a job of 30 can never fit it.
    assert [decision(answer) for answer in answers] == [(429, over_share("new"), None)]
    assert tenant_bucket_rows(db, user_id) == {}
    row = db.execute("SELECT config_version FROM jobs WHERE user_id = %s", [user_id]).fetchone()
    assert row == (2,)


# --- janus prune --------------------------------------------------------------------------------


def test_prune_deletes_full_tenant_buckets_only_and_a_pruned_tenant_is_full(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Capacity 100 refilling 20/s at share 0.5: 50 tokens at 10/s. A tenant that took 1 is full
    again after 0.1 s; one that took 50 needs 5 s. Only the first row goes, and it then has
    its 50."""
    user_id = user_with_config(db, {"openai": limits(100, 20)}, tenant_share=0.5)
    still = user_with_config(db, {"openai": limits(10)}, tenant_share=0.5)
    assert accepted(submit(app_client, user_id, "refilled", 1))
    assert accepted(submit(app_client, user_id, "drained", 50))
    assert accepted(submit(app_client, still, "never", 1))  # refill 0: never full again
    time.sleep(0.3)

    assert prune_full_tenant_buckets(db) == 1

    assert set(tenant_bucket_rows(db, user_id)) == {("openai", "drained")}
    assert set(tenant_bucket_rows(db, still)) == {("openai", "never")}
    # The pruned tenant is full: all 50 of its share at once, not a token more.
    assert accepted(submit(app_client, user_id, "refilled", 50))
    assert decision(submit(app_client, user_id, "refilled", 1))[1] == over_share("refilled")
    assert prune_full_tenant_buckets(db) == 0


def test_prune_refuses_a_connection_in_a_transaction(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(ValueError, match="autocommit"):
        prune_full_tenant_buckets(conn)


# --- Done-when: a hog among tenants, over real HTTP -------------------------------------------

# One statement, so one snapshot: each dependency's bucket with every tenant bucket of it.
_BUCKETS_AT_ONCE = """
SELECT b.dependency, b.capacity, b.tokens,
       (SELECT coalesce(json_object_agg(t.tenant_id, t.tokens), '{}')
          FROM tenant_buckets t
         WHERE t.user_id = b.user_id AND t.dependency = b.dependency)
  FROM token_buckets b
 WHERE b.user_id = %s
"""

Sample = dict[str, tuple[float, dict[str, float]]]  # dependency -> (tokens, {tenant: tokens})


def sample_buckets_during(
    database_url: str, user_id: UUID, during: Callable[[], Any]
) -> tuple[Any, list[Sample]]:
    """Run `during()` while another connection reads every bucket of the user, over and over;
    returns what `during` returned and the readings, in order."""
    samples: list[Sample] = []
    done = threading.Event()

    def sample() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not done.is_set():
                rows = conn.execute(_BUCKETS_AT_ONCE, [user_id]).fetchall()
                samples.append(
                    {
                        name: (float(tokens), {t: float(v) for t, v in tenants.items()})
                        for name, _, tokens, tenants in rows
                    }
                )
                time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = during()
    finally:
        done.set()
        sampler.join()
    return result, samples


@pytest.mark.concurrency
def test_a_hog_tenant_cannot_take_more_than_its_share_while_others_are_admitted(
    db: psycopg.Connection, database_url: str, start_gunicorn: Callable[..., Any]
) -> None:
    """A hog sends 1,000 jobs from many clients at once while three steady tenants send theirs.

    Capacity 100 for openai and for search, refill 0, tenant_share 0.3: 30 per tenant. On
    openai the hog and two steady tenants can have their whole shares (90 <= 100); on search
    four tenants ask for 120, so the dependency binds before their shares do.
    """
    capacity, share = 100, 0.3
    user_id = user_with_config(
        db, {"openai": limits(capacity), "search": limits(capacity)}, tenant_share=share
    )
    server = start_gunicorn(workers=4)
    steady = [("steady-a", "openai"), ("steady-b", "openai")] * 40 + [
        ("steady-a", "search"),
        ("steady-b", "search"),
        ("steady-c", "search"),
    ] * 40
    calls: list[Call] = []
    for n in range(1000):
        dependency = "openai" if n % 2 == 0 else "search"
        calls.append(single_call(n, {dependency: 1}, label=("hog", dependency), tenant="hog"))
        # The steady tenants start once the hog has long spent its share, and keep coming.
        if n >= 200 and (n - 200) % 4 == 0:
            tenant, dependency = steady[(n - 200) // 4]
            call = single_call(1000 + n, {dependency: 1}, label=(tenant, dependency))
            calls.append(Call(call.path, {**call.body, "tenant_id": tenant}, call.label))
    assert len(calls) == 1200

    answers, samples = sample_buckets_during(
        database_url, user_id, lambda: burst(server.url, user_id, calls)
    )

    assert_no_server_error(answers, server)
    assert set(statuses(answers)) == {202, 429}
    admitted = Counter(a.call.label for a in answers if a.status == 202)
    # openai: every tenant gets its whole share and not a token more.
    assert admitted["hog", "openai"] == 30
    assert admitted["steady-a", "openai"] == admitted["steady-b", "openai"] == 30
    # search: the dependency gives exactly its capacity, no tenant more than its share, and
    # each steady tenant at least what the hog and the other two leave (100 - 3 x 30).
    search = {tenant: admitted[tenant, "search"] for tenant in ("hog", "steady-a", "steady-b")}
    search["steady-c"] = admitted["steady-c", "search"]
    assert sum(search.values()) == capacity, search
    assert max(search.values()) <= 30, search
    assert min(search[t] for t in ("steady-a", "steady-b", "steady-c")) >= 10, search
    # Every refusal names the bucket that was short, and refill 0 means no Retry-After.
    for answer in answers:
        if answer.status == 429:
            tenant, dependency = answer.call.label
            allowed = {over_share(tenant, dependency)}
            if dependency == "search":
                allowed.add(rate_limited("search"))
            assert answer.body["reason"] in allowed, answer
            assert "Retry-After" not in answer.headers, answer
    assert bucket_tokens(db, user_id, "openai") == capacity - 90
    assert bucket_tokens(db, user_id, "search") == 0
    # The stored jobs are the answers, and each tenant bucket shows what its jobs took.
    stored = stored_jobs(db, user_id)
    assert len(stored) == len(calls)
    assert {job_id: job[:2] for job_id, job in stored.items()} == {
        a.body["job_id"]: (a.body["status"], a.body["reason"]) for a in answers
    }
    capacities = {"openai": capacity, "search": capacity}
    taken = assert_tenant_shares_kept(db, user_id, capacities, share)
    assert taken == {key: admitted[key[1], key[0]] for key in taken}

    # At every moment of the burst: no bucket below 0, and a dependency's bucket had given out
    # exactly what its tenants' buckets had, so never more than its capacity.
    assert len(samples) >= 10, len(samples)
    for reading in samples:
        for tokens, tenants in reading.values():
            assert tokens >= 0 and min(tenants.values(), default=0) >= 0, reading
            assert capacity - tokens == sum(share * capacity - t for t in tenants.values())
    # And the steady tenants were still being admitted after the hog had spent its share.
    hog_spent = [r for r in samples if r["openai"][1].get("hog") == 0]
    assert hog_spent, "no reading saw the hog's openai share spent"
    first = hog_spent[0]["openai"][1]
    steady_then = sum(
        share * capacity - first.get(t, share * capacity) for t in ("steady-a", "steady-b")
    )
    assert steady_then < 60, first


@pytest.mark.concurrency
def test_a_share_cut_during_a_burst_holds_every_job_decided_after_it(
    db: psycopg.Connection, database_url: str, start_gunicorn: Callable[..., Any]
) -> None:
    """400 jobs of 4 tenants at once on 200 tokens while PUT /dashboard/config cuts the share
    from 0.5 to 0.25. Each job is stored with the version that decided it, so per tenant:
    version 1 took t1 <= 100, the cut left it min(50, 100 - t1), version 2 took at most that,
    and its bucket ends holding exactly the difference."""
    capacity = 200
    user_id = user_with_config(db, {"openai": limits(capacity)}, tenant_share=0.5)
    server = start_gunicorn(workers=4)
    calls = [single_call(n, {"openai": 1}, tenants=4) for n in range(400)]
    put_status: list[int] = []

    def cut_share_after_80_jobs() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while jobs_of(conn, user_id) < 80 and time.monotonic() < deadline:
                time.sleep(0.005)
        response = requests.put(
            server.url + CONFIG,
            json=_shared_config(0.25, openai=limits(capacity)),
            headers=headers_for(user_id),
            timeout=30,
        )
        put_status.append(response.status_code)

    trigger = threading.Thread(target=cut_share_after_80_jobs)
    trigger.start()
    answers = burst(server.url, user_id, calls)
    trigger.join(timeout=30)

    assert put_status == [200]
    assert deadlocks_detected(db) == 0
    assert_no_server_error(answers, server)
    assert set(statuses(answers)) <= {202, 429}
    rows = db.execute(
        """
        SELECT tenant_id, config_version, count(*) FILTER (WHERE status = 'Accepted')
          FROM jobs WHERE user_id = %s GROUP BY 1, 2
        """,
        [user_id],
    ).fetchall()
    taken = {(tenant, version): count for tenant, version, count in rows}
    assert {version for _, version in taken} == {1, 2}, taken
    buckets = tenant_bucket_rows(db, user_id)
    for tenant in (f"tenant-{t}" for t in range(4)):
        t1, t2 = taken.get((tenant, 1), 0), taken.get((tenant, 2), 0)
        assert t1 <= 100
        left_after_cut = min(50, 100 - t1)
        assert t2 <= left_after_cut, (tenant, t1, t2)
        if t1 + t2:
            assert buckets["openai", tenant] == left_after_cut - t2, (tenant, t1, t2, buckets)
        else:
            assert ("openai", tenant) not in buckets
    assert bucket_tokens(db, user_id, "openai") == capacity - sum(taken.values())
    assert {a.body["job_id"] for a in answers if a.status == 202} == {
        job_id for job_id, job in stored_jobs(db, user_id).items() if job[0] == "Accepted"
    }
