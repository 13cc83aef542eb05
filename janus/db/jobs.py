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


def admit_jobs_params(
    *,
    user_id: UUID,
    source: Source,
    batch_name: str,
    jobs: Sequence[JobRequest],
    mode: Mode,
    idempotency_key: IdempotencyKey | None = None,
) -> dict[str, Any]:
    """The parameters of queries.ADMIT_JOBS for one request (the benchmark sends them too)."""
    return {
        "user_id": user_id,
        "source": source.value,
        "batch_name": batch_name,
        "tenants": [job.tenant_id for job in jobs],
        "priorities": [job.priority for job in jobs],
        "dependencies": [json.dumps(job.dependencies, ensure_ascii=False) for job in jobs],
        "payloads": [job.payload for job in jobs],
        "atomic": mode is Mode.ATOMIC,
        "idempotency_key": idempotency_key.key if idempotency_key else None,
        "request_hash": idempotency_key.request_hash if idempotency_key else None,
    }


def isolation_for(mode: Mode) -> IsolationLevel:
    """Atomic batches run SERIALIZABLE, as the contract asks; the others READ COMMITTED.

    READ COMMITTED is enough for them because the bucket row locks serialise every decision.
    """
    return IsolationLevel.SERIALIZABLE if mode is Mode.ATOMIC else IsolationLevel.READ_COMMITTED


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
    params = admit_jobs_params(
        user_id=user_id,
        source=source,
        batch_name=batch_name,
        jobs=jobs,
        mode=mode,
        idempotency_key=idempotency_key,
    )
    return fetch_in_transaction(
        pool,
        queries.ADMIT_JOBS,
        params,
        row_factory=class_row(Decision),
        isolation=isolation_for(mode),
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
