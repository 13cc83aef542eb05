"""Admission as the database sees it: one call of admit_requests() per request, or per group
of one user's requests."""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, assert_never

from psycopg import IsolationLevel
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from janus.admission import Admission, AdmissionRequest, Budget, Decision, Mode, NoDecision
from janus.db import queries
from janus.db.errors import refusal
from janus.db.transactions import Statement, fetch_in_transaction
from janus.reasons import reason_code_of

# The C encoder json.dumps builds anew on every call (ASCII escapes, ", " and ": "), built once
# for a batch's dependencies: validated names and integers, so no cycle check and no default.
_DEPENDENCIES_ENCODER = c_make_encoder(
    None, None, encode_basestring_ascii, None, ": ", ", ", False, False, True
)


def _dependencies_text(dependencies: dict[str, int]) -> str:
    """A job's dependencies as json.dumps writes them; its escapes are read back by jsonb as
    the same names."""
    return "".join(_DEPENDENCIES_ENCODER(dependencies, 0))


def group_params(requests: Sequence[AdmissionRequest], *, quote: bool = False) -> dict[str, Any]:
    """The parameters of queries.ADMIT_REQUESTS for `requests`, one user's, decided in this
    order; with `quote`, for deciding one request without storing or taking anything."""
    jobs = [job for request in requests for job in request.jobs]
    keys = [request.idempotency_key for request in requests]
    return {
        "user_id": requests[0].user_id,
        "sources": [request.source.value for request in requests],
        "batch_names": [request.batch_name for request in requests],
        "job_counts": [len(request.jobs) for request in requests],
        "idempotency_keys": [key.key if key else None for key in keys],
        "request_hashes": [key.request_hash if key else None for key in keys],
        "tenants": [job.tenant_id for job in jobs],
        "priorities": [job.priority for job in jobs],
        "dependencies": [_dependencies_text(job.dependencies) for job in jobs],
        "payloads": [job.payload for job in jobs],
        "atomic": requests[0].mode.all_or_nothing,
        "quote": quote,
        "when_limited": [_when_limited(request) for request in requests],
        "max_wait_seconds": [request.max_wait_seconds for request in requests],
        "run_at": [job.run_at for job in jobs],
    }


def _when_limited(request: AdmissionRequest) -> str | None:
    return None if request.when_limited is None else request.when_limited.value


def _one_job_params(request: AdmissionRequest, *, quote: bool) -> dict[str, Any]:
    """The parameters of queries.ADMIT_JOB: a request of one job, its values as scalars."""
    [job] = request.jobs
    key = request.idempotency_key
    return {
        "user_id": request.user_id,
        "source": request.source.value,
        "batch_name": request.batch_name,
        "idempotency_key": key.key if key else None,
        "request_hash": key.request_hash if key else None,
        "tenant": job.tenant_id,
        "priority": job.priority,
        "dependencies": _dependencies_text(job.dependencies),
        "payload": job.payload,
        "atomic": request.mode.all_or_nothing,
        "quote": quote,
        "when_limited": _when_limited(request),
        "max_wait_seconds": request.max_wait_seconds,
        "run_at": job.run_at,
    }


def admission_statement(requests: Sequence[AdmissionRequest], *, quote: bool = False) -> Statement:
    """The statement that decides `requests`, one user's, in this order (the benchmark sends it
    too): queries.ADMIT_JOB for one request of one job, the most common; queries.ADMIT_REQUESTS
    with group_params for any other.
    """
    if len(requests) == 1 and len(requests[0].jobs) == 1:
        return Statement(queries.ADMIT_JOB, _one_job_params(requests[0], quote=quote))
    return Statement(queries.ADMIT_REQUESTS, group_params(requests, quote=quote))


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
    """Decide `request`'s jobs and store them, alone; the decisions come back in request order,
    with the budgets of the buckets the request named as the decision left them. Raise the
    NoDecision that refused it, if one did.

    With an idempotency key, a repeat of an accepted request returns the first decisions,
    marked `replayed`, and takes nothing (and tells no budget).

    With `quote`, decide the same way and store nothing: the transaction is rolled back, and
    admit_requests() writes nothing in it anyway. A quote writes nothing, so it needs no
    SERIALIZABLE snapshot, even for an atomic batch.

    A SERIALIZABLE decision first waits for the advisory locks of `bucket_locks`: its
    snapshot is then taken after any other atomic batch on its buckets has committed, so
    concurrent atomic batches queue rather than conflict. Single jobs and partial batches do
    not take them; one that debits a bucket while an atomic batch is under way can still make
    it fail to serialise, and it is retried.
    """
    isolation = IsolationLevel.READ_COMMITTED if quote else isolation_for(request.mode)
    statement = admission_statement([request], quote=quote)
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
    [answer] = _answers(rows, 1)
    if isinstance(answer, NoDecision):
        raise answer
    return answer


def admit_group(
    pool: ConnectionPool,
    requests: Sequence[AdmissionRequest],
    *,
    retries: int,
    connection_timeout_s: float | None = None,
) -> list[Admission | NoDecision]:
    """Decide `requests`, single jobs and partial batches of one user, in one statement, one
    READ COMMITTED transaction and one commit: each answered in this order as it would have
    been alone (see admit_requests.sql), with its Admission or the NoDecision that refused it.

    A fault of the group (the connection, a timeout, conflicts past `retries`) is raised:
    nothing of any request is stored. A connection is waited for `connection_timeout_s` at
    most, the pool's timeout by default.
    """
    statement = admission_statement(requests)
    rows = fetch_in_transaction(
        pool,
        statement.query,
        statement.params,
        row_factory=tuple_row,
        retries=retries,
        connection_timeout_s=connection_timeout_s,
    )
    return _answers(rows, len(requests))


def _answers(rows: Sequence[tuple[Any, ...]], requests: int) -> list[Admission | NoDecision]:
    """Each request's answer from admit_requests()'s rows, which come request by request:
    its decisions with the budgets of its first row, or the refusal of its one error row."""
    decisions: list[list[Decision]] = [[] for _ in range(requests)]
    budgets: list[tuple[Budget, ...]] = [()] * requests
    refusals: dict[int, NoDecision] = {}
    # Columns as queries.ADMIT_REQUESTS and ADMIT_JOB name them.
    for (
        number,
        job_id,
        status,
        reason,
        retry_after,
        replayed,
        named,
        shadow_status,
        shadow_reason,
        fits_at,
        code,
        shadow_code,
        error,
        state,
        estimated_start,
    ) in rows:
        index = number - 1
        if error is not None:
            refusals[index] = refusal(error)
            continue
        if named:
            budgets[index] = tuple(Budget(**budget) for budget in named)
        decisions[index].append(
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
                waiting=state == "waiting",
                starts_at=estimated_start,
            )
        )
    return [
        refusals.get(index) or Admission(decisions[index], budgets[index])
        for index in range(requests)
    ]


class AdmissionStore:
    """admit_requests() bound to a pool and a retry budget: the GroupAdmitter the job resources
    use (through janus.grouping)."""

    def __init__(self, pool: ConnectionPool, *, retries: int) -> None:
        self._pool = pool
        self._retries = retries

    def admit(self, request: AdmissionRequest) -> Admission:
        """Decide and store `request`'s jobs alone; see `admit_jobs`."""
        return admit_jobs(self._pool, request, retries=self._retries)

    def admit_group(
        self, requests: Sequence[AdmissionRequest], *, connection_timeout_s: float
    ) -> list[Admission | NoDecision]:
        """Decide and store a group of one user's requests; see `admit_group`."""
        return admit_group(
            self._pool,
            requests,
            retries=self._retries,
            connection_timeout_s=connection_timeout_s,
        )

    def quote(self, request: AdmissionRequest) -> Admission:
        """Decide `request`'s jobs as `admit` would, and store nothing; see `admit_jobs`."""
        return admit_jobs(self._pool, request, retries=self._retries, quote=True)
