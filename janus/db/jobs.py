"""Admission as the database sees it: one call of admit_jobs() per request."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import IsolationLevel
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from janus.admission import Decision, IdempotencyKey, JobRequest, Mode, Source
from janus.db import queries
from janus.db.transactions import fetch_in_transaction


def _job_document(job: JobRequest) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies the payload, recursively.
    return {
        "tenant_id": job.tenant_id,
        "priority": job.priority,
        "dependencies": job.dependencies,
        "payload": job.payload,
    }


def admit_jobs(
    pool: ConnectionPool,
    *,
    user_id: UUID,
    source: Source,
    batch_name: str,
    jobs: Sequence[JobRequest],
    mode: Mode,
    retries: int,
    idempotency_key: IdempotencyKey | None = None,
) -> list[Decision]:
    """Decide `jobs` for `user_id` and store them; the decisions come back in request order.

    With an idempotency key, a repeat of an accepted request returns the first decisions,
    marked `replayed`, and takes nothing.
    """
    atomic = mode is Mode.ATOMIC
    params = {
        "user_id": user_id,
        "source": source.value,
        "batch_name": batch_name,
        "jobs": json.dumps([_job_document(job) for job in jobs], ensure_ascii=False),
        "atomic": atomic,
        "idempotency_key": idempotency_key.key if idempotency_key else None,
        "request_hash": idempotency_key.request_hash if idempotency_key else None,
    }
    return fetch_in_transaction(
        pool,
        queries.ADMIT_JOBS,
        params,
        row_factory=class_row(Decision),
        # Atomic batches run SERIALIZABLE, as the contract asks; the others need no more
        # than READ COMMITTED, since the bucket row locks serialise every decision.
        isolation=IsolationLevel.SERIALIZABLE if atomic else IsolationLevel.READ_COMMITTED,
        retries=retries,
    )


class AdmissionStore:
    """admit_jobs() bound to a pool and a retry budget: what the job resources are given."""

    def __init__(self, pool: ConnectionPool, *, retries: int) -> None:
        self._pool = pool
        self._retries = retries

    def admit(
        self,
        *,
        user_id: UUID,
        source: Source,
        batch_name: str,
        jobs: Sequence[JobRequest],
        mode: Mode,
        idempotency_key: IdempotencyKey | None = None,
    ) -> list[Decision]:
        """Decide and store `jobs`; see `admit_jobs`."""
        return admit_jobs(
            self._pool,
            user_id=user_id,
            source=source,
            batch_name=batch_name,
            jobs=jobs,
            mode=mode,
            retries=self._retries,
            idempotency_key=idempotency_key,
        )
