"""The queue of every user together, read for GET /metrics's queue gauges at each scrape:
the one statement the service runs that spans users (queue_depth in janus/db/sql/queries.sql
says why, and what it costs)."""

from __future__ import annotations

from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from janus.db import queries
from janus.db.errors import translated
from janus.db.partitions import held_past_retention, partitions
from janus.queue import QueueDepth
from janus.settings import JobsPartitioning

# A scrape that cannot read the queue soon renders without the queue gauges rather than
# hold one of the worker's few connections, or keep Prometheus past its scrape timeout
# (10 s by default): 1 s for a connection, 1 s for the statement.
CONNECTION_TIMEOUT_S = 1.0
STATEMENT_TIMEOUT_MS = 1000


def read_queue_depth(pool: ConnectionPool, partitioning: JobsPartitioning) -> QueueDepth:
    """The queue across every user now, and the partitions of jobs past `partitioning`'s
    retention still there; DatabaseUnavailable when Postgres does not answer within the
    bounds above."""
    with translated(), pool.connection(CONNECTION_TIMEOUT_S) as conn, conn.transaction():
        conn.execute(queries.LOCAL_STATEMENT_TIMEOUT, {"milliseconds": str(STATEMENT_TIMEOUT_MS)})
        bounds = conn.cursor(row_factory=dict_row).execute(queries.UNFINISHED_BOUNDS_OF_ALL)
        unfinished = bounds.fetchone()
        assert unfinished is not None  # one row, of NULLs when there is no user
        # Unprepared: planned for these bounds, so only the partitions between them.
        row = (
            conn.cursor(row_factory=tuple_row)
            .execute(queries.QUEUE_DEPTH, unfinished, prepare=False)
            .fetchone()
        )
        all_partitions = partitions(conn)
        held = held_past_retention(conn, partitioning)
    assert row is not None  # aggregates without GROUP BY: always one row
    waiting, queued, running, oldest_claimable_seconds = row
    held_partitions = tuple(
        (partition.name, state) for partition, states in held for state in states or ["none"]
    )
    return QueueDepth(
        waiting, queued, running, oldest_claimable_seconds, len(all_partitions), held_partitions
    )
