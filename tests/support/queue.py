"""The queue's routes, driven in-process: submit accepted jobs, claim them, end their leases.

Also what the queue tests read back from the database: a job's row as the queue left it; and
a queue with jobs in every state, for the queue gauges and the queue's psql recipes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg

from tests.support.app import post_json
from tests.support.factories import activate_config, create_user, stored_job

CLAIM = "/system/jobs/claim"
COMPLETE_MANY = "/system/jobs/complete"


def lease_route(job_id: UUID | str, call: str) -> str:
    """/system/jobs/{job_id}/heartbeat, .../complete or .../fail."""
    return f"/system/jobs/{job_id}/{call}"


def queued_job(
    dependencies: dict[str, int] | None = None,
    *,
    priority: int = 5,
    tenant_id: str = "tenant-a",
    batch_name: str = "batch-a",
    payload: Any = None,
) -> dict[str, Any]:
    """A single job's body."""
    body: dict[str, Any] = {
        "batch_name": batch_name,
        "tenant_id": tenant_id,
        "priority": priority,
        "dependencies": dependencies or {},
    }
    if payload is not None:
        body["payload"] = payload
    return body


def submit(client: falcon.testing.TestClient, user_id: UUID, body: dict[str, Any]) -> str:
    """Submit one job that must be accepted; its id."""
    answer = post_json(client, "/system/jobs", user_id, body)
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json["job_id"]
    return job_id


def claim(client: falcon.testing.TestClient, user_id: UUID, **body: Any) -> list[dict[str, Any]]:
    """POST /system/jobs/claim, which must answer 200; the claimed jobs."""
    answer = post_json(client, CLAIM, user_id, body)
    assert answer.status_code == 200, answer.text
    assert list(answer.json) == ["jobs"], answer.json
    jobs: list[dict[str, Any]] = answer.json["jobs"]
    return jobs


def lease_call(
    client: falcon.testing.TestClient,
    user_id: UUID,
    job: dict[str, Any],
    call: str,
    **body: Any,
) -> falcon.testing.Result:
    """Heartbeat, complete or fail a claimed job under its lease token (unless one is given)."""
    body.setdefault("lease_token", job["lease_token"])
    return post_json(client, lease_route(job["job_id"], call), user_id, body)


def job_row(db: psycopg.Connection, job_id: str) -> dict[str, Any]:
    """A stored job's queue columns; result as the text stored."""
    return stored_job(
        db,
        job_id,
        "state, attempts, lease_token, result::text AS result, error, actual_costs,"
        " settled_at, finished_at",
    )


def expire_lease(db: psycopg.Connection, job_id: str) -> None:
    """Move a running job's lease into the past, as if its worker had died a while ago."""
    db.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second'"
        " WHERE job_id = %s AND state = 'running'",
        [UUID(job_id)],
    )


@dataclass(frozen=True)
class QueueScene:
    """Two users' jobs in every state of the queue, built through the real routes: what the
    queue gauges and the queue's psql recipes are checked against."""

    # Users "busy" and "idle" (the names the recipes show).
    busy: UUID
    idle: UUID
    # busy's oldest queued job, created OLDEST_QUEUED_S ago, and idle's waiting job whose
    # run_at has passed, created OLDEST_DUE_S ago: the oldest claimable job of all.
    oldest_queued: str
    oldest_due: str
    # busy's job whose lease expired, taken back and claimed again (running, attempt 2).
    lease_expired: str


OLDEST_QUEUED_S = 600
OLDEST_DUE_S = 3600


def queue_in_every_state(client: falcon.testing.TestClient, db: psycopg.Connection) -> QueueScene:
    """busy: 3 queued, 2 running (one after its lease expired), 1 completed; idle: 1 waiting
    with its run_at passed, 1 waiting until later, 1 running. Waiting 2, queued 3, running
    3 in all."""
    busy, idle = create_user(db, "busy"), create_user(db, "idle")
    for user_id in (busy, idle):
        activate_config(db, user_id, {})
    busy_jobs = [submit(client, busy, queued_job()) for _ in range(6)]
    # The second stays running under its first lease.
    first, _, third = claim(client, busy, limit=3)
    assert lease_call(client, busy, third, "complete", result={}).status_code == 200
    # The worker of `first` died: busy's next claim takes it back, and claims it again first
    # (the oldest of the highest priority).
    expire_lease(db, first["job_id"])
    [again] = claim(client, busy, limit=1)
    assert again["job_id"] == first["job_id"] and again["attempt"] == 2
    oldest_queued = busy_jobs[3]
    db.execute(
        "UPDATE jobs SET created_at = now() - make_interval(secs => %s) WHERE job_id = %s",
        [OLDEST_QUEUED_S, UUID(oldest_queued)],
    )

    idle_jobs = [submit(client, idle, queued_job()) for _ in range(3)]
    claimed = claim(client, idle, limit=3)
    for job in claimed[:2]:
        failed = lease_call(client, idle, job, "fail", error="429", retry_after_seconds=3600)
        assert failed.status_code == 200, failed.text
    oldest_due = claimed[0]["job_id"]
    db.execute(
        "UPDATE jobs SET run_at = now() - interval '1 second',"
        " created_at = now() - make_interval(secs => %s) WHERE job_id = %s",
        [OLDEST_DUE_S, UUID(oldest_due)],
    )
    assert sorted(job["job_id"] for job in claimed) == sorted(idle_jobs)
    return QueueScene(busy, idle, oldest_queued, oldest_due, first["job_id"])
