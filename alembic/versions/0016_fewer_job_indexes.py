"""Fewer indexes on jobs: the history newest first from the primary key (user_id, job_id).

Revision ID: 0016
Revises: 0015

Issue 23, item 2. Since 0013 a job's id is time-ordered (version 7): it starts with the
moment admission decided the job, to the microsecond, so the primary key (user_id, job_id)
read backwards is a user's history newest first, and a time range is a range of it. The
indexes 0008 built to order jobs by (created_at DESC, job_id DESC) are replaced by ones that
order them by job_id, and the one with no filter is not needed at all. What changes for a
reader: the history is ordered by the moment each job was decided (its id), where it was
ordered by created_at (when its request's transaction began: earlier by the time the request
waited for its locks, so the two orders differ only between requests that overlapped), and
its `since`/`until`, the activity's minutes and the retention of rejected jobs count from that
moment too (docs/api.md says so).

- jobs_newest_first (user_id, created_at DESC, job_id DESC): dropped. The history without a
  filter, with `since`/`until`, `source` or `status=Accepted` reads jobs_pkey; so does the
  activity of the last hour.
- jobs_of_tenant_newest_first, jobs_of_batch_newest_first, jobs_in_state_newest_first and
  jobs_rejected_newest_first: replaced by jobs_of_tenant (user_id, tenant_id, job_id),
  jobs_of_batch (user_id, batch_name, job_id), jobs_in_state (user_id, state, job_id) WHERE
  state IS NOT NULL and jobs_rejected (user_id, job_id) WHERE status = 'Rejected': the same
  filters in the new order, each entry 8 bytes narrower. `janus prune` deletes old rejected
  jobs through jobs_rejected.
- The queue's partial indexes (0006) stay as they are. They hold the same rows as
  jobs_in_state, but in the orders the queue needs (jobs_queued by priority, then age, for a
  claim; jobs_leased by lease end; jobs_finished by finish, for `janus prune`): a history page
  of queued jobs read from jobs_queued would sort the whole backlog.

Index entries a job costs when it is stored (measured with pageinspect; each update that
changes its state or lease costs one entry fewer too, 6 -> 5 for a claim, since such an update
is never HOT and enters the job in every index again): an accepted job 6 before (jobs_pkey, jobs_newest_first,
tenant, batch, in_state, jobs_queued), 5 now (jobs_pkey, jobs_of_tenant, jobs_of_batch,
jobs_in_state, jobs_queued); a rejected job 5 before (jobs_pkey, jobs_newest_first, tenant,
batch, jobs_rejected_newest_first), 4 now (jobs_pkey, jobs_of_tenant, jobs_of_batch,
jobs_rejected).

Jobs stored before 0013 keep their random ids (version 4): an id is what a client, a worker
holding a lease and an idempotency key's replay know a job by, so none is rewritten. They are
scattered over the primary key, above and below the time-ordered ones, so the history reads
them on their own, after every time-ordered job (they are all older), newest first by
(created_at, job_id) among themselves, through a new partial index that holds them only:
jobs_with_random_ids (user_id, created_at, job_id) WHERE job_id_version(job_id) <> 7. No
job stored since 0013 is entered in it (its predicate is false), so it costs admission
nothing, and it shrinks as `janus prune` deletes them; every filter of the history still
finds them. `janus prune` deletes their old rejections through it too; finished ones go
through jobs_finished, as before. The activity of the last hour does not read them.

New functions: first_job_id_at() (the smallest id of a moment, where the layout of an id is
now written; new_job_id() builds its ids on it, with the same layout), job_decided_at() (the
moment of an id) and job_id_version() (7 for a time-ordered id, 4 for a random one), and
statistics on it, jobs_job_id_version: without them the planner would guess that 1 job in 200
has a time-ordered id, and sort a user's jobs rather than read an index in order.

The new indexes are built CONCURRENTLY in an autocommit block, as 0008 does, before the old
ones are dropped (CONCURRENTLY too), so no admission is blocked. The previous release, which
serves while this runs, reads the dropped indexes: it keeps working, but its history pages,
activity and prune read a user's whole part of jobs_pkey from the moment they are dropped
until the new release takes traffic. Acceptable for a deploy's minutes; a history read is no
decision, and admission reads none of these indexes. The downgrade builds 0008's indexes
again before dropping these.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# In the order they are installed: new_job_id() (replaced) calls first_job_id_at().
NEW_FUNCTIONS = {
    "first_job_id_at": "timestamptz",
    "job_decided_at": "uuid",
    "job_id_version": "uuid",
}

NEW_INDEXES = {
    "jobs_of_tenant": "ON jobs (user_id, tenant_id, job_id)",
    "jobs_of_batch": "ON jobs (user_id, batch_name, job_id)",
    "jobs_in_state": "ON jobs (user_id, state, job_id) WHERE state IS NOT NULL",
    "jobs_rejected": "ON jobs (user_id, job_id) WHERE status = 'Rejected'",
    "jobs_with_random_ids": (
        "ON jobs (user_id, created_at, job_id) WHERE job_id_version(job_id) <> 7"
    ),
}

# The indexes they replace, as 0008 created them.
REPLACED_INDEXES = {
    "jobs_newest_first": "ON jobs (user_id, created_at DESC, job_id DESC)",
    "jobs_of_tenant_newest_first": "ON jobs (user_id, tenant_id, created_at DESC, job_id DESC)",
    "jobs_of_batch_newest_first": "ON jobs (user_id, batch_name, created_at DESC, job_id DESC)",
    "jobs_in_state_newest_first": (
        "ON jobs (user_id, state, created_at DESC, job_id DESC) WHERE state IS NOT NULL"
    ),
    "jobs_rejected_newest_first": (
        "ON jobs (user_id, created_at DESC, job_id DESC) WHERE status = 'Rejected'"
    ),
}


def upgrade() -> None:
    for name in NEW_FUNCTIONS:
        execute_sql_file(f"0016_{name}.sql")
    execute_sql_file("0016_new_job_id.sql")
    op.execute(
        "CREATE STATISTICS IF NOT EXISTS jobs_job_id_version ON (job_id_version(job_id)) FROM jobs"
    )
    with op.get_context().autocommit_block():
        for name, definition in NEW_INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")
        # The statistics now, not at autovacuum's next analyse: until then the history would
        # be planned as if 1 job in 200 had a time-ordered id. A sample of the table; it
        # blocks no write.
        op.execute("ANALYZE jobs")
        for name in REPLACED_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, definition in REPLACED_INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")
        for name in NEW_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    # new_job_id() first: it calls first_job_id_at(); the one of 0015 calls none of these.
    execute_sql_file("0015_new_job_id.sql")
    # The statistics before the function their expression calls.
    op.execute("DROP STATISTICS IF EXISTS jobs_job_id_version")
    for name, arguments in reversed(NEW_FUNCTIONS.items()):
        op.execute(f"DROP FUNCTION {name}({arguments})")
