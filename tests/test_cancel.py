"""Cancelling queued jobs, in-process over real Postgres: POST /dashboard/jobs/{job_id}/cancel
and `janus jobs cancel`, what each gives back, and a cancel racing claims.
"""

from __future__ import annotations

import threading
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
    stored_job,
    tenant_tokens,
    user_with_config,
)
from tests.support.queue import claim, lease_call, queued_job, submit

LIMITS = {
    "openai": {"capacity": 1000, "refill_per_second": 0},
    "stripe": {"capacity": 1000, "refill_per_second": 0},
}


@pytest.fixture
def user(db: psycopg.Connection) -> UUID:
    """Buckets that never refill, so every token given back shows."""
    return user_with_config(db, LIMITS)


def cancel(client: falcon.testing.TestClient, user_id: UUID, job_id: str) -> Any:
    """POST /dashboard/jobs/{job_id}/cancel, with no body."""
    return client.simulate_post(f"/dashboard/jobs/{job_id}/cancel", headers=headers_for(user_id))


def test_a_queued_job_is_cancelled_its_tokens_go_back_and_no_claim_gets_it(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = submit(app_client, user, queued_job({"openai": 30, "stripe": 4}))
    kept = submit(app_client, user, queued_job({"openai": 5}))
    assert bucket_tokens(db, user, "openai") == 965

    answer = cancel(app_client, user, job)

    assert answer.status_code == 200, answer.text
    assert answer.json == {"job_id": job, "state": "cancelled"}
    assert bucket_tokens(db, user, "openai") == 995
    assert bucket_tokens(db, user, "stripe") == 1000
    row = stored_job(db, job, "state, finished_at, actual_costs, settled_at")
    assert row["state"] == "cancelled"
    assert row["finished_at"] is not None and row["settled_at"] is not None
    assert row["actual_costs"] == {"openai": 0, "stripe": 0}
    assert [claimed["job_id"] for claimed in claim(app_client, user, limit=10)] == [kept]
    # The history shows it, and filters by it.
    detail = app_client.simulate_get(f"/dashboard/jobs/{job}", headers=headers_for(user))
    assert detail.json["state"] == "cancelled"
    listed = app_client.simulate_get(
        "/dashboard/jobs", params={"state": "cancelled"}, headers=headers_for(user)
    )
    assert [item["job_id"] for item in listed.json["jobs"]] == [job]


def test_cancelling_again_answers_the_same_and_gives_nothing_more_back(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = submit(app_client, user, queued_job({"openai": 30}))
    assert cancel(app_client, user, job).status_code == 200
    submit(app_client, user, queued_job({"openai": 10}))

    again = cancel(app_client, user, job)

    assert again.status_code == 200
    assert again.json == {"job_id": job, "state": "cancelled"}
    assert bucket_tokens(db, user, "openai") == 990


def test_a_tenant_share_gets_its_tokens_back_with_the_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(db, LIMITS, tenant_share=0.5)
    job = submit(app_client, user, queued_job({"openai": 100}, tenant_id="tenant-a"))
    assert tenant_tokens(db, user, "openai", "tenant-a") == 400

    assert cancel(app_client, user, job).status_code == 200

    assert tenant_tokens(db, user, "openai", "tenant-a") == 500
    assert bucket_tokens(db, user, "openai") == 1000


def test_a_job_handed_out_before_is_cancelled_without_giving_tokens_back(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    # Its first attempt called the upstream with what admission took.
    job = submit(app_client, user, queued_job({"openai": 30}))
    [claimed] = claim(app_client, user, limit=1)
    failed = lease_call(app_client, user, claimed, "fail", error="upstream down", retry=True)
    # Waiting to be paid for again when it is handed out again: it has taken nothing since.
    assert failed.json["state"] == "waiting"

    assert cancel(app_client, user, job).status_code == 200

    assert bucket_tokens(db, user, "openai") == 970
    assert stored_job(db, job, "state, actual_costs") == {
        "state": "cancelled",
        "actual_costs": None,
    }


def test_running_finished_and_rejected_jobs_are_not_cancelled(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    running = submit(app_client, user, queued_job({"openai": 10}))
    [claimed] = claim(app_client, user, limit=1)
    completed = submit(app_client, user, queued_job({"openai": 10}))
    [to_complete] = claim(app_client, user, limit=1)
    assert lease_call(app_client, user, to_complete, "complete").status_code == 200
    rejected = post_json(app_client, "/system/jobs", user, queued_job({"openai": 5000}))
    assert rejected.status_code == 429
    tokens = bucket_tokens(db, user, "openai")

    for job_id, words in [
        (running, "running"),
        (completed, "already ended (completed)"),
        (rejected.json["job_id"], "rejected"),
    ]:
        answer = cancel(app_client, user, job_id)
        assert_clear_error(answer, 409)
        assert words in answer.json["description"]

    assert stored_job(db, running, "state")["state"] == "running"
    assert bucket_tokens(db, user, "openai") == tokens
    # The worker's lease still holds.
    assert lease_call(app_client, user, claimed, "complete").status_code == 200


def test_another_users_job_and_an_unknown_one_are_not_found(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    job = submit(app_client, user, queued_job({"openai": 10}))
    other = create_user(db, "other")
    activate_config(db, other, LIMITS)

    assert_clear_error(cancel(app_client, other, job), 404)
    assert_clear_error(cancel(app_client, user, str(uuid4())), 404)
    assert_clear_error(cancel(app_client, uuid4(), job), 401)
    assert stored_job(db, job, "state")["state"] == "queued"
    # Not a job id: no such route.
    assert cancel(app_client, user, "not-a-uuid").status_code == 404


def test_a_cancel_racing_claims_ends_each_job_once(
    database_url: str, db: psycopg.Connection, user: UUID
) -> None:
    """Claims and cancels of the same jobs at once, through real connections: every job is
    either handed to a worker or cancelled, never both, and tokens come back only for the
    cancelled ones."""
    with serve_app(Settings(database_url=database_url, pool_size=4)) as client:
        jobs = [submit(client, user, queued_job({"openai": 2})) for _ in range(60)]
        claimed: list[str] = []
        cancelled: list[str] = []
        refused: list[str] = []

        def claimer() -> None:
            while True:
                got = claim(client, user, limit=3)
                if not got:
                    return
                claimed.extend(job["job_id"] for job in got)

        def canceller() -> None:
            for job_id in jobs:
                answer = cancel(client, user, job_id)
                (cancelled if answer.status_code == 200 else refused).append(job_id)
                assert answer.status_code in (200, 409), answer.text

        threads = [threading.Thread(target=claimer) for _ in range(2)]
        threads.append(threading.Thread(target=canceller))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(claimed + cancelled) == sorted(jobs)
    assert not set(claimed) & set(cancelled)
    assert sorted(refused) == sorted(claimed)
    states = {job_id: stored_job(db, job_id, "state")["state"] for job_id in jobs}
    assert {job_id for job_id, state in states.items() if state == "cancelled"} == set(cancelled)
    assert bucket_tokens(db, user, "openai") == 1000 - 2 * len(claimed)


# --- janus jobs cancel ---


def test_the_cli_cancels_jobs_by_id(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    first = submit(app_client, user, queued_job({"openai": 10}))
    second = submit(app_client, user, queued_job({"openai": 10}))
    unknown = str(uuid4())

    assert janus_cli(["jobs", "cancel", str(user), first, second, unknown]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{first}  cancelled",
        f"{second}  cancelled",
        f"{unknown}  not found",
        "cancelled 2 jobs",
    ]
    assert bucket_tokens(db, user, "openai") == 1000
    # `janus jobs USER_ID` still lists.
    assert janus_cli(["jobs", str(user), "--state", "cancelled"]) == 0
    assert capsys.readouterr().out.count("cancelled") == 2


def test_the_cli_cancels_by_filter_only_after_a_dry_run(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    mine = [submit(app_client, user, queued_job({"openai": 1}, batch_name="b1")) for _ in range(3)]
    other = submit(app_client, user, queued_job({"openai": 1}, batch_name="b2"))

    assert janus_cli(["jobs", "cancel", str(user), "--batch", "b1"]) == 0
    out = capsys.readouterr().out
    assert "3 queued or waiting jobs match" in out and "--yes" in out
    assert all(stored_job(db, job, "state")["state"] == "queued" for job in mine)

    assert janus_cli(["jobs", "cancel", str(user), "--batch", "b1", "--yes"]) == 0
    assert capsys.readouterr().out.strip().endswith("cancelled 3 jobs")
    assert all(stored_job(db, job, "state")["state"] == "cancelled" for job in mine)
    assert stored_job(db, other, "state")["state"] == "queued"
    assert bucket_tokens(db, user, "openai") == 999


def test_the_cli_refuses_ids_with_filters_and_a_cancel_of_nothing(
    user: UUID, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert janus_cli(["jobs", "cancel", str(user), str(uuid4()), "--batch", "b1"]) == 2
    assert janus_cli(["jobs", "cancel", str(user)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith("janus: error: ") for line in errors)


def test_prune_deletes_cancelled_jobs_past_retention_through_jobs_done(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = submit(app_client, user, queued_job({"openai": 1}))
    recent = submit(app_client, user, queued_job({"openai": 1}))
    for job_id in (old, recent):
        assert cancel(app_client, user, job_id).status_code == 200
    # Past the default retention of 7 days.
    db.execute(
        "UPDATE jobs SET finished_at = finished_at - interval '8 days' WHERE job_id = %s", [old]
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    # Jobs kept 30 days by the deployment: the config's 7 come first, by DELETE.
    monkeypatch.setenv("JANUS_JOBS_RETENTION_MINUTES", str(30 * 24 * 60))

    assert janus_cli(["prune"]) == 0

    remaining = [str(job_id) for (job_id,) in db.execute("SELECT job_id FROM jobs")]
    assert remaining == [recent]
    # Its index path, whatever the planner would pick on a table this small.
    with db.transaction():
        db.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            line
            for (line,) in db.execute(
                "EXPLAIN SELECT job_id FROM jobs WHERE user_id = %s"
                " AND state IN ('completed', 'failed', 'cancelled', 'expired')"
                " AND finished_at < now()"
                " ORDER BY finished_at LIMIT 10",
                [user],
            )
        )
    # In each partition of jobs, its own jobs_done (jobs_before_done, jobs_20261207_1400_done).
    scans = [line for line in plan.splitlines() if "Index Scan using" in line]
    assert scans and all("_done on jobs_" in line for line in scans), plan
