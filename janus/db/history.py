"""janus.history's JobHistory and ActivityReader and janus.quotas' QuotaReader over the pool,
and the same reads on an operator's connection for the CLI: named queries of queries.sql
(job_history and job_history_of_random_ids, job_record, job_activity; quota_mode,
bucket_quotas and tenant_quotas in one snapshot)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from psycopg.rows import class_row, dict_row, kwargs_row
from psycopg_pool import ConnectionPool

from janus.admission import ReadsBusy, UnknownUser
from janus.db import accounts, queries
from janus.db.errors import translated
from janus.history import (
    ACTIVITY_MAX_JOBS,
    ACTIVITY_MINUTES,
    PAGE_READS_AT_MOST,
    Activity,
    JobFilter,
    JobPage,
    JobPosition,
    JobRecord,
    JobSummary,
    MinuteActivity,
)
from janus.quotas import TENANT_QUOTAS_SHOWN, BucketQuota, TenantQuota, UserQuotas
from janus.reasons import reason_code_of

# The columns of job_history and job_record that hold a reason's code, as ReasonCode.
_CODE_COLUMNS = ("reason_code", "shadow_reason_code")


def _with_codes(columns: dict[str, Any]) -> dict[str, Any]:
    """A row's columns with its reason codes read as ReasonCode."""
    return {
        name: reason_code_of(value) if name in _CODE_COLUMNS else value
        for name, value in columns.items()
    }


def _job_summary(**columns: Any) -> JobSummary:
    """A job of queries.JOB_HISTORY as a JobSummary."""
    return JobSummary(**_with_codes(columns))


# The columns of a JobSummary, which the history statements return after what they read.
_SUMMARY_COLUMNS = tuple(field.name for field in fields(JobSummary))


def _job_record(**columns: Any) -> JobRecord:
    """The row of queries.JOB_RECORD as a JobRecord."""
    return JobRecord(**_with_codes(columns))


# The filters that may drive a page's read, each through an index that holds the user's jobs
# in the history's order (migration 0016), most selective first: the first one given drives,
# and every other filter is checked on the jobs it yields. status=Accepted has no index of
# its own (it is every state); `source` neither.
_DRIVING = ("batch_name", "tenant_id", "state", "status")


def _driving_filter(filters: JobFilter) -> str | None:
    """The filter whose index a page reads, or None for the primary key alone."""
    for name in _DRIVING:
        value = getattr(filters, name)
        if value is not None and not (name == "status" and value != "Rejected"):
            return name
    return None


# The filters checked on each job read rather than through an index (since and until are
# ranges of every index the history reads).
_CHECKED = ("status", "state", "tenant_id", "batch_name", "source")


def _reads(filters: JobFilter, driving: str | None, limit: int, examine: int | None) -> int | None:
    """How many jobs a statement of the history reads for `limit` of them, at most `examine`:
    as many as it shows when every job it reads matches (no filter left to check on them)."""
    checked = any(getattr(filters, name) is not None for name in _CHECKED if name != driving)
    if checked:
        return examine
    return limit if examine is None else min(limit, examine)


def job_history_params(
    user_id: UUID,
    filters: JobFilter,
    limit: int,
    after: JobPosition | None,
    examine: int | None = PAGE_READS_AT_MOST,
) -> dict[str, Any]:
    """The parameters of queries.JOB_HISTORY: at most `examine` jobs read (None: no bound)
    for `limit` of them."""
    driving = _driving_filter(filters)
    return {
        "user_id": user_id,
        "status": filters.status,
        "state": filters.state,
        "tenant_id": filters.tenant_id,
        "batch_name": filters.batch_name,
        "source": filters.source,
        **{f"drive_{name}": None for name in _DRIVING},
        **({} if driving is None else {f"drive_{driving}": getattr(filters, driving)}),
        "since": filters.since,
        "until": filters.until,
        "before_created_at": None if after is None else after.created_at,
        "before_job_id": None if after is None else after.job_id,
        "limit": limit,
        "examine": _reads(filters, driving, limit, examine),
    }


def random_ids_params(
    user_id: UUID,
    filters: JobFilter,
    limit: int,
    after: JobPosition | None,
    examine: int | None = PAGE_READS_AT_MOST,
) -> dict[str, Any]:
    """The parameters of queries.JOB_HISTORY_OF_RANDOM_IDS, which checks every filter on the
    jobs it reads, at most `examine` of them (None: no bound), for `limit`."""
    return job_history_params(user_id, filters, limit, after) | {
        "examine": _reads(filters, None, limit, examine)
    }


class _Read(NamedTuple):
    """What one statement of the history found: the jobs that match, the job where its read
    stopped at its bound if it did, and how many jobs it read (exact when the page is not
    full: job_history's rows then end with the last job it read, matching or not)."""

    jobs: list[JobSummary]
    up_to: JobPosition | None
    number_read: int


def _read(cursor: psycopg.Cursor[dict[str, Any]], query: str, params: dict[str, Any]) -> _Read:
    """One of the two history statements, run (its rows end with the job where its read
    stopped at its bound, if it did, matching or not)."""
    rows = cursor.execute(query, params, prepare=False).fetchall()
    jobs = [
        _job_summary(**{name: row[name] for name in _SUMMARY_COLUMNS})
        for row in rows
        if row["matches"]
    ]
    number_read = rows[-1]["number_read"] if rows else 0
    if rows and number_read == params["examine"]:
        return _Read(jobs, JobPosition(rows[-1]["created_at"], rows[-1]["job_id"]), number_read)
    return _Read(jobs, None, number_read)


# A page of the history without `since` would be planned in every partition of jobs (a
# week of hourly partitions added 70 to 135 ms to a page, measured on two cores), though
# its walk newest first reads the newest few. job_page reads it as windows of time instead,
# newest first, each planned for the partitions of its own span: FIRST_WINDOW back from its
# start (now, or the page's `until` or cursor), then twice as long before that, and so on
# for WINDOWS windows (an hour doubled 8 times: the last 255 hours, over 10 days), then all
# that is older. It stops at the first window that fills the page or reaches the page's
# bound of jobs read: a user's newest jobs fill a page from the first window or the second.
FIRST_WINDOW = timedelta(hours=1)
WINDOWS = 8
# The newest moment a page reads, past now: a job decided by a clock that runs ahead, or
# read by one that was stepped back, is not hidden. It keeps the walk below the ids of
# random jobs that sort above every time-ordered one (queries.sql, job_history).
AHEAD_OF_NOW = timedelta(days=1)


def history_windows(filters: JobFilter, after: JobPosition | None) -> Iterator[JobFilter]:
    """`filters` narrowed to each window of time a page reads, newest first: together they
    hold every moment of `filters`' since and until up to AHEAD_OF_NOW past now, each once.

    Only the first window's start and the last one's end are bounds of the page; the bounds
    between windows are only as good as this process's clock, and a window too early or too
    late is read to no harm, only to more planning."""
    now = datetime.now(UTC)
    upper = now + AHEAD_OF_NOW if filters.until is None else min(filters.until, now + AHEAD_OF_NOW)
    # The newest moment the page may show, and never later than now: an `until` days ahead
    # must not start the windows above the ceiling.
    starts = (now, filters.until, after and after.created_at)
    lower = min(at for at in starts if at is not None) - FIRST_WINDOW
    span = FIRST_WINDOW
    for _ in range(WINDOWS):
        if filters.since is not None and lower <= filters.since:
            break
        yield replace(filters, since=lower, until=upper)
        span *= 2
        upper, lower = lower, lower - span
    yield replace(filters, until=upper)


def job_page(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    filters: JobFilter,
    limit: int,
    after: JobPosition | None = None,
    examine: int | None = PAGE_READS_AT_MOST,
) -> JobPage:
    """Up to `limit` of the user's jobs matching `filters`, newest first, below `after`,
    among at most `examine` jobs read (None: no bound, for the operator's CLI).

    The jobs with time-ordered ids first, window of time by window (history_windows), the
    page's bound of jobs read shared by them all; then, when the page has room left and the
    read did not reach its bound, the jobs stored before them, whose ids are random
    (job_history and job_history_of_random_ids in queries.sql), with a bound of its own.
    UnknownUser when nothing was read because there is no such user. Run in a transaction:
    the plans are held to walking an index in order for that transaction (walk_in_order).
    """
    with translated():
        conn.execute(queries.WALK_IN_ORDER)
        cursor = conn.cursor(row_factory=dict_row)
        jobs: list[JobSummary] = []
        up_to = None
        left = examine
        # Below a job of random id, every job of time-ordered id is above the page.
        below_random_id = after is not None and after.job_id.version != 7
        for window in () if below_random_id else history_windows(filters, after):
            # Unprepared (_read): planned for these values each time, so the filters given
            # pick the index and the window its partitions.
            params = job_history_params(user_id, window, limit - len(jobs), after, left)
            found, up_to, number_read = _read(cursor, queries.JOB_HISTORY, params)
            jobs += found
            if len(jobs) == limit or up_to is not None:
                break
            left = None if left is None else left - number_read
        if len(jobs) < limit and up_to is None:
            params = random_ids_params(user_id, filters, limit - len(jobs), after, examine)
            rest, up_to, _ = _read(cursor, queries.JOB_HISTORY_OF_RANDOM_IDS, params)
            jobs += rest
        if not jobs and up_to is None:
            accounts.active_config(conn, user_id)  # raises UnknownUser for no user
    return JobPage(jobs, up_to)


def job_record(conn: psycopg.Connection[Any], user_id: UUID, job_id: UUID) -> JobRecord | None:
    """The user's job `job_id`, or None; UnknownUser when there is no such user."""
    with translated():
        cursor = conn.cursor(row_factory=kwargs_row(_job_record))
        found = cursor.execute(
            queries.JOB_RECORD, {"user_id": user_id, "job_id": job_id}
        ).fetchone()
        if found is None:
            accounts.active_config(conn, user_id)  # raises UnknownUser for no user
    return found


def activity_params(conn: psycopg.Connection[Any], user_id: UUID, max_jobs: int) -> dict[str, Any]:
    """The parameters of queries.JOB_ACTIVITY: its window of minutes as of now, and the ids
    of the window, which it is planned for (unprepared) so that it reads only the partitions
    that hold them."""
    with translated():
        window = conn.cursor(row_factory=dict_row).execute(
            queries.ACTIVITY_WINDOW, {"minutes": ACTIVITY_MINUTES}
        )
        row = window.fetchone()
    assert row is not None  # a row of values, always
    return {"user_id": user_id, "max_jobs": max_jobs, **row}


def job_activity(
    conn: psycopg.Connection[Any], user_id: UUID, max_jobs: int = ACTIVITY_MAX_JOBS
) -> Activity:
    """The user's jobs per minute over the last ACTIVITY_MINUTES minutes, counting at most
    the newest `max_jobs` of them; UnknownUser when there is no such user."""
    with translated():
        rows = conn.execute(
            queries.JOB_ACTIVITY, activity_params(conn, user_id, max_jobs), prepare=False
        ).fetchall()
    if not rows:
        raise UnknownUser("unknown user")
    return Activity(
        minutes=[
            # jsonb orders keys by length first: the answer lists reasons by name.
            MinuteActivity(
                minute, accepted, None if rejected is None else dict(sorted(rejected.items()))
            )
            for minute, accepted, rejected, _ in rows
        ],
        counted_since=rows[0][3],
    )


def user_quotas(
    conn: psycopg.Connection[Any], user_id: UUID, tenant_limit: int = TENANT_QUOTAS_SHOWN
) -> UserQuotas:
    """The user's mode, buckets and `tenant_limit` tenant buckets closest to their limit.

    Must be the first thing its transaction runs: it makes the transaction one read-only
    snapshot, so that all three reads see the same config version. UnknownUser when there is
    no such user.
    """
    with translated():
        conn.execute(queries.READ_SNAPSHOT)
        row = conn.execute(queries.QUOTA_MODE, {"user_id": user_id}).fetchone()
        if row is None:
            raise UnknownUser("unknown user")
        (mode,) = row
        if mode is None:
            # Without an active config there are no buckets, of dependencies or of tenants.
            return UserQuotas(mode=None, buckets=[], tenants=[])
        buckets = conn.cursor(row_factory=class_row(BucketQuota))
        tenants = conn.cursor(row_factory=class_row(TenantQuota))
        return UserQuotas(
            mode=mode,
            buckets=buckets.execute(queries.BUCKET_QUOTAS, {"user_id": user_id}).fetchall(),
            tenants=tenants.execute(
                queries.TENANT_QUOTAS, {"user_id": user_id, "limit": tenant_limit}
            ).fetchall(),
        )


class HistoryStore:
    """The JobHistory, ActivityReader and QuotaReader the dashboard's resources are given:
    each call is one read on a pooled connection (and, when it finds nothing, one more to
    tell an unknown user from one without jobs), or for the quotas three in one read-only
    transaction. `activity_max_jobs` bounds what one count of jobs per minute reads."""

    def __init__(
        self,
        pool: ConnectionPool,
        activity_max_jobs: int = ACTIVITY_MAX_JOBS,
        page_timeout_ms: int | None = None,
        reads_per_second: int | None = None,
    ) -> None:
        self._pool = pool
        self._activity_max_jobs = activity_max_jobs
        # A user's reads one at a time, each holding its turn for at least this long (None:
        # no longer than it takes).
        self._read_turn_s = None if reads_per_second is None else 1 / reads_per_second
        # A read's statements give up after this long, and its wait for the user's read lock
        # after half of it (None: the pool's own timeouts).
        self._page_timeout_ms = page_timeout_ms

    @contextmanager
    def _one_read(self, user_id: UUID) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a transaction that holds the user's read lock
        (one_read_at_a_time) for at least 1 / reads_per_second, under the store's
        timeouts: the read's statements give up after page_timeout_ms, and the wait for the
        lock after half that, refused with ReadsBusy."""
        with self._pool.connection() as conn, conn.transaction():
            if self._page_timeout_ms is not None:
                conn.execute(
                    queries.READ_TIMEOUTS,
                    {
                        "statement_ms": str(self._page_timeout_ms),
                        "lock_ms": str(max(1, self._page_timeout_ms // 2)),
                    },
                )
            try:
                conn.execute(queries.ONE_READ_AT_A_TIME, {"user_id": user_id})
            except psycopg.errors.LockNotAvailable:
                raise ReadsBusy() from None
            turn_began = time.monotonic()
            yield conn
            if self._read_turn_s is not None:
                # The rest of the turn, idle in the transaction: the user's next read waits
                # for the lock meanwhile, and neither spends any CPU.
                time.sleep(max(0.0, self._read_turn_s - (time.monotonic() - turn_began)))

    def jobs(
        self, user_id: UUID, filters: JobFilter, limit: int, after: JobPosition | None
    ) -> JobPage:
        """A page of the user's jobs, newest first; see job_page. One read of the user at a
        time, under the store's timeouts (_one_read)."""
        with translated(), self._one_read(user_id) as conn:
            return job_page(conn, user_id, filters, limit, after)

    def job(self, user_id: UUID, job_id: UUID) -> JobRecord | None:
        """One job of the user, or None; see job_record."""
        with translated(), self._pool.connection() as conn:
            return job_record(conn, user_id, job_id)

    def activity(self, user_id: UUID) -> Activity:
        """The user's jobs per minute over the last hour; see job_activity. One read of the
        user at a time, under the store's timeouts (_one_read)."""
        with translated(), self._one_read(user_id) as conn:
            return job_activity(conn, user_id, self._activity_max_jobs)

    def quotas(self, user_id: UUID) -> UserQuotas:
        """The user's mode, buckets and tenant buckets as of now; see user_quotas."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            return user_quotas(conn, user_id)
