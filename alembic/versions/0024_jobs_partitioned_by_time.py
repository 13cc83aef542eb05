"""jobs partitioned by time, so that old jobs are forgotten by dropping partitions (issue 27).

Revision ID: 0024
Revises: 0023

jobs becomes a table partitioned by range of job_id. A job's id starts with the moment it
was decided (migration 0013), so each partition holds a span of time (JANUS_JOBS_PARTITION_
MINUTES, an hour by default), and `janus maintain` forgets a span past the retention by
detaching and dropping its partition (drop_jobs_partition()) instead of a DELETE of each job.
The primary key (user_id, job_id) already holds the partition key; every index, constraint and
the foreign key stay as they were, now on the partitioned table.

The partitions:
- jobs_before: the table as it was, attached as the range below `bound`, where the first
  partition of a span starts. It holds every job
  stored before this migration, and those decided until `bound`. `janus maintain` drops it
  like any other partition once its span is past the retention and no job in it is unfinished.
- jobs_default: the default partition. It takes a job no partition takes, so a missing
  partition never refuses a job, and the jobs of random id (version 4, stored before 0013)
  whose id sorts at or above `bound`: their ids are scattered over the whole range, so no
  range of time holds them. add_jobs_partition() moves into a new partition the rows of its
  range found here.
- jobs_YYYYMMDD_HHMM: one per span from `bound`, made ahead of need by add_jobs_partition(),
  here for the next hour (and three spans) and by `janus maintain` after.

A jobs of fewer than 100,000 jobs (a new database) is changed in one transaction under its
lock, in a few milliseconds, with `bound` the next whole second: its first partition of a span
starts then. A larger one is changed online, in three steps, while the previous release
serves, with `bound` the first span boundary ten minutes from now:
1. (autocommit) jobs_default is made, a child of jobs by inheritance, so that every statement
   on jobs still reads and updates it; the jobs of random id at or above `bound` move into it,
   each in one statement that deletes it from jobs and inserts it there. A CHECK (job_id <
   bound) is added NOT VALID and validated: a scan of jobs that blocks no reader or writer
   (SHARE UPDATE EXCLUSIVE).
2. (one short transaction) users and jobs are locked, in the order requests take them (the
   attach locks users, for the foreign key), jobs renamed jobs_before with its indexes and
   statistics, and a partitioned jobs with the same columns, constraints, indexes and
   statistics takes its place; jobs_before is attached below `bound` (the valid CHECK spares
   the scan) and jobs_default as the default partition. Its locks are taken with a
   lock_timeout of 500 ms, the whole transaction tried again when one is not had in time, so
   that no request of the previous release waits long behind it.
   Its statements and functions name jobs and are planned again on the new table.
3. (autocommit) the partitions up to an hour (or three spans) from now are added.

users.jobs_unfinished_from, new: an id below which none of the user's jobs is queued,
waiting or running. hand_out_jobs() and claim_queued_jobs() read only the partitions from it
on, so a claim probes the newest partitions, not every one the retention keeps; `janus
maintain` raises it, retry_jobs() lowers it to a job it makes unfinished again. Their
signatures are unchanged: the previous release calls the new bodies.

A run cut short after step 2 is finished by the next one; one cut short before it starts over.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlfiles import execute_sql_file

from alembic import op
from janus.settings import JobsPartitioning

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_log = logging.getLogger("alembic.runtime.migration")

FUNCTIONS = {
    "add_jobs_partition": "timestamptz, timestamptz",
    "drop_jobs_partition": "text",
    "unfinished_until": "uuid, timestamptz",
}
# Claims read only the partitions from the user's jobs_unfinished_from on; a retry lowers it.
# Each with the migration whose copy the downgrade restores.
CHANGED = {"hand_out_jobs": "0022", "claim_queued_jobs": "0021", "retry_jobs": "0022"}
MARK_UNFINISHED_FROM = """
WITH locked AS (SELECT u.user_id FROM users u WHERE u.user_id = :user_id FOR NO KEY UPDATE)
UPDATE users u
   SET jobs_unfinished_from = CASE
       WHEN EXISTS (SELECT FROM jobs j
                     WHERE j.user_id = :user_id AND job_id_version(j.job_id) <> 7
                       AND j.state IN ('queued', 'waiting', 'running'))
       THEN '00000000-0000-0000-0000-000000000000'::uuid
       ELSE least(
           (SELECT j.job_id FROM jobs j
             WHERE j.user_id = :user_id AND j.state = 'queued' ORDER BY j.job_id LIMIT 1),
           (SELECT j.job_id FROM jobs j
             WHERE j.user_id = :user_id AND j.state = 'waiting' ORDER BY j.job_id LIMIT 1),
           (SELECT j.job_id FROM jobs j
             WHERE j.user_id = :user_id AND j.state = 'running' ORDER BY j.job_id LIMIT 1),
           first_job_id_at(now() - interval '1 hour')) END
  FROM locked
 WHERE u.user_id = locked.user_id
"""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SWITCH_LOCK_TIMEOUT = "500ms"
# Fewer jobs than this: the whole change is made under the lock, its scans a few ms.
ONLINE_FROM_JOBS = 100_000
# The first partition of a larger jobs starts at least this long from now: step 1's
# validation (about 0.2 s per million jobs) and step 2's tries must end before it.
STAGE_MARGIN = timedelta(minutes=10)
SWITCH_ATTEMPTS = 120


def upgrade() -> None:
    # A constant default: no rewrite of users. The lowest id: claims read every partition
    # until `janus maintain` first raises it.
    op.execute(
        "ALTER TABLE users ADD COLUMN jobs_unfinished_from uuid NOT NULL"
        " DEFAULT '00000000-0000-0000-0000-000000000000'"
    )
    for function in [*FUNCTIONS, *CHANGED]:
        execute_sql_file(f"0024_{function}.sql")
    conn = op.get_bind()
    partitioning = JobsPartitioning.from_env()
    with op.get_context().autocommit_block():
        if not _partitioned(conn):
            if _holds_fewer_jobs_than(conn, ONLINE_FROM_JOBS):
                _switch(conn, None)
            else:
                now = conn.execute(text("SELECT now()")).scalar_one()
                first = _span_start(now + STAGE_MARGIN, partitioning.span) + partitioning.span
                bound = conn.execute(
                    text("SELECT first_job_id_at(:at)"), {"at": first}
                ).scalar_one()
                started = time.monotonic()
                _stage(conn, bound)
                _log.info("0024: jobs staged in %.1f s, online", time.monotonic() - started)
                _switch(conn, bound)
        _add_partitions_ahead(conn, partitioning)
        # What `janus maintain` does each run (queries.sql, mark_unfinished_from), once for
        # each user now, so that claims read the newest partitions from the first deploy on.
        for user_id in conn.execute(text("SELECT user_id FROM users")).scalars().all():
            conn.execute(text(MARK_UNFINISHED_FROM), {"user_id": user_id})


def downgrade() -> None:
    """jobs as one table again: every row copied back, under the table's lock (offline)."""
    conn = op.get_bind()
    if _partitioned(conn):
        definitions = _definitions(conn, "jobs")
        op.execute("ALTER TABLE jobs RENAME TO jobs_partitioned")
        _rename_indexes_and_statistics(conn, "jobs_partitioned", "jobs_partitioned_")
        op.execute(
            "CREATE TABLE jobs (LIKE jobs_partitioned INCLUDING DEFAULTS)"
            " WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02,"
            "       autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0)"
        )
        op.execute("INSERT INTO jobs SELECT * FROM jobs_partitioned")
        _apply(definitions)
        op.execute("DROP TABLE jobs_partitioned")
    for function, arguments in FUNCTIONS.items():
        op.execute(f"DROP FUNCTION {function}({arguments})")
    for function, revision in CHANGED.items():
        execute_sql_file(f"{revision}_{function}.sql")
    op.execute("ALTER TABLE users DROP COLUMN jobs_unfinished_from")


def _partitioned(conn: Any) -> bool:
    return conn.execute(
        text("SELECT relkind = 'p' FROM pg_class WHERE oid = 'jobs'::regclass")
    ).scalar_one()


def _span_start(moment: datetime, span: timedelta) -> datetime:
    """The start of the span holding `moment`, spans counted from the Unix epoch."""
    return EPOCH + (moment - EPOCH) // span * span


def _stage(conn: Any, bound: Any) -> None:
    """Step 1: jobs_default beside jobs, the jobs of random id at or above `bound` in it, and
    jobs's CHECK (job_id < bound) validated."""
    if not conn.execute(text("SELECT to_regclass('jobs_default') IS NOT NULL")).scalar_one():
        conn.execute(
            text(
                "CREATE TABLE jobs_default (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                " WITH (autovacuum_vacuum_scale_factor = 0.01,"
                "       autovacuum_analyze_scale_factor = 0.02,"
                "       autovacuum_vacuum_insert_scale_factor = 0.05,"
                "       autovacuum_vacuum_cost_delay = 0)"
            )
        )
        # jobs's indexes, named as a partition's are (jobs_default_queued); the attach in
        # step 2 takes them as the partitioned jobs's.
        for statement in _definitions(conn, "jobs", rename_to="jobs_default"):
            conn.execute(text(statement))
    inherits = conn.execute(
        text("SELECT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = 'jobs_default'::regclass)")
    ).scalar_one()
    if not inherits:
        conn.execute(text("ALTER TABLE jobs_default INHERIT jobs"))
    conn.execute(
        text(
            "WITH moved AS (DELETE FROM ONLY jobs WHERE job_id_version(job_id) <> 7"
            " AND job_id >= :bound RETURNING *) INSERT INTO jobs_default SELECT * FROM moved"
        ),
        {"bound": bound},
    )
    conn.execute(text("ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_before_bound"))
    conn.execute(
        text(
            f"ALTER TABLE jobs ADD CONSTRAINT jobs_before_bound CHECK (job_id < '{bound}')"
            " NO INHERIT NOT VALID"
        )
    )
    conn.execute(text("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_before_bound"))


def _holds_fewer_jobs_than(conn: Any, count: int) -> bool:
    return conn.execute(
        text("SELECT count(*) < :count FROM (SELECT FROM jobs LIMIT :count) AS j"),
        {"count": count},
    ).scalar_one()


def _switch(conn: Any, bound: Any) -> None:
    """Step 2, in one transaction, tried again whole while a lock of it is not had in time.
    With no `bound` (a small jobs), step 1 too, under the lock, below the next whole second.

    users and jobs are locked first, in the order requests take them: attaching a partition
    that has the foreign key to users locks users too, and taking that lock while holding
    jobs's would wait for requests that hold users and wait for jobs."""
    staged_here = bound is None
    for attempt in range(SWITCH_ATTEMPTS):
        conn.execute(text("BEGIN"))
        locked = time.monotonic()
        try:
            conn.execute(text(f"SET LOCAL lock_timeout = '{SWITCH_LOCK_TIMEOUT}'"))
            conn.execute(text("LOCK TABLE users, jobs IN ACCESS EXCLUSIVE MODE"))
            locked = time.monotonic()
            if staged_here:
                bound = conn.execute(
                    text(
                        "SELECT first_job_id_at(date_trunc('second', clock_timestamp())"
                        " + interval '1 second')"
                    )
                ).scalar_one()
                _stage(conn, bound)
            _replace_jobs(conn, bound)
        except OperationalError as error:
            conn.execute(text("ROLLBACK"))
            if getattr(error.orig, "sqlstate", None) != "55P03" or attempt == SWITCH_ATTEMPTS - 1:
                raise
            time.sleep(0.5)
            continue
        except BaseException:
            conn.execute(text("ROLLBACK"))
            raise
        conn.execute(text("COMMIT"))
        _log.info(
            "0024: jobs partitioned; its lock held %.0f ms, had at try %d",
            (time.monotonic() - locked) * 1000,
            attempt + 1,
        )
        return


def _replace_jobs(conn: Any, bound: Any) -> None:
    """jobs renamed jobs_before, and a partitioned jobs like it in its place, jobs_before and
    jobs_default its partitions."""
    conn.execute(text("ALTER TABLE jobs_default NO INHERIT jobs"))
    definitions = _definitions(conn, "jobs")
    conn.execute(text("ALTER TABLE jobs RENAME TO jobs_before"))
    _rename_indexes_and_statistics(conn, "jobs_before", "jobs_before_")
    conn.execute(
        text("CREATE TABLE jobs (LIKE jobs_before INCLUDING DEFAULTS) PARTITION BY RANGE (job_id)")
    )
    for statement in definitions:
        conn.execute(text(statement))
    conn.execute(
        text(
            f"ALTER TABLE jobs ATTACH PARTITION jobs_before FOR VALUES FROM (MINVALUE) TO ('{bound}')"
        )
    )
    conn.execute(text("ALTER TABLE jobs ATTACH PARTITION jobs_default DEFAULT"))


def _definitions(conn: Any, table: str, rename_to: str | None = None) -> list[str]:
    """The statements that give a new `table` the constraints (but NOT NULL), indexes and
    statistics `table` has now, under the same names; jobs_before_bound is jobs_before's own.
    With `rename_to`, the indexes and statistics `table` has, for the table `rename_to`, named
    after it (jobs_queued: jobs_default_queued), and no constraint."""
    if rename_to is not None:
        return list(
            conn.execute(
                text(
                    "SELECT format('CREATE INDEX %I ON %I', CAST(:to AS text)"
                    "              || substr(c.relname, 5), CAST(:to AS text))"
                    "       || substring(pg_get_indexdef(i.indexrelid) FROM ' USING .*$')"
                    "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE i.indrelid = CAST(:table AS regclass) AND NOT i.indisprimary"
                    " UNION ALL "
                    "SELECT format('CREATE STATISTICS %I ON job_id_version(job_id) FROM %I',"
                    "              CAST(:to AS text) || '_job_id_version', CAST(:to AS text))"
                ),
                {"table": table, "to": rename_to},
            ).scalars()
        )
    constraints = conn.execute(
        text(
            "SELECT format('ALTER TABLE %I ADD CONSTRAINT %I %s', CAST(:table AS text), conname,"
            "              pg_get_constraintdef(oid))"
            "  FROM pg_constraint"
            " WHERE conrelid = CAST(:table AS regclass) AND contype IN ('p', 'c', 'f')"
            "   AND conname <> 'jobs_before_bound'"
            " ORDER BY contype = 'p' DESC, conname"
        ),
        {"table": table},
    ).scalars()
    indexes = conn.execute(
        text(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = CAST(:table AS regclass) AND NOT indisprimary"
            " ORDER BY indexrelid"
        ),
        {"table": table},
    ).scalars()
    statistics = conn.execute(
        text(
            "SELECT pg_get_statisticsobjdef(oid) FROM pg_statistic_ext"
            " WHERE stxrelid = CAST(:table AS regclass) ORDER BY oid"
        ),
        {"table": table},
    ).scalars()
    return [*constraints, *indexes, *statistics]


def _rename_indexes_and_statistics(conn: Any, table: str, prefix: str) -> None:
    """Rename `table`'s jobs_* indexes and statistics to `prefix`*, freeing their names."""
    renames = conn.execute(
        text(
            "SELECT format('ALTER INDEX %I RENAME TO %I', c.relname,"
            "              :prefix || substr(c.relname, 6))"
            "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = CAST(:table AS regclass) AND c.relname LIKE 'jobs\\_%'"
            " UNION ALL "
            "SELECT format('ALTER STATISTICS %I RENAME TO %I', stxname,"
            "              :prefix || substr(stxname, 6))"
            "  FROM pg_statistic_ext"
            " WHERE stxrelid = CAST(:table AS regclass) AND stxname LIKE 'jobs\\_%'"
        ),
        {"table": table, "prefix": prefix},
    ).scalars()
    for statement in list(renames):
        conn.execute(text(statement))


def _apply(definitions: list[str]) -> None:
    for statement in definitions:
        op.execute(statement)


def _add_partitions_ahead(conn: Any, partitioning: JobsPartitioning) -> None:
    """Step 3: a partition for each span from the last one's end to an hour (or three spans)
    from now."""
    row = conn.execute(
        text(
            "SELECT job_decided_at((regexp_match(pg_get_expr(c.relpartbound, c.oid),"
            "                      'TO \\(''([0-9a-f-]+)''\\)'))[1]::uuid) AS upper"
            "  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'jobs'::regclass"
            " ORDER BY upper DESC NULLS LAST LIMIT 1"
        )
    ).scalar_one()
    now = conn.execute(text("SELECT now()")).scalar_one()
    start = row
    while start < now + partitioning.ahead:
        end = _span_start(start, partitioning.span) + partitioning.span
        conn.execute(text("SELECT add_jobs_partition(:start, :end)"), {"start": start, "end": end})
        start = end
