"""Jobs written straight into the jobs table, with the times and states a test needs: a
history is built in one statement, where submitting each job would take seconds."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from tests.support.answers import RATE_LIMITED

HISTORY = "/dashboard/jobs"
QUOTAS = "/dashboard/quotas"
ACTIVITY = "/dashboard/activity"


def job_id_at(moment: str) -> str:
    """SQL for a job id as new_job_id() makes one at `moment` (an SQL expression): the first
    id of that moment, with the random bits of a gen_random_uuid()."""
    return (
        f"encode(overlay(uuid_send(first_job_id_at({moment}))"
        " PLACING substring(uuid_send(gen_random_uuid()) FROM 9) FROM 9), 'hex')::uuid"
    )


# One row per job; n counts from 0, and job n is n x spacing_s seconds older than `newest`.
# Its id is time-ordered, of its created_at, as admission makes it.
_INSERT = (
    """
INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority, dependencies,
                  payload, status, reason, retry_after, state, attempts, created_at,
                  finished_at)
SELECT """
    + job_id_at("j.created_at")
    + """, %(user_id)s, %(source)s, %(batch_name)s, %(tenant_id)s, 5,
       '{"openai": 1}', '{"n": 1}', %(status)s,
       CASE WHEN %(status)s = 'Rejected' THEN %(reason)s ELSE '' END,
       CASE WHEN %(status)s = 'Rejected' THEN 3 END,
       %(state)s, CASE WHEN %(state)s = 'completed' THEN 1 ELSE 0 END,
       j.created_at,
       CASE WHEN %(state)s IN ('completed', 'failed') THEN %(newest)s END
  FROM generate_series(0, %(count)s - 1) AS n
 CROSS JOIN LATERAL (
       SELECT %(newest)s::timestamptz - make_interval(secs => n * %(spacing_s)s) AS created_at
       ) j
RETURNING job_id
"""
)


def insert_jobs(
    db: psycopg.Connection,
    user_id: UUID,
    count: int,
    *,
    newest: datetime | None = None,
    spacing_s: float = 1.0,
    source: str = "dashboard",
    batch_name: str = "batch-a",
    tenant_id: str = "tenant-a",
    status: str = "Accepted",
    state: str | None = "completed",
    reason: str = RATE_LIMITED,
) -> list[UUID]:
    """Store `count` jobs of `user_id`, `spacing_s` apart, the newest at `newest` (now by
    default); their ids, newest first when spacing_s > 0. Rejected jobs have no state (pass
    state=None), with `reason`; this helper makes no running ones (they need a lease)."""
    params: dict[str, Any] = {
        "user_id": user_id,
        "count": count,
        "newest": newest,
        "spacing_s": spacing_s,
        "source": source,
        "batch_name": batch_name,
        "tenant_id": tenant_id,
        "status": status,
        "state": state,
        "reason": reason,
    }
    if newest is None:
        row = db.execute("SELECT now()").fetchone()
        assert row is not None
        params["newest"] = row[0]
    return [row[0] for row in db.execute(_INSERT, params)]


def give_random_ids(db: psycopg.Connection, job_ids: list[str], *, above: bool) -> list[str]:
    """New random ids (version 4, as before migration 0013) for the jobs: sorting above every
    time-ordered id when `above` (most do), else below; their new ids in the same order."""
    prefix = "f" if above else "00"
    return [
        str(
            db.execute(
                "UPDATE jobs SET job_id = overlay(gen_random_uuid()::text PLACING %s FROM 1)::uuid"
                " WHERE job_id = %s RETURNING job_id",
                [prefix, job_id],
            ).fetchone()[0]  # type: ignore[index]
        )
        for job_id in job_ids
    ]
