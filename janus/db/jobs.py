"""Admission as the database sees it: one call of admit_jobs() per request."""

from __future__ import annotations

import json
from typing import Any, assert_never

from psycopg import IsolationLevel
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from janus.admission import Admission, AdmissionRequest, Budget, Decision, Mode
from janus.db import queries
from janus.db.transactions import Statement, fetch_in_transaction
from janus.reasons import reason_code_of


def admit_jobs_params(request: AdmissionRequest, *, quote: bool = False) -> dict[str, Any]:
    """The parameters of queries.ADMIT_JOBS for one request (the benchmark sends them too);
    with `quote`, for deciding it without storing or taking anything."""
    jobs = request.jobs
    key = request.idempotency_key
    return {
        "user_id": request.user_id,
        "source": request.source.value,
        "batch_name": request.batch_name,
        "tenants": [job.tenant_id for job in jobs],
        "priorities": [job.priority for job in jobs],
        # json.dumps with no option reuses one encoder; with any, it builds one per call. The
        # escapes of ensure_ascii are read back by jsonb as the same names.
        "dependencies": [json.dumps(job.dependencies) for job in jobs],
        "payloads": [job.payload for job in jobs],
        "atomic": request.mode.all_or_nothing,
        "idempotency_key": key.key if key else None,
        "request_hash": key.request_hash if key else None,
        "quote": quote,
    }


# admit_jobs_params' per-job arrays, and what queries.ADMIT_JOB names their one element.
_SCALARS_OF_ONE_JOB = {
    "tenants": "tenant",
    "priorities": "priority",
    "dependencies": "dependencies",
    "payloads": "payload",
}


def admission_statement(request: AdmissionRequest, *, quote: bool = False) -> Statement:
    """The statement that decides `request` (the benchmark sends it too): queries.ADMIT_JOB,
    with the job's values as scalars, for one job; queries.ADMIT_JOBS, with admit_jobs_params,
    for more.
    """
    params = admit_jobs_params(request, quote=quote)
    if len(request.jobs) != 1:
        return Statement(queries.ADMIT_JOBS, params)
    for plural, single in _SCALARS_OF_ONE_JOB.items():
        [params[single]] = params.pop(plural)
    return Statement(queries.ADMIT_JOB, params)


# Postgres sizes its shared lock table for max_locks_per_transaction (64 by default) locks
# per connection on average, and an advisory lock takes one entry for as long as it is held:
# a batch naming more buckets than this (up to 1000 jobs x 32 names) takes none, rather
# than fill that table for every session.
MAX_BUCKET_LOCKS = 32


def bucket_locks(request: AdmissionRequest, isolation: IsolationLevel) -> Statement | None:
    """queries.LOCK_BUCKETS_FOR_ATOMIC for `request` decided at `isolation`: one advisory lock
    per bucket it names; None for any but a SERIALIZABLE decision, and beyond
    MAX_BUCKET_LOCKS buckets.

    A SERIALIZABLE decision takes them before its transaction begins, so that concurrent ones
    on a bucket queue instead of failing to serialise (the benchmark sends them too). Without
    them it may fail to serialise, and is retried.
    """
    if isolation is not IsolationLevel.SERIALIZABLE:
        return None
    names = sorted({name for job in request.jobs for name in job.dependencies})
    if len(names) > MAX_BUCKET_LOCKS:
        return None
    return Statement(
        queries.LOCK_BUCKETS_FOR_ATOMIC,
        {"user_id": request.user_id, "dependency_names": names},
    )


def isolation_for(mode: Mode) -> IsolationLevel:
    """Atomic batches run SERIALIZABLE, as the contract asks; the others READ COMMITTED.

    READ COMMITTED is enough for them because the bucket row locks serialise every decision.
    """
    match mode:
        case Mode.ATOMIC:
            return IsolationLevel.SERIALIZABLE
        case Mode.SINGLE | Mode.PARTIAL:
            return IsolationLevel.READ_COMMITTED
        case _:
            assert_never(mode)


def admit_jobs(
    pool: ConnectionPool, request: AdmissionRequest, *, retries: int, quote: bool = False
) -> Admission:
    """Decide `request`'s jobs and store them; the decisions come back in request order, with
    the budgets of the buckets the request named as the decision left them.

    With an idempotency key, a repeat of an accepted request returns the first decisions,
    marked `replayed`, and takes nothing (and tells no budget).

    With `quote`, decide the same way and store nothing: the transaction is rolled back, and
    admit_jobs() writes nothing in it anyway. A quote writes nothing, so it needs no
    SERIALIZABLE snapshot, even for an atomic batch.

    A SERIALIZABLE decision first waits for the advisory locks of `bucket_locks`: its
    snapshot is then taken after any other atomic batch on its buckets has committed, so
    concurrent atomic batches queue rather than conflict. Single jobs and partial batches do
    not take them; one that debits a bucket while an atomic batch is under way can still make
    it fail to serialise, and it is retried.
    """
    isolation = IsolationLevel.READ_COMMITTED if quote else isolation_for(request.mode)
    statement = admission_statement(request, quote=quote)
    rows = fetch_in_transaction(
        pool,
        statement.query,
        statement.params,
        row_factory=tuple_row,
        isolation=isolation,
        retries=retries,
        commit=not quote,
        locks=bucket_locks(request, isolation),
    )
    # Columns as queries.ADMIT_JOBS and ADMIT_JOB name them; `budgets` is on the first row only.
    decisions = [
        Decision(
            job_id,
            status,
            reason,
            reason_code=reason_code_of(code),
            retry_after=retry_after,
            replayed=replayed,
            shadow_status=shadow_status,
            shadow_reason=shadow_reason,
            shadow_reason_code=reason_code_of(shadow_code),
            fits_at=fits_at,
        )
        for (
            job_id,
            status,
            reason,
            retry_after,
            replayed,
            _,
            shadow_status,
            shadow_reason,
            fits_at,
            code,
            shadow_code,
        ) in rows
    ]
    budgets = rows[0][5] or ()
    return Admission(decisions, tuple(Budget(**budget) for budget in budgets))


class AdmissionStore:
    """admit_jobs() bound to a pool and a retry budget: the Admitter the job resources use."""

    def __init__(self, pool: ConnectionPool, *, retries: int) -> None:
        self._pool = pool
        self._retries = retries

    def admit(self, request: AdmissionRequest) -> Admission:
        """Decide and store `request`'s jobs; see `admit_jobs`."""
        return admit_jobs(self._pool, request, retries=self._retries)

    def quote(self, request: AdmissionRequest) -> Admission:
        """Decide `request`'s jobs as `admit` would, and store nothing; see `admit_jobs`."""
        return admit_jobs(self._pool, request, retries=self._retries, quote=True)
