"""A claim stays flat as the table grows: it reads the partial index of queued jobs, so a
million finished jobs beside the queue cost it nothing, nor do 100,000 jobs waiting for a
later moment (a worker's retry_after_seconds), read through jobs_waiting only once due. A
claim that pays for jobs waiting in line (pacing) walks that line through jobs_in_line, and
stops when it has its jobs or every bucket is held: 100,000 jobs in the lines of 1,000 users
cost it no more than its own.

Marked `scale` (it builds 1,200,000 rows): `make test` runs it; `-m "not scale"` leaves it out.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest

from janus.db.partitions import mark_unfinished_from
from tests.support.factories import create_user
from tests.support.history import job_id_at

pytestmark = pytest.mark.scale

FINISHED = 1_000_000
QUEUED = 100_000
WAITING = 100_000
# pgqueuer measured 85 buffers per claim once its index was right; "a few hundred at most".
# A claim of 10 jobs touched 280 to 310 here (PG 18 and 15), about 28 per job leased, while
# jobs had the history indexes of 0008: each job is updated and entered in every index of
# jobs again (its new state makes it no HOT update), jobs_in_state_newest_first's entry alone
# about 6. Migration 0016 left one index entry fewer per update. Without jobs_queued a claim
# touches about 24,000.
# Since jobs is partitioned (migration 0024), each job claimed is found and updated through
# the partition that holds it: 407 for a claim of 10 on PG 15, with the partitions of now read
# (those before the user's oldest unfinished job, those made ahead and the default one not).
MAX_BUFFERS = 450

# Ids time-ordered, of created_at, as admission makes them. A waiting job's run_at is a day
# away at least: one that came due during a slow run would be queued by the claim measured.
_INSERT = (
    """
INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority, dependencies,
                  payload, status, state, attempts, created_at, finished_at, run_at)
SELECT """
    + job_id_at("now() - make_interval(secs => n)")
    + """, %(user_id)s, 'system', 'scale', 'tenant-' || (n %% 50),
       1 + n %% 10, '{"openai": 1}', '{"n": 1}', 'Accepted', %(state)s,
       CASE WHEN %(state)s = 'queued' THEN 0 ELSE 1 END,
       now() - make_interval(secs => n),
       CASE WHEN %(state)s IN ('completed', 'failed') THEN now() - make_interval(secs => n) END,
       CASE WHEN %(state)s = 'waiting' THEN now() + interval '1 day' + make_interval(secs => n)
       END
  FROM generate_series(%(first)s::integer, %(first)s::integer + %(count)s - 1) AS n
"""
)


USERS_IN_LINE = 1000
IN_LINE_EACH = 100
# A claim that pays: it locks the user's buckets, walks its line (each job it hands out
# locked on its own, then updated) and writes the buckets back. Measured on PG 18: 524 for a
# claim of 10 paid jobs, 159 for one that finds its only bucket empty, 414 for a claim of 10
# from a line of 100 beside 100,000 queued jobs.
MAX_PAYING_BUFFERS = 800

# IN_LINE_EACH jobs of cost 1 in the openai line of each user, as admission leaves them
# (in_line_at, expires_at), and the bucket's line counts that go with them.
_IN_LINE = (
    """
WITH users AS (
    INSERT INTO users (user_id, name)
    SELECT gen_random_uuid(), 'line-' || u FROM generate_series(1, %(users)s) AS u
    RETURNING user_id
), buckets AS (
    INSERT INTO token_buckets (user_id, dependency, capacity, refill_per_second, tokens,
                               refilled_at, effective_refill_per_second, line_jobs,
                               line_tokens)
    SELECT user_id, 'openai', 1000, 1, 1000, now(), 1,
           array_fill(%(each)s / 10, ARRAY[10]), array_fill(%(each)s / 10, ARRAY[10])
      FROM users
)
INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority, dependencies,
                  payload, status, state, created_at, in_line_at, expires_at)
SELECT """
    + job_id_at("now() - make_interval(secs => n)")
    + """, u.user_id, 'system', 'scale', 'tenant-a', 1 + n %% 10, '{"openai": 1}',
       '{"n": 1}', 'Accepted', 'waiting', now() - make_interval(secs => n),
       now() - make_interval(secs => n), now() + interval '1 hour'
  FROM users u CROSS JOIN generate_series(1, %(each)s) AS n
"""
)


def claim_buffers(db: psycopg.Connection, user_id: UUID, limit: int) -> tuple[int, int]:
    """(shared buffers a claim of `limit` touched, jobs it claimed), from EXPLAIN ANALYZE.

    The function's own statements run inside the plan's Function Scan node, so their buffer
    use is counted in it.
    """
    row = db.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)"
        " SELECT * FROM hand_out_jobs(%s, %s, 60, NULL, NULL, NULL) WHERE job_id IS NOT NULL",
        [user_id, limit],
    ).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    touched = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    return touched, plan["Actual Rows"]


def test_a_claim_touches_a_few_hundred_buffers_beside_a_million_finished_jobs(
    db: psycopg.Connection,
) -> None:
    big = create_user(db)
    small = create_user(db, "neighbour")
    db.execute(_INSERT, {"user_id": big, "state": "completed", "count": FINISHED, "first": 1})
    db.execute(_INSERT, {"user_id": big, "state": "queued", "count": QUEUED, "first": 1})
    db.execute(_INSERT, {"user_id": big, "state": "waiting", "count": WAITING, "first": 1})
    # The neighbour's jobs were decided at the moments of the big user's oldest queued ones,
    # a day back, so both users' claims take and update jobs of one partition (jobs_before,
    # below this database's first span): a job updated in a partition of a million rows
    # enters deeper indexes than one in a partition of a few minutes' jobs, whatever the
    # claim reads.
    db.execute(_INSERT, {"user_id": small, "state": "queued", "count": 1000, "first": QUEUED - 999})
    db.execute(_IN_LINE, {"users": USERS_IN_LINE, "each": IN_LINE_EACH})
    # What autovacuum does for a table this size (the migration's settings trigger it soon).
    db.execute("VACUUM ANALYZE jobs")

    # As `janus maintain` does every few minutes: each user's claims read jobs from its
    # oldest unfinished job to now, not the partitions made ahead, nor the default one.
    mark_unfinished_from(db)
    # The first call in a session also plans the function's statements; measure the next.
    claim_buffers(db, big, 10)
    claim_buffers(db, small, 10)
    for limit in (1, 10, 100):
        touched, claimed = claim_buffers(db, big, limit)
        assert claimed == limit
        # Flat: no more than a claim of the same size by a user with 1,000 jobs in all. What
        # a claim costs is the jobs it leases (each row updated, its index entries added),
        # never the rows it passes over.
        beside_small, _ = claim_buffers(db, small, limit)
        assert touched <= 1.25 * beside_small + 10, (limit, touched, beside_small)
        if limit <= 10:  # the workers' claim in docs/workers.md and the bench
            assert touched <= MAX_BUFFERS, (limit, touched)

    # Pacing: a claim of a user with jobs in line pays for them as it hands them out.
    line_users = [
        user_id
        for (user_id,) in db.execute(
            "SELECT user_id FROM users WHERE name LIKE 'line-%%' ORDER BY name LIMIT 3"
        )
    ]
    for user_id in line_users:
        db.execute(
            "INSERT INTO configs (user_id, version, is_active, activated_at)"
            " VALUES (%s, 1, true, now())",
            [user_id],
        )
    paying, held, warm = line_users
    claim_buffers(db, warm, 10)
    touched, claimed = claim_buffers(db, paying, 10)
    assert claimed == 10 and touched <= MAX_PAYING_BUFFERS, touched
    # Every bucket held (no token left): the walk stops at the first job it cannot pay.
    db.execute(
        "UPDATE token_buckets SET tokens = 0, refilled_at = now() WHERE user_id = %s", [held]
    )
    db.execute(
        "UPDATE token_buckets SET refill_per_second = 0, effective_refill_per_second = 0"
        " WHERE user_id = %s",
        [held],
    )
    touched, claimed = claim_buffers(db, held, 10)
    assert claimed == 0 and touched <= MAX_PAYING_BUFFERS, touched
    # A line beside 100,000 queued jobs: the walk merges both in order, reading only what it
    # reaches of each.
    db.execute(
        "UPDATE jobs SET state = 'waiting', run_at = NULL, in_line_at = created_at,"
        " expires_at = now() + interval '1 hour'"
        " WHERE user_id = %s AND state = 'waiting' AND job_id IN"
        " (SELECT job_id FROM jobs WHERE user_id = %s AND state = 'waiting' LIMIT 100)",
        [big, big],
    )
    claim_buffers(db, big, 10)
    touched, claimed = claim_buffers(db, big, 10)
    assert claimed == 10 and touched <= MAX_PAYING_BUFFERS, touched
