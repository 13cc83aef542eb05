"""A user's job history, newest first, read through indexes: GET /dashboard/jobs, `janus jobs`.

Revision ID: 0008
Revises: 0007

The listing (queries.sql's `job_history`) reads one user's jobs newest first, ordered by
(created_at DESC, job_id DESC), a page at a time: the next page starts strictly below the last
(created_at, job_id) shown (keyset pagination), so jobs stored meanwhile neither repeat nor
push older ones out of reach. Each filter is served by an index that yields its jobs in that
very order, so a page reads about as many index entries as it shows, followed by LIMIT:

- jobs_newest_first (user_id, created_at DESC, job_id DESC): no filter, `since`/`until` (a
  range of it), and the filters without an index of their own (`source`, `status=Accepted`),
  which are checked on the rows it walks. It replaces jobs_by_user_and_time
  (user_id, created_at), a prefix of it, which `janus prune` used and now no longer needs.
- jobs_of_tenant_newest_first (user_id, tenant_id, created_at DESC, job_id DESC): `tenant_id`.
  It replaces jobs_by_tenant_and_time (user_id, tenant_id, created_at), which lacked the
  job_id tie-break ("jobs of a tenant today" is served by the new one just as well).
- jobs_of_batch_newest_first (user_id, batch_name, created_at DESC, job_id DESC): `batch_name`.
- jobs_in_state_newest_first (user_id, state, created_at DESC, job_id DESC)
  WHERE state IS NOT NULL: `state` (queued, running, completed, failed). Rejected jobs have
  no state and are left out.
- jobs_rejected_newest_first (user_id, created_at DESC, job_id DESC) WHERE status = 'Rejected':
  `status=Rejected`, however few they are beside the accepted ones; `janus prune` deletes
  old rejected jobs through it too. Rejected jobs are never updated, so it costs one entry
  per rejection.

GET /dashboard/jobs/{job_id} reads one row by the primary key (user_id, job_id).

Every index leads with user_id, as the contract asks. What they cost on writes: a stored
job is entered in two more indexes than before (jobs_of_batch_newest_first, and
jobs_in_state_newest_first or jobs_rejected_newest_first), so six for an accepted job (with
jobs_queued) and five for a rejected one; a change of state (claim, completion, failure) is
never a HOT update, since the queue's partial indexes name state, so it too enters the job in
six indexes instead of four.

All are built CONCURRENTLY in an autocommit block, as 0006 does, so a deploy on a large jobs
table does not block admissions; the replaced indexes are dropped CONCURRENTLY once their
successors exist. The downgrade does the reverse.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NEW_INDEXES = {
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

# The indexes the new ones replace, as 0001 and 0005 created them.
REPLACED_INDEXES = {
    "jobs_by_user_and_time": "ON jobs (user_id, created_at)",
    "jobs_by_tenant_and_time": "ON jobs (user_id, tenant_id, created_at)",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, definition in NEW_INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")
        for name in REPLACED_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, definition in REPLACED_INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")
        for name in NEW_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
