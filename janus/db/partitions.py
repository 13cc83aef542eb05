"""The partitions of jobs (migration 0024): listed, made ahead of need, and forgotten whole
once past the retention (`janus maintain`); and which of those past it are held, for
GET /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from janus.admission import DatabaseUnavailable
from janus.db import queries
from janus.db.errors import translated
from janus.db.maintenance import require_autocommit
from janus.queue_view import ENDED_WINDOW_SECONDS
from janus.settings import JobsPartitioning

EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
DEFAULT_PARTITION = "jobs_default"
# A drop waits at most this long for jobs's lock, behind which every statement on jobs
# waits in turn, and is tried again this many times, a pause between tries, before it is
# left to the next run.
DROP_LOCK_TIMEOUT_MS = 500
DROP_TRIES = 10
DROP_PAUSE_S = 0.5


@dataclass(frozen=True)
class Partition:
    """One partition of jobs: the span of time its ids cover."""

    name: str
    # None: from the lowest id (jobs_before, the table as it was before 0024).
    starts: datetime | None
    # None: the default partition, which takes a job no other partition takes.
    ends: datetime | None

    def past(self, retention: timedelta, now: datetime) -> bool:
        """Whether its span ended longer than `retention` before `now` (never the default)."""
        return self.ends is not None and self.ends <= now - retention


@dataclass(frozen=True)
class Kept:
    """A partition past the retention that was not dropped, and why."""

    partition: Partition
    # Its unfinished jobs by state (at most 10,000 counted of each); empty when the lock on
    # jobs could not be had in time, so it was not looked at.
    unfinished: dict[str, int]

    @property
    def why(self) -> str:
        """Why it was kept, in words."""
        if not self.unfinished:
            return "jobs was too busy to lock; the next run tries again"
        held = ", ".join(f"{count:,} {state}" for state, count in self.unfinished.items())
        return f"it still holds jobs not finished: {held}"


def span_start(moment: datetime, span: timedelta) -> datetime:
    """The start of the span holding `moment`, spans counted from the Unix epoch."""
    return EPOCH + (moment - EPOCH) // span * span


def partitions(conn: psycopg.Connection[Any]) -> list[Partition]:
    """Every partition of jobs, oldest first, the default one last."""
    with translated():
        rows = conn.cursor(row_factory=tuple_row).execute(queries.JOBS_PARTITIONS).fetchall()
    return [Partition(name, starts, ends) for name, starts, ends in rows]


def now(conn: psycopg.Connection[Any]) -> datetime:
    """The database's clock, which decides every job's id."""
    with translated():
        row = conn.cursor(row_factory=tuple_row).execute("SELECT now()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def add_partitions_ahead(
    conn: psycopg.Connection[Any], partitioning: JobsPartitioning
) -> list[Partition]:
    """Add a partition for each span from the last one's end until `partitioning.ahead` from
    now; the ones added. `conn` must be in autocommit mode: each is its own transaction."""
    require_autocommit(conn, "add_partitions_ahead")
    ranged = [p for p in partitions(conn) if p.ends is not None]
    until = now(conn) + partitioning.ahead
    starts = ranged[-1].ends if ranged else None
    assert starts is not None, "jobs has no partition ending at a moment: is it migrated?"
    added = []
    while starts < until:
        ends = span_start(starts, partitioning.span) + partitioning.span
        with translated():
            cursor = conn.cursor(row_factory=tuple_row)
            name = cursor.execute(
                queries.ADD_JOBS_PARTITION, {"starts": starts, "ends": ends}
            ).fetchone()
        assert name is not None
        added.append(Partition(name[0], starts, ends))
        starts = ends
    return added


def mark_unfinished_from(conn: psycopg.Connection[Any]) -> int:
    """Raise each user's jobs_unfinished_from to the lowest id of its unfinished jobs (an hour
    ago at most), so that its claims read only the partitions from there, and its
    jobs_ended_from, from which the queue view reads its jobs ended in ENDED_WINDOW_SECONDS;
    how many users.
    `conn` must be in autocommit mode: each user is a short transaction of its own."""
    require_autocommit(conn, "mark_unfinished_from")
    with translated():
        users = [user_id for (user_id,) in conn.execute(queries.ALL_USER_IDS).fetchall()]
        for user_id in users:
            # The lock first, in a statement of its own: the mark's read of the jobs then
            # sees a retry that held it (queries.sql, mark_unfinished_from).
            with conn.transaction():
                conn.execute(queries.LOCK_USER_ROW, {"user_id": user_id})
                conn.execute(
                    queries.MARK_UNFINISHED_FROM,
                    {"user_id": user_id, "ended_window_s": ENDED_WINDOW_SECONDS},
                )
    return len(users)


def drop_partitions_past(
    conn: psycopg.Connection[Any],
    partitioning: JobsPartitioning,
    sleep: Callable[[float], None] = time.sleep,
    at: datetime | None = None,
) -> tuple[list[Partition], list[Kept]]:
    """Detach and drop every partition whose span ended more than the retention before `at`
    (the database's now) and holds no job queued, waiting or running; (those dropped, those
    kept and why).

    `conn` must be in autocommit mode: each drop is a transaction of its own, which takes
    jobs's lock for a few milliseconds.
    """
    require_autocommit(conn, "drop_partitions_past")
    moment = at or now(conn)
    dropped, kept = [], []
    for partition in partitions(conn):
        if not partition.past(partitioning.retention, moment):
            continue
        unfinished = _drop(conn, partition.name, sleep)
        if unfinished is None:
            dropped.append(partition)
        else:
            kept.append(Kept(partition, unfinished))
    return dropped, kept


def held_past_retention(
    conn: psycopg.Connection[Any], partitioning: JobsPartitioning, at: datetime | None = None
) -> list[tuple[Partition, list[str]]]:
    """The partitions past the retention at `at` (the database's now) still there, each with
    the states it holds unfinished jobs in (empty: nothing holds it; the next `janus
    maintain` drops it)."""
    moment = at or now(conn)
    held = []
    with translated():
        for partition in partitions(conn):
            if partition.past(partitioning.retention, moment):
                query = sql.SQL(queries.UNFINISHED_IN_PARTITION).format(
                    partition=sql.Identifier(partition.name)
                )
                states = [state for (state,) in conn.cursor(row_factory=tuple_row).execute(query)]
                held.append((partition, states))
    return held


def _drop(
    conn: psycopg.Connection[Any], name: str, sleep: Callable[[float], None]
) -> dict[str, int] | None:
    """Drop `name` unless it holds unfinished jobs: None when dropped, else those jobs by
    state ({} when jobs's lock could not be had after DROP_TRIES)."""
    for attempt in range(DROP_TRIES):
        try:
            with translated(), conn.transaction():
                conn.execute(
                    queries.LOCAL_LOCK_TIMEOUT, {"milliseconds": str(DROP_LOCK_TIMEOUT_MS)}
                )
                cursor = conn.cursor(row_factory=tuple_row)
                held = cursor.execute(queries.DROP_JOBS_PARTITION, {"partition": name}).fetchall()
        except DatabaseUnavailable as busy:
            if busy.cause != "lock_timeout":
                raise
            if attempt < DROP_TRIES - 1:
                sleep(DROP_PAUSE_S)
            continue
        return {state: count for state, count in held} or None
    return {}
