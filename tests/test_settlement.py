"""Settling the real cost: complete and fail give back to (or take from) a job's buckets the
difference between what admission charged and what the worker reports, with exact arithmetic.

Refill is 0 wherever a level is asserted exactly, so the outcome does not depend on timing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from janus.db.pool import make_pool
from janus.db.queue import QueueStore
from janus.queue import ClaimRequest, Finish, LeaseOutcome
from janus.settings import Settings
from tests.support.app import post_json
from tests.support.factories import bucket_tokens, tenant_tokens, user_with_config
from tests.support.queue import claim, job_row, lease_call, queued_job, submit

BUCKETS = {
    "openai": {"capacity": 10, "refill_per_second": 0},
    "stripe": {"capacity": 5, "refill_per_second": 0},
}


@pytest.fixture
def two_bucket_user(db: psycopg.Connection) -> UUID:
    """openai 10 and stripe 5 tokens that never refill; other dependencies allowed, unbudgeted."""
    return user_with_config(db, BUCKETS, unknown_dependencies="allow")


def run_job(
    client: falcon.testing.TestClient, user: UUID, charged: dict[str, int]
) -> dict[str, Any]:
    """Submit a job charging `charged` and claim it."""
    job_id = submit(client, user, queued_job(charged))
    [job] = claim(client, user)
    assert job["job_id"] == job_id
    return job


def set_tokens(db: psycopg.Connection, user: UUID, dependency: str, tokens: int) -> None:
    """Put a bucket at `tokens` as of now."""
    db.execute(
        "UPDATE token_buckets SET tokens = %s, refilled_at = now()"
        " WHERE user_id = %s AND dependency = %s",
        [tokens, user, dependency],
    )


@pytest.mark.parametrize(
    ("charged", "actual", "openai_after"),
    [
        (6, 2, 8),  # 10 - 6 = 4, then 4 of the 6 given back
        (2, 5, 5),  # 10 - 2 = 8, then 3 more taken
        (2, 2, 8),  # as estimated: nothing moves
        (2, 50, 0),  # 8 - 48: clamped at zero
        (10, 0, 10),  # everything given back: full again
    ],
)
def test_complete_settles_the_difference_exactly(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    two_bucket_user: UUID,
    charged: int,
    actual: int,
    openai_after: int,
) -> None:
    job = run_job(app_client, two_bucket_user, {"openai": charged})
    assert bucket_tokens(db, two_bucket_user, "openai") == 10 - charged
    done = lease_call(app_client, two_bucket_user, job, "complete", actual_costs={"openai": actual})
    assert done.status_code == 200, done.text
    assert bucket_tokens(db, two_bucket_user, "openai") == openai_after
    row = job_row(db, job["job_id"])
    assert row["actual_costs"] == {"openai": actual}
    assert row["settled_at"] is not None


def test_a_refund_never_fills_a_bucket_above_its_capacity(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, two_bucket_user: UUID
) -> None:
    job = run_job(app_client, two_bucket_user, {"openai": 6})
    set_tokens(db, two_bucket_user, "openai", 9)  # refilled meanwhile, say
    lease_call(app_client, two_bucket_user, job, "complete", actual_costs={"openai": 0})
    assert bucket_tokens(db, two_bucket_user, "openai") == 10


def test_fail_settles_too_and_each_attempt_pays_and_settles_on_its_own(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, two_bucket_user: UUID
) -> None:
    job = run_job(app_client, two_bucket_user, {"openai": 4})  # 6 left
    lease_call(
        app_client, two_bucket_user, job, "fail", error="timeout", actual_costs={"openai": 3}
    )
    assert bucket_tokens(db, two_bucket_user, "openai") == 7  # 1 of the 4 given back
    [again] = claim(app_client, two_bucket_user)
    assert again["attempt"] == 2
    # The second attempt takes the estimate again when it is handed out...
    assert bucket_tokens(db, two_bucket_user, "openai") == 3
    lease_call(app_client, two_bucket_user, again, "complete", actual_costs={"openai": 2})
    # ... and settles against it on its own: 2 of its 4 given back.
    assert bucket_tokens(db, two_bucket_user, "openai") == 5
    assert job_row(db, job["job_id"])["actual_costs"] == {"openai": 2}


def test_dependencies_not_charged_are_taken_and_those_without_a_bucket_ignored(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, two_bucket_user: UUID
) -> None:
    job = run_job(app_client, two_bucket_user, {"openai": 2, "elsewhere": 3})
    lease_call(
        app_client,
        two_bucket_user,
        job,
        "complete",
        actual_costs={"elsewhere": 9, "stripe": 2, "nobody": 4},
    )
    # openai was not reported: its charge stands. stripe was not charged: 2 taken.
    assert bucket_tokens(db, two_bucket_user, "openai") == 8
    assert bucket_tokens(db, two_bucket_user, "stripe") == 3
    assert job_row(db, job["job_id"])["actual_costs"] == {"elsewhere": 9, "stripe": 2, "nobody": 4}


def test_a_stale_lease_settles_nothing(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, two_bucket_user: UUID
) -> None:
    job = run_job(app_client, two_bucket_user, {"openai": 6})
    late = lease_call(
        app_client,
        two_bucket_user,
        job,
        "complete",
        lease_token="2dad64a8-3f87-4d6e-9b4c-1cfa5917fd4b",
        actual_costs={"openai": 0},
    )
    assert late.status_code == 409
    assert bucket_tokens(db, two_bucket_user, "openai") == 4
    assert job_row(db, job["job_id"])["settled_at"] is None


def test_a_bucket_is_refilled_to_now_before_it_is_settled(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0.5}})
    job = run_job(app_client, user, {"openai": 2})
    # Empty four seconds ago: 2 tokens refilled by now.
    db.execute(
        "UPDATE token_buckets SET tokens = 0, refilled_at = clock_timestamp() - interval '4 s'"
        " WHERE user_id = %s",
        [user],
    )
    lease_call(app_client, user, job, "complete", actual_costs={"openai": 3})
    row = db.execute(
        "SELECT tokens, refilled_at > clock_timestamp() - interval '1 s' FROM token_buckets"
        " WHERE user_id = %s",
        [user],
    ).fetchone()
    assert row is not None
    tokens, just_refilled = row
    # 0 + 2 (refill) - 1 (extra cost), plus the refill of the instants the call took.
    assert Decimal(1) <= tokens < Decimal("1.5")
    assert just_refilled


# --- concurrency ---

JOBS = 240
CHARGE = {"openai": 10, "stripe": 7}
START = 1_000_000


@pytest.fixture
def queue_store(database_url: str) -> Iterator[QueueStore]:
    """janus.db's JobQueue over a pool of 8 connections on this test's database."""
    pool = make_pool(Settings(database_url=database_url, pool_size=8))
    pool.open(wait=True)
    try:
        yield QueueStore(pool, retries=10)
    finally:
        pool.close()


def test_concurrent_settlements_on_shared_buckets_never_lose_an_update(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, queue_store: QueueStore
) -> None:
    """16 threads settle 240 jobs on the same two buckets, alone and in batches of 1 to 6,
    in random orders: every token moved is accounted for, and no lock order deadlocks."""
    user = user_with_config(
        db,
        {name: {"capacity": 10 * START, "refill_per_second": 0} for name in CHARGE},
    )
    for name in CHARGE:
        set_tokens(db, user, name, START)
    job = {"tenant_id": "tenant-a", "priority": 5, "dependencies": CHARGE}
    batch = {"batch_name": "b", "jobs": [job] * JOBS}
    answer = post_json(app_client, "/system/jobs/batch", user, batch)
    assert answer.json["accepted"] == JOBS, answer.text
    claimed = [
        job
        for _ in range(3)
        for job in queue_store.claim(ClaimRequest(user_id=user, limit=100, lease_seconds=600)).jobs
    ]
    assert len(claimed) == JOBS

    rng = random.Random(9)
    finishes = [
        Finish(
            job_id=job.job_id,
            lease_token=job.lease_token,
            failed=rng.random() < 0.3,
            error="flaky",
            actual_costs={"openai": rng.randint(0, 30), "stripe": rng.randint(0, 20)},
        )
        for job in claimed
    ]
    rng.shuffle(finishes)
    batches: list[list[Finish]] = []
    while finishes:
        size = rng.randint(1, 6)
        batches.append(finishes[:size])
        finishes = finishes[size:]

    with ThreadPoolExecutor(16) as threads:
        results = list(threads.map(lambda items: queue_store.finish(user, items), batches))

    assert all(one.outcome is LeaseOutcome.OK for result in results for one in result)
    for name, charge in CHARGE.items():
        reported = sum((item.actual_costs or {})[name] for items in batches for item in items)
        # Charged JOBS * charge at admission, then each job's charge given back and its
        # report taken: what is left is START less what the workers reported.
        assert JOBS * charge != reported
        assert bucket_tokens(db, user, name) == START - reported, name


@pytest.mark.parametrize(
    ("charged", "actual", "tenant_after"),
    [
        (4, 1, 4),  # 5 - 4 = 1, then 3 given back
        (1, 3, 2),  # 5 - 1 = 4, then 2 more taken
        (4, 0, 5),  # everything given back: full again, never above its share
        (1, 9, 0),  # 4 - 8: clamped at zero
    ],
)
def test_the_tenant_bucket_settles_with_its_dependency(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    charged: int,
    actual: int,
    tenant_after: int,
) -> None:
    user = user_with_config(db, BUCKETS, tenant_share=0.5)
    job = run_job(app_client, user, {"openai": charged})
    assert tenant_tokens(db, user, "openai", "tenant-a") == 5 - charged
    done = lease_call(app_client, user, job, "complete", actual_costs={"openai": actual})
    assert done.status_code == 200, done.text
    assert tenant_tokens(db, user, "openai", "tenant-a") == tenant_after
    assert bucket_tokens(db, user, "openai") == max(0, min(10, 10 - actual))


def test_an_extra_charge_gives_a_full_tenant_bucket_its_row(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """A tenant bucket without a row is full; charged more than admission took, it gets one."""
    user = user_with_config(db, BUCKETS, tenant_share=0.5)
    job = run_job(app_client, user, {"openai": 1})
    db.execute("DELETE FROM tenant_buckets WHERE user_id = %s", [user])  # as janus prune would
    done = lease_call(app_client, user, job, "complete", actual_costs={"openai": 3})
    assert done.status_code == 200, done.text
    assert tenant_tokens(db, user, "openai", "tenant-a") == 3  # 5 - (3 - 1)
