"""The queue's routes, driven in-process: submit accepted jobs, claim them, end their leases.

Also what the queue tests read back from the database: a job's row as the queue left it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import falcon.testing
import psycopg

from tests.support.app import post_json
from tests.support.factories import stored_job

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
