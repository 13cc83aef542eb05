"""The queue as the database sees it: one call of hand_out_jobs(), heartbeat_job(),
finish_jobs(), cancel_jobs() or retry_jobs() per request, each in a transaction of its own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from janus.db import queries
from janus.db.errors import translated
from janus.db.transactions import fetch_in_transaction
from janus.history import JobFilter
from janus.queue import (
    Cancellation,
    CancelOutcome,
    Claim,
    ClaimedJob,
    ClaimRequest,
    Finish,
    Finished,
    Heartbeat,
    JobState,
    LeaseOutcome,
    Retrial,
    RetryOutcome,
)


def finish_params(user_id: UUID, items: Sequence[Finish]) -> dict[str, Any]:
    """The parameters of queries.FINISH_JOBS: one array element per item, in order."""

    def costs(item: Finish) -> str | None:
        return None if item.actual_costs is None else json.dumps(item.actual_costs)

    def throttled(item: Finish) -> str | None:
        names = item.upstream_throttled
        return None if names is None else json.dumps(list(names))

    return {
        "user_id": user_id,
        "job_ids": [item.job_id for item in items],
        "lease_tokens": [item.lease_token for item in items],
        "failed": [item.failed for item in items],
        "results": [item.result for item in items],
        "errors": [item.error for item in items],
        "retry": [item.retry for item in items],
        "actual_costs": [costs(item) for item in items],
        "upstream_throttled": [throttled(item) for item in items],
        "retry_after_seconds": [item.retry_after_seconds for item in items],
    }


class QueueStore:
    """The JobQueue the queue resources use: hand_out_jobs() and friends bound to a pool.

    READ COMMITTED is enough: every function locks the rows it changes (SKIP LOCKED for the
    claim), and a deadlock, which the lock order rules out, would still be retried.
    """

    def __init__(self, pool: ConnectionPool, *, retries: int) -> None:
        self._pool = pool
        self._retries = retries

    def claim(self, request: ClaimRequest) -> Claim:
        """Lease up to `request.limit` jobs, paying for the waiting ones; see
        hand_out_jobs.sql."""
        params = {
            "user_id": request.user_id,
            "limit": request.limit,
            "lease_seconds": request.lease_seconds,
            "tenant_id": request.tenant_id,
            "batch_name": request.batch_name,
            "dependencies": None if request.dependencies is None else list(request.dependencies),
        }
        rows = fetch_in_transaction(
            self._pool, queries.HAND_OUT_JOBS, params, row_factory=tuple_row, retries=self._retries
        )
        *jobs, (*_, leases_expired, jobs_expired) = rows
        return Claim(
            [ClaimedJob(*job[:-2]) for job in jobs],
            leases_expired=leases_expired,
            jobs_expired=jobs_expired,
        )

    def heartbeat(
        self, user_id: UUID, job_id: UUID, lease_token: UUID, lease_seconds: int
    ) -> Heartbeat:
        """Extend a lease under its token; see heartbeat_job.sql."""
        params = {
            "user_id": user_id,
            "job_id": job_id,
            "lease_token": lease_token,
            "lease_seconds": lease_seconds,
        }
        [(outcome, expires)] = fetch_in_transaction(
            self._pool,
            queries.HEARTBEAT_JOB,
            params,
            row_factory=tuple_row,
            retries=self._retries,
        )
        return Heartbeat(LeaseOutcome(outcome), expires)

    def finish(self, user_id: UUID, items: Sequence[Finish]) -> list[Finished]:
        """Complete or fail every item in one transaction; see finish_jobs.sql."""
        rows = fetch_in_transaction(
            self._pool,
            queries.FINISH_JOBS,
            finish_params(user_id, items),
            row_factory=tuple_row,
            retries=self._retries,
        )
        return [
            Finished(job_id, LeaseOutcome(outcome), cast(JobState | None, state), attempt)
            for job_id, outcome, state, attempt in rows
        ]

    def cancel(self, user_id: UUID, job_ids: Sequence[UUID]) -> list[Cancellation]:
        """Cancel the queued or waiting jobs among `job_ids` in one transaction; see
        cancel_jobs.sql."""
        return _cancellations(self._on_jobs(queries.CANCEL_JOBS, user_id, job_ids))

    def retry(self, user_id: UUID, job_ids: Sequence[UUID]) -> list[Retrial]:
        """Send the failed, expired or cancelled jobs among `job_ids` back to wait in one
        transaction; see retry_jobs.sql."""
        return _retrials(self._on_jobs(queries.RETRY_JOBS, user_id, job_ids))

    def _on_jobs(
        self, query: str, user_id: UUID, job_ids: Sequence[UUID]
    ) -> list[tuple[UUID, str, str | None]]:
        """cancel_jobs() or retry_jobs() in a transaction of its own: (job_id, outcome, state)
        per id, in order."""
        return fetch_in_transaction(
            self._pool,
            query,
            {"user_id": user_id, "job_ids": list(job_ids)},
            row_factory=tuple_row,
            retries=self._retries,
        )


def _cancellations(rows: Sequence[tuple[UUID, str, str | None]]) -> list[Cancellation]:
    return [
        Cancellation(job_id, CancelOutcome(outcome), cast(JobState | None, state))
        for job_id, outcome, state in rows
    ]


def _retrials(rows: Sequence[tuple[UUID, str, str | None]]) -> list[Retrial]:
    return [
        Retrial(job_id, RetryOutcome(outcome), cast(JobState | None, state))
        for job_id, outcome, state in rows
    ]


def cancel_jobs(
    conn: psycopg.Connection[Any], user_id: UUID, job_ids: Sequence[UUID]
) -> list[Cancellation]:
    """cancel_jobs() on an operator's connection (`janus jobs cancel`): one Cancellation per
    id, in order; see cancel_jobs.sql."""
    return _cancellations(_on_jobs(conn, queries.CANCEL_JOBS, user_id, job_ids))


def retry_jobs(
    conn: psycopg.Connection[Any], user_id: UUID, job_ids: Sequence[UUID]
) -> list[Retrial]:
    """retry_jobs() on an operator's connection (`janus jobs retry`): one Retrial per id, in
    order; see retry_jobs.sql."""
    return _retrials(_on_jobs(conn, queries.RETRY_JOBS, user_id, job_ids))


def _on_jobs(
    conn: psycopg.Connection[Any], query: str, user_id: UUID, job_ids: Sequence[UUID]
) -> list[tuple[UUID, str, str | None]]:
    """cancel_jobs() or retry_jobs() on the caller's connection: (job_id, outcome, state) per
    id, in order."""
    with translated():
        return conn.execute(query, {"user_id": user_id, "job_ids": list(job_ids)}).fetchall()


def job_ids_in_states(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    states: Sequence[str],
    filters: JobFilter,
    *,
    after: UUID | None,
    chunk: int,
) -> list[UUID]:
    """The next `chunk` jobs of `user_id` in one of `states` after the id `after`, matching
    `filters` (their status and state are not read), in job_id order."""
    params = {
        "user_id": user_id,
        "states": list(states),
        "after": after,
        "tenant_id": filters.tenant_id,
        "batch_name": filters.batch_name,
        "source": filters.source,
        "since": filters.since,
        "until": filters.until,
        "chunk": chunk,
    }
    with translated():
        return [job_id for (job_id,) in conn.execute(queries.JOB_IDS_IN_STATES, params)]
