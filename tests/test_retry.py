"""Retrying ended jobs, in-process over real Postgres: POST /dashboard/jobs/{job_id}/retry and
`janus jobs retry`, how a retried job waits and pays again when it is handed out, and a retry
racing claims.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest

from janus.cli import main as janus_cli
from janus.settings import Settings
from tests.support.answers import assert_clear_error
from tests.support.app import headers_for, post_json, serve_app
from tests.support.factories import (
    activate_config,
    bucket_tokens,
    create_user,
    stored_bucket,
    stored_job,
    user_with_config,
)
from tests.support.queue import claim, lease_call, queued_job, submit

LIMITS = {"openai": {"capacity": 1000, "refill_per_second": 0}}


@pytest.fixture
def user(db: psycopg.Connection) -> UUID:
    """A bucket that never refills, so every token paid shows."""
    return user_with_config(db, LIMITS)


def retry(client: falcon.testing.TestClient, user_id: UUID, job_id: str) -> Any:
    """POST /dashboard/jobs/{job_id}/retry, with no body."""
    return client.simulate_post(f"/dashboard/jobs/{job_id}/retry", headers=headers_for(user_id))


def cancel(client: falcon.testing.TestClient, user_id: UUID, job_id: str) -> Any:
    """POST /dashboard/jobs/{job_id}/cancel, with no body."""
    return client.simulate_post(f"/dashboard/jobs/{job_id}/cancel", headers=headers_for(user_id))


def failed_job(client: falcon.testing.TestClient, user_id: UUID, cost: int, **job: Any) -> str:
    """A job accepted, handed out and failed for good (`retry` false); its id."""
    job_id = submit(client, user_id, queued_job({"openai": cost}, **job))
    [claimed] = claim(client, user_id, limit=1)
    assert claimed["job_id"] == job_id
    failed = lease_call(client, user_id, claimed, "fail", error="upstream said no", retry=False)
    assert failed.json["state"] == "failed", failed.text
    return job_id


def test_a_failed_job_retried_waits_then_is_handed_out_paying_its_tokens_as_attempt_1(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = failed_job(app_client, user, 30)
    assert bucket_tokens(db, user, "openai") == 970

    answer = retry(app_client, user, job)

    assert answer.status_code == 200, answer.text
    assert answer.json == {"job_id": job, "state": "waiting"}
    row = stored_job(
        db,
        job,
        "state, attempts, error, result, finished_at, actual_costs, settled_at, in_line_at,"
        " lease_token, run_at <= now() AS due, expires_at - now() AS left",
    )
    left = row.pop("left")
    assert timedelta(seconds=3590) < left <= timedelta(seconds=3600)
    assert row == {
        "state": "waiting",
        "attempts": 0,
        "error": None,
        "result": None,
        "finished_at": None,
        "actual_costs": None,
        "settled_at": None,
        "in_line_at": None,
        "lease_token": None,
        "due": True,
    }
    # Nothing is paid until a claim hands it out.
    assert bucket_tokens(db, user, "openai") == 970
    detail = app_client.simulate_get(f"/dashboard/jobs/{job}", headers=headers_for(user))
    assert detail.json["state"] == "waiting"

    [claimed] = claim(app_client, user, limit=10)

    assert (claimed["job_id"], claimed["attempt"]) == (job, 1)
    assert bucket_tokens(db, user, "openai") == 940
    # The new run settles its own costs against what its hand-out took.
    done = lease_call(app_client, user, claimed, "complete", actual_costs={"openai": 10})
    assert done.status_code == 200, done.text
    assert bucket_tokens(db, user, "openai") == 960
    assert stored_job(db, job, "state, actual_costs") == {
        "state": "completed",
        "actual_costs": {"openai": 10},
    }


def test_a_retried_job_has_a_fresh_set_of_attempts(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = create_user(db)
    activate_config(db, user, LIMITS, max_attempts=1)
    job = submit(app_client, user, queued_job({"openai": 5}))
    [claimed] = claim(app_client, user, limit=1)
    # Its one attempt used: failed, though the worker asked for a retry.
    assert lease_call(app_client, user, claimed, "fail", error="x", retry=True).json == {
        "job_id": job,
        "state": "failed",
        "attempt": 1,
    }
    assert retry(app_client, user, job).status_code == 200

    [again] = claim(app_client, user, limit=1)

    assert again["attempt"] == 1
    failed = lease_call(app_client, user, again, "fail", error="x", retry=True)
    assert failed.json["state"] == "failed"


def test_an_expired_job_retried_joins_the_line_and_pays_when_it_fits(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(
        db, {"openai": {"capacity": 10, "refill_per_second": 0.0001}}, when_limited="wait"
    )
    db.execute(
        "UPDATE token_buckets SET tokens = 0, refilled_at = now() WHERE user_id = %s", [user]
    )
    job = submit(app_client, user, queued_job({"openai": 6}))
    db.execute("UPDATE jobs SET expires_at = now() - interval '1 second' WHERE job_id = %s", [job])
    assert claim(app_client, user, limit=10) == []
    assert stored_job(db, job, "state")["state"] == "expired"

    assert retry(app_client, user, job).status_code == 200
    # Due at once: the next claim lines it up, and it waits there for its 6 tokens.
    assert claim(app_client, user, limit=10) == []
    row = stored_job(db, job, "state, in_line_at IS NOT NULL AS in_line, expires_at > now() AS ok")
    assert row == {"state": "waiting", "in_line": True, "ok": True}
    assert stored_bucket(db, user, "openai", "line_jobs")["line_jobs"][4] == 1

    db.execute(
        "UPDATE token_buckets SET tokens = 10, refilled_at = now() WHERE user_id = %s", [user]
    )
    [claimed] = claim(app_client, user, limit=10)

    assert (claimed["job_id"], claimed["attempt"]) == (job, 1)
    assert int(bucket_tokens(db, user, "openai")) == 4
    assert stored_bucket(db, user, "openai", "line_jobs")["line_jobs"][4] == 0


def test_a_cancelled_job_retried_pays_again_what_its_cancel_gave_back(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = submit(app_client, user, queued_job({"openai": 30}))
    assert cancel(app_client, user, job).status_code == 200
    assert bucket_tokens(db, user, "openai") == 1000

    assert retry(app_client, user, job).json == {"job_id": job, "state": "waiting"}
    assert stored_job(db, job, "actual_costs, settled_at") == {
        "actual_costs": None,
        "settled_at": None,
    }
    [claimed] = claim(app_client, user, limit=10)

    assert (claimed["job_id"], claimed["attempt"]) == (job, 1)
    assert bucket_tokens(db, user, "openai") == 970


def test_jobs_that_have_not_ended_completed_ones_and_rejected_ones_are_not_retried(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    completed = submit(app_client, user, queued_job({"openai": 10}))
    [to_complete] = claim(app_client, user, limit=1)
    assert lease_call(app_client, user, to_complete, "complete").status_code == 200
    running = submit(app_client, user, queued_job({"openai": 10}))
    [claimed] = claim(app_client, user, limit=1)
    waiting = failed_job(app_client, user, 10)
    assert retry(app_client, user, waiting).status_code == 200
    queued = submit(app_client, user, queued_job({"openai": 10}))
    rejected = post_json(app_client, "/system/jobs", user, queued_job({"openai": 5000}))
    assert rejected.status_code == 429
    tokens = bucket_tokens(db, user, "openai")

    for job_id, words in [
        (running, "has not ended (running)"),
        (queued, "has not ended (queued)"),
        (waiting, "has not ended (waiting)"),
        (completed, "has completed"),
        (rejected.json["job_id"], "rejected"),
    ]:
        answer = retry(app_client, user, job_id)
        assert_clear_error(answer, 409)
        assert words in answer.json["description"]

    states = [stored_job(db, job, "state")["state"] for job in (running, queued, waiting)]
    assert states == ["running", "queued", "waiting"]
    assert bucket_tokens(db, user, "openai") == tokens
    # The worker's lease still holds.
    assert lease_call(app_client, user, claimed, "complete").status_code == 200


def test_another_users_job_and_an_unknown_one_are_not_found(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = failed_job(app_client, user, 10)
    other = user_with_config(db, LIMITS)

    assert_clear_error(retry(app_client, other, job), 404)
    assert_clear_error(retry(app_client, user, str(uuid4())), 404)
    assert_clear_error(retry(app_client, uuid4(), job), 401)
    assert stored_job(db, job, "state")["state"] == "failed"
    # Not a job id: no such route.
    assert retry(app_client, user, "not-a-uuid").status_code == 404


def test_a_retry_racing_claims_hands_each_job_out_once_and_pays_once(
    database_url: str, db: psycopg.Connection, user: UUID
) -> None:
    """Retries and claims at once, through real connections: each retried job is handed out
    exactly once, as attempt 1, and pays its tokens once."""
    with serve_app(Settings(database_url=database_url, pool_size=4)) as client:
        jobs = [submit(client, user, queued_job({"openai": 2})) for _ in range(40)]
        for handed in claim(client, user, limit=40):
            lease_call(client, user, handed, "fail", error="x", retry=False)
        assert bucket_tokens(db, user, "openai") == 920
        claimed: list[dict[str, Any]] = []
        retrying = threading.Event()
        retrying.set()

        def claimer() -> None:
            while True:
                still_retrying = retrying.is_set()
                got = claim(client, user, limit=3)
                claimed.extend(got)
                if not got and not still_retrying:
                    return

        def retrier() -> None:
            for job_id in jobs:
                answer = retry(client, user, job_id)
                assert answer.status_code == 200, answer.text
            retrying.clear()

        threads = [threading.Thread(target=claimer) for _ in range(2)]
        threads.append(threading.Thread(target=retrier))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(job["job_id"] for job in claimed) == sorted(jobs)
    assert {job["attempt"] for job in claimed} == {1}
    states = {stored_job(db, job_id, "state")["state"] for job_id in jobs}
    assert states == {"running"}
    assert bucket_tokens(db, user, "openai") == 840


# --- janus jobs retry ---


def test_the_cli_retries_jobs_by_id(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    failed = failed_job(app_client, user, 10)
    cancelled = submit(app_client, user, queued_job({"openai": 10}))
    assert cancel(app_client, user, cancelled).status_code == 200
    queued = submit(app_client, user, queued_job({"openai": 10}))
    unknown = str(uuid4())

    assert janus_cli(["jobs", "retry", str(user), failed, cancelled, queued, unknown]) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"{failed}  retried",
        f"{cancelled}  retried",
        f"{queued}  not retried: queued",
        f"{unknown}  not found",
        "retried 2 jobs",
    ]
    assert [stored_job(db, job, "state")["state"] for job in (failed, cancelled, queued)] == [
        "waiting",
        "waiting",
        "queued",
    ]


def test_the_cli_retries_by_filter_only_after_a_dry_run(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    failed = [failed_job(app_client, user, 1, batch_name="b1") for _ in range(2)]
    cancelled = submit(app_client, user, queued_job({"openai": 1}, batch_name="b1"))
    assert cancel(app_client, user, cancelled).status_code == 200
    other = failed_job(app_client, user, 1, batch_name="b2")

    assert janus_cli(["jobs", "retry", str(user), "--batch", "b1"]) == 0
    out = capsys.readouterr().out
    assert "3 failed, expired or cancelled jobs match" in out and "--yes" in out
    assert janus_cli(["jobs", "retry", str(user), "--batch", "b1", "--state", "failed"]) == 0
    assert "2 failed jobs match" in capsys.readouterr().out
    assert stored_job(db, cancelled, "state")["state"] == "cancelled"

    assert janus_cli(["jobs", "retry", str(user), "--state", "cancelled", "--yes"]) == 0
    assert capsys.readouterr().out.strip() == "retried 1 jobs"
    assert janus_cli(["jobs", "retry", str(user), "--batch", "b1", "--yes"]) == 0
    assert capsys.readouterr().out.strip() == "retried 2 jobs"

    assert all(stored_job(db, job, "state")["state"] == "waiting" for job in [*failed, cancelled])
    assert stored_job(db, other, "state")["state"] == "failed"


def test_the_cli_refuses_ids_with_filters_and_a_retry_of_nothing(
    user: UUID, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert janus_cli(["jobs", "retry", str(user), str(uuid4()), "--state", "failed"]) == 2
    assert janus_cli(["jobs", "retry", str(user)]) == 2
    assert janus_cli(["jobs", "retry", str(user), "--state", "completed"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(line.startswith("janus: error: ") for line in errors)
