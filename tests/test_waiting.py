"""Jobs that wait before their next attempt: a worker's fail with `retry_after_seconds`, in
process over real Postgres. The waiting jobs beside a claim at scale are in test_queue_scale.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from tests.support.answers import assert_clear_error
from tests.support.app import headers_for, put_config
from tests.support.factories import bucket_tokens, stored_job, user_with_config
from tests.support.queue import claim, expire_lease, lease_call, queued_job, submit

LIMITS = {"openai": {"capacity": 1000, "refill_per_second": 0}}


@pytest.fixture
def user(db: psycopg.Connection) -> UUID:
    """max_attempts 3, the default."""
    return user_with_config(db, LIMITS)


def come_due(db: psycopg.Connection, job_id: str) -> None:
    """Move a waiting job's run_at to a moment just past, as if its wait had ended."""
    db.execute("UPDATE jobs SET run_at = now() - interval '1 second' WHERE job_id = %s", [job_id])


def test_a_job_failed_with_retry_after_waits_then_is_paid_for_and_handed_out_again(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = submit(app_client, user, queued_job({"openai": 5}, priority=9))
    later = submit(app_client, user, queued_job({"openai": 5}, priority=2))
    [claimed] = claim(app_client, user, limit=1)
    before = datetime.now().astimezone()

    failed = lease_call(
        app_client, user, claimed, "fail", error="upstream said 429", retry_after_seconds=30
    )

    assert failed.status_code == 200, failed.text
    assert failed.json == {"job_id": job, "state": "waiting", "attempt": 1}
    row = stored_job(db, job, "state, run_at, finished_at, lease_token")
    assert row["state"] == "waiting" and row["finished_at"] is None
    assert row["lease_token"] is None
    assert before + timedelta(seconds=29) <= row["run_at"] <= before + timedelta(seconds=32)
    # Not handed out while it waits: the lower-priority job goes first.
    assert [one["job_id"] for one in claim(app_client, user, limit=10)] == [later]

    come_due(db, job)
    [again] = claim(app_client, user, limit=10)

    assert again["job_id"] == job and again["attempt"] == 2
    assert stored_job(db, job, "state, run_at") == {"state": "running", "run_at": None}
    # Every attempt is paid for: admission's 5 tokens, the other job's, and the retry's 5,
    # taken when it was handed out again.
    assert bucket_tokens(db, user, "openai") == 985


def test_the_last_attempt_fails_for_good_whatever_the_retry_after(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(db, LIMITS, max_attempts=1)
    job = submit(app_client, user, queued_job({"openai": 1}))
    [claimed] = claim(app_client, user, limit=1)

    failed = lease_call(app_client, user, claimed, "fail", error="no", retry_after_seconds=5)

    assert failed.json["state"] == "failed"
    assert stored_job(db, job, "state, run_at")["run_at"] is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"retry_after_seconds": 0}, "retry_after_seconds"),
        ({"retry_after_seconds": 86_401}, "retry_after_seconds"),
        ({"retry_after_seconds": 1.5}, "retry_after_seconds"),
        ({"retry_after_seconds": "10"}, "retry_after_seconds"),
        ({"retry_after_seconds": 10, "retry": False}, "retry true"),
    ],
)
def test_a_bad_retry_after_is_a_clear_400_and_changes_nothing(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    user: UUID,
    body: dict[str, object],
    words: str,
) -> None:
    job = submit(app_client, user, queued_job({"openai": 1}))
    [claimed] = claim(app_client, user, limit=1)

    answer = lease_call(app_client, user, claimed, "fail", error="no", **body)

    assert words in str(assert_clear_error(answer, 400))
    assert stored_job(db, job, "state")["state"] == "running"


def test_a_waiting_job_shows_when_it_runs_and_can_be_cancelled(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = submit(app_client, user, queued_job({"openai": 5}))
    [claimed] = claim(app_client, user, limit=1)
    lease_call(app_client, user, claimed, "fail", error="busy", retry_after_seconds=600)

    listed = app_client.simulate_get(
        "/dashboard/jobs", params={"state": "waiting"}, headers=headers_for(user)
    )
    assert [one["job_id"] for one in listed.json["jobs"]] == [job]
    detail = app_client.simulate_get(f"/dashboard/jobs/{job}", headers=headers_for(user)).json
    assert detail["state"] == "waiting"
    assert datetime.fromisoformat(detail["run_at"]) > datetime.now().astimezone()

    cancelled = app_client.simulate_post(f"/dashboard/jobs/{job}/cancel", headers=headers_for(user))

    assert cancelled.status_code == 200, cancelled.text
    assert stored_job(db, job, "state, run_at") == {"state": "cancelled", "run_at": None}
    # It was handed out once: the upstream was called with admission's tokens.
    assert bucket_tokens(db, user, "openai") == 995
    assert claim(app_client, user, limit=10) == []


# --- the config's retry_backoff ---


def waited(db: psycopg.Connection, job_id: str, since: datetime) -> float:
    """Seconds from `since` to the waiting job's run_at."""
    row = stored_job(db, job_id, "state, run_at")
    assert row["state"] == "waiting", row
    seconds: float = (row["run_at"] - since).total_seconds()
    return seconds


def test_a_retried_job_waits_the_configs_backoff_doubled_each_attempt(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(db, LIMITS, retry_backoff=(10, 15), max_attempts=5)
    job = submit(app_client, user, queued_job({"openai": 1}))

    [claimed] = claim(app_client, user, limit=1)
    before = datetime.now().astimezone()
    failed = lease_call(app_client, user, claimed, "fail", error="no")
    # Attempt 1: 10 s, half of it at random.
    assert failed.json["state"] == "waiting"
    assert 5 - 0.1 <= waited(db, job, before) <= 10 + 1
    assert claim(app_client, user, limit=1) == []

    come_due(db, job)
    [claimed] = claim(app_client, user, limit=1)
    before = datetime.now().astimezone()
    lease_call(app_client, user, claimed, "fail", error="no")
    # Attempt 2: 20 s, capped at 15.
    assert 7.5 - 0.1 <= waited(db, job, before) <= 15 + 1

    # An expired lease waits the same way: attempt 3, 40 s capped at 15.
    come_due(db, job)
    [claimed] = claim(app_client, user, limit=1)
    expire_lease(db, job)
    before = datetime.now().astimezone()
    assert claim(app_client, user, limit=1) == []
    assert 7.5 - 0.1 <= waited(db, job, before) <= 15 + 1
    assert stored_job(db, job, "error")["error"] == "lease expired"

    # The worker's own word wins over the backoff.
    come_due(db, job)
    [claimed] = claim(app_client, user, limit=1)
    before = datetime.now().astimezone()
    lease_call(app_client, user, claimed, "fail", error="429", retry_after_seconds=100)
    assert 100 - 0.1 <= waited(db, job, before) <= 100 + 1


def test_without_a_backoff_an_expired_lease_is_queued_at_once(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = submit(app_client, user, queued_job({"openai": 1}))
    claim(app_client, user, limit=1)
    expire_lease(db, job)

    [again] = claim(app_client, user, limit=1)

    assert again["job_id"] == job and again["attempt"] == 2


def test_a_config_sets_its_retry_backoff_and_shows_it(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    shown = app_client.simulate_get("/dashboard/config", headers=headers_for(user)).json
    assert shown["retry_backoff"] == {"base_seconds": 0, "max_seconds": 0}

    config = put_config(
        app_client,
        user,
        {"dependencies": LIMITS, "retry_backoff": {"base_seconds": 0.5, "max_seconds": 600}},
    )

    assert config["retry_backoff"] == {"base_seconds": 0.5, "max_seconds": 600}
    row = db.execute(
        "SELECT retry_backoff_base_seconds, retry_backoff_max_seconds FROM configs"
        " WHERE user_id = %s AND is_active",
        [user],
    ).fetchone()
    assert row == (Decimal("0.5"), Decimal("600"))


@pytest.mark.parametrize(
    ("backoff", "field"),
    [
        ({"base_seconds": 10, "max_seconds": 5}, "max_seconds"),
        ({"base_seconds": -1, "max_seconds": 5}, "base_seconds"),
        ({"base_seconds": 1, "max_seconds": 86_401}, "max_seconds"),
        ({"base_seconds": 1}, "max_seconds"),
        ({"base_seconds": "1", "max_seconds": 5}, "base_seconds"),
        ({"base_seconds": 1, "max_seconds": 5, "jitter": True}, "jitter"),
    ],
)
def test_a_bad_retry_backoff_is_a_clear_400(
    app_client: falcon.testing.TestClient,
    user: UUID,
    backoff: dict[str, object],
    field: str,
) -> None:
    answer = app_client.simulate_put(
        "/dashboard/config",
        json={"dependencies": LIMITS, "retry_backoff": backoff},
        headers=headers_for(user),
    )

    assert field in str(assert_clear_error(answer, 400))
