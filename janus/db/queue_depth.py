"""The queue of every user together, read for GET /metrics's queue gauges at each scrape.

The one statement the service runs that spans users: an operator's question, asked at every
scrape, never a user's request. It reads the partial indexes of the three states only
(jobs_queued, jobs_waiting, jobs_leased: index-only scans, no finished job is read), so its
cost grows with the jobs still in the queue, never with the history.
"""

from __future__ import annotations

from typing import LiteralString

from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from janus.db.errors import translated
from janus.queue import QueueDepth

# A scrape that cannot read the queue soon renders without the queue gauges rather than
# hold one of the worker's few connections, or keep Prometheus past its scrape timeout
# (10 s by default): 1 s for a connection, 1 s for the statement.
CONNECTION_TIMEOUT_S = 1.0
STATEMENT_TIMEOUT_MS = 1000

# Both statements are kept beside their one caller, not in janus/db/sql/queries.sql, while
# issue 24's change of the queue's SQL is under way there; they move to that file next.
_SCRAPE_STATEMENT_TIMEOUT: LiteralString = (
    "SELECT set_config('statement_timeout', %(milliseconds)s, true)"
)
# With 100k queued, 100k waiting and 1M finished jobs of 1,000 users: 25 to 50 ms on a busy
# 2-core machine, the counts' index-only scans most of it: an exact count reads every entry,
# so the cost grows with the queue (a cheaper one needs counts kept as jobs change state).
# count(*) and min(created_at) of the queued jobs share one index-only scan of jobs_queued,
# which holds created_at: cheaper than a skip-scan for each user's min() (10 probes a user,
# one per priority, took longer). The waiting jobs whose run_at has passed are found in
# jobs_waiting by run_at, and only they are read from the table, for their created_at.
_QUEUE_DEPTH: LiteralString = """
SELECT w.waiting, q.queued, r.running,
       coalesce(seconds_elapsed(least(q.oldest, d.oldest), now()), 0)::float8
  FROM (SELECT count(*) AS waiting FROM jobs WHERE state = 'waiting') w,
       (SELECT count(*) AS queued, min(created_at) AS oldest
          FROM jobs WHERE state = 'queued') q,
       (SELECT count(*) AS running FROM jobs WHERE state = 'running') r,
       (SELECT min(created_at) AS oldest
          FROM jobs WHERE state = 'waiting' AND run_at <= now()) d"""


def read_queue_depth(pool: ConnectionPool) -> QueueDepth:
    """The queue across every user now; DatabaseUnavailable when Postgres does not answer
    within the bounds above."""
    with translated(), pool.connection(CONNECTION_TIMEOUT_S) as conn, conn.transaction():
        conn.execute(_SCRAPE_STATEMENT_TIMEOUT, {"milliseconds": str(STATEMENT_TIMEOUT_MS)})
        row = conn.cursor(row_factory=tuple_row).execute(_QUEUE_DEPTH).fetchone()
    assert row is not None  # aggregates without GROUP BY: always one row
    waiting, queued, running, oldest_claimable_seconds = row
    return QueueDepth(waiting, queued, running, oldest_claimable_seconds)
