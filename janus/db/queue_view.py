"""janus.queue_view's QueueReader over the pool, and the same read on a connection: the named
queries unfinished_bounds, queue_states and queue_dependencies of queries.sql, in one read-only
snapshot."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg_pool import ConnectionPool

from janus.admission import UnknownUser
from janus.db import queries
from janus.db.errors import translated
from janus.queue_view import (
    ENDED_WINDOW_SECONDS,
    QUEUE_MAX_JOBS,
    DependencyQueue,
    QueueView,
    StateCounts,
)

# The columns of queue_states that are not counts by state.
_NOT_COUNTS = ("ended_since", "oldest_waiting_seconds", "oldest_queued_seconds")


def user_queue(
    conn: psycopg.Connection[Any], user_id: UUID, max_jobs: int = QUEUE_MAX_JOBS
) -> QueueView:
    """The user's jobs by state and by dependency, reading at most `max_jobs` jobs of each
    state (and of the ended ones) for what is not counted from an index alone.

    Must be the first thing its transaction runs: it makes the transaction one read-only
    snapshot, so that the counts by dependency are of the very jobs counted by state.
    UnknownUser when there is no such user.
    """
    with translated():
        conn.execute(queries.READ_SNAPSHOT)
        conn.execute(queries.WITHOUT_JIT)
        bounds = conn.cursor(row_factory=dict_row)
        unfinished = bounds.execute(queries.UNFINISHED_BOUNDS, {"user_id": user_id}).fetchone()
        if unfinished is None:
            raise UnknownUser("unknown user")
        params = {
            "user_id": user_id,
            "max_jobs": max_jobs,
            "ended_window_s": ENDED_WINDOW_SECONDS,
            **unfinished,
        }
        # Unprepared, as the history's reads: planned for this user's numbers of jobs, and
        # for its bounds, so that only the partitions between them are planned and read.
        states = conn.cursor(row_factory=dict_row)
        row = states.execute(queries.QUEUE_STATES, params, prepare=False).fetchone()
        assert row is not None  # the user unfinished_bounds found, in the same snapshot
        dependencies = conn.cursor(row_factory=class_row(DependencyQueue))
        by_dependency = dependencies.execute(
            queries.QUEUE_DEPENDENCIES, params, prepare=False
        ).fetchall()
    counts = StateCounts(**{name: row[name] for name in row if name not in _NOT_COUNTS})
    return QueueView(
        states=counts,
        ended_since=row["ended_since"],
        oldest_waiting_seconds=row["oldest_waiting_seconds"],
        oldest_queued_seconds=row["oldest_queued_seconds"],
        dependencies=by_dependency,
        truncated=max(counts.waiting, counts.queued, counts.running) > max_jobs,
    )


class QueueViewStore:
    """The QueueReader GET /dashboard/queue is given: each read is one read-only transaction
    on a pooled connection. `max_jobs` bounds what one read reads of each state."""

    def __init__(self, pool: ConnectionPool, max_jobs: int = QUEUE_MAX_JOBS) -> None:
        self._pool = pool
        self._max_jobs = max_jobs

    def queue(self, user_id: UUID) -> QueueView:
        """The user's queue as of now; see user_queue."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            return user_queue(conn, user_id, self._max_jobs)
