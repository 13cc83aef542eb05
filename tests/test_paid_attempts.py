"""What each attempt paid (jobs.paid, migration 0022): a settlement or a cancel gives back
only tokens the job's current attempt took.

Shadow mode is where that matters: it lets every job in, takes tokens only for those
enforcement would have let in at once, and queues a retried job without paying. Before
jobs.paid, such a retry completed with a cost of 0, or cancelled before its hand-out, gave
back tokens nobody had taken. Buckets never refill here, so every token moved shows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from tests.support.app import headers_for, post_json
from tests.support.factories import bucket_tokens, stored_job, user_with_config
from tests.support.queue import claim, lease_call, queued_job, submit

LIMITS = {"openai": {"capacity": 100, "refill_per_second": 0}}


@pytest.fixture
def shadow_user(db: psycopg.Connection) -> UUID:
    return user_with_config(db, LIMITS, mode="shadow")


def failed_and_requeued(client: falcon.testing.TestClient, user_id: UUID, cost: int) -> str:
    """A job admitted (and paid for) at once, handed out, failed with retry; its id."""
    job_id = submit(client, user_id, queued_job({"openai": cost}))
    [claimed] = claim(client, user_id, limit=1)
    failed = lease_call(client, user_id, claimed, "fail", error="upstream 503", retry=True)
    assert failed.json["state"] == "waiting", failed.text
    return job_id


def test_a_shadow_mode_retry_completed_at_no_cost_gives_back_nothing_it_did_not_take(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, shadow_user: UUID
) -> None:
    job_id = failed_and_requeued(app_client, shadow_user, 30)
    assert bucket_tokens(db, shadow_user, "openai") == 70

    # Due at once (no backoff): queued by the claim without paying, and handed out.
    [again] = claim(app_client, shadow_user, limit=1)
    assert (again["job_id"], again["attempt"]) == (job_id, 2)
    assert bucket_tokens(db, shadow_user, "openai") == 70
    done = lease_call(app_client, shadow_user, again, "complete", actual_costs={"openai": 0})

    assert done.status_code == 200, done.text
    # The first attempt's 30 went to the upstream; the second took nothing to give back.
    assert bucket_tokens(db, shadow_user, "openai") == 70
    assert stored_job(db, job_id, "state, paid") == {"state": "completed", "paid": False}


def test_a_shadow_mode_retry_cancelled_before_its_hand_out_gives_back_nothing(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, shadow_user: UUID
) -> None:
    job_id = failed_and_requeued(app_client, shadow_user, 30)
    # A claim for another tenant queues it (due, shadow mode: no token to pay) and leaves it.
    assert claim(app_client, shadow_user, limit=1, tenant_id="someone-else") == []
    assert stored_job(db, job_id, "state, attempts, paid, expires_at") == {
        "state": "queued",
        "attempts": 1,
        "paid": False,
        "expires_at": None,
    }

    cancelled = app_client.simulate_post(
        f"/dashboard/jobs/{job_id}/cancel", headers=headers_for(shadow_user)
    )

    assert cancelled.status_code == 200, cancelled.text
    assert bucket_tokens(db, shadow_user, "openai") == 70


def test_a_failed_job_retried_under_shadow_mode_is_queued_and_handed_out(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, shadow_user: UUID
) -> None:
    """retry_jobs() gives the job a max wait; queued without a line, the job drops it."""
    job_id = submit(app_client, shadow_user, queued_job({"openai": 10}))
    [claimed] = claim(app_client, shadow_user, limit=1)
    lease_call(app_client, shadow_user, claimed, "fail", error="no", retry=False)
    retried = app_client.simulate_post(
        f"/dashboard/jobs/{job_id}/retry", headers=headers_for(shadow_user)
    )
    assert retried.status_code == 200, retried.text

    [again] = claim(app_client, shadow_user, limit=1)

    assert (again["job_id"], again["attempt"]) == (job_id, 1)
    done = lease_call(app_client, shadow_user, again, "complete", actual_costs={"openai": 0})
    assert done.status_code == 200, done.text
    assert bucket_tokens(db, shadow_user, "openai") == 90


def test_under_shadow_mode_a_job_with_a_run_at_waits_for_it_and_takes_no_token(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, shadow_user: UUID
) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    answer = post_json(
        app_client,
        "/system/jobs",
        shadow_user,
        {**queued_job({"openai": 30}), "run_at": run_at.isoformat()},
    )

    assert answer.status_code == 202, answer.text
    assert answer.json["state"] == "waiting"
    assert datetime.fromisoformat(answer.json["estimated_start"]) == run_at
    # Not handed out before its run_at, as under enforcement.
    assert claim(app_client, shadow_user, limit=10) == []
    assert stored_job(db, answer.json["job_id"], "state, run_at, paid") == {
        "state": "waiting",
        "run_at": run_at,
        "paid": False,
    }
    cancelled = app_client.simulate_post(
        f"/dashboard/jobs/{answer.json['job_id']}/cancel", headers=headers_for(shadow_user)
    )
    assert cancelled.status_code == 200, cancelled.text
    assert bucket_tokens(db, shadow_user, "openai") == 100


def test_each_attempt_says_whether_it_paid(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Under enforcement: admission pays, a retry has not paid until its hand-out pays."""
    user_id = user_with_config(db, LIMITS)
    job_id = submit(app_client, user_id, queued_job({"openai": 30}))
    assert stored_job(db, job_id, "paid") == {"paid": True}
    [claimed] = claim(app_client, user_id, limit=1)
    lease_call(app_client, user_id, claimed, "fail", error="503", retry=True)
    assert stored_job(db, job_id, "state, paid") == {
        "state": "waiting",
        "paid": False,
    }

    [again] = claim(app_client, user_id, limit=1)

    assert again["attempt"] == 2
    assert stored_job(db, job_id, "state, paid") == {"state": "running", "paid": True}
    assert bucket_tokens(db, user_id, "openai") == 40
    lease_call(app_client, user_id, again, "complete", actual_costs={"openai": 0})
    assert bucket_tokens(db, user_id, "openai") == 70
