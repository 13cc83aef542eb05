"""Cancelled jobs: cancel_jobs() ends a queued job and gives its tokens back.

Revision ID: 0018
Revises: 0017

Issue 24, item 4 (its first part): a user cancels a queued job (POST
/dashboard/jobs/{job_id}/cancel, `janus jobs cancel`). A cancelled job is finished: a new
state, `cancelled`, beside completed and failed, with its finished_at, kept for the config's
retention_days and pruned as they are.

- jobs_state_check admits 'cancelled'. Added NOT VALID, then validated: the check reads every
  row, under a lock that lets admissions and claims go on, where adding it plainly would block
  them for the whole scan.
- jobs_ended (user_id, finished_at) WHERE state IN ('completed', 'failed', 'cancelled')
  replaces jobs_finished, whose predicate left cancelled jobs out of `janus prune`'s index
  path. Built CONCURRENTLY before the old one is dropped (CONCURRENTLY too). The previous
  release, which serves while this runs, prunes with state IN ('completed', 'failed'): the new
  index's predicate is implied by it, so its prune keeps an index path.
- cancel_jobs(), new.

The previous release never writes 'cancelled', and only the new one cancels; during the
deploy's minutes, the previous release's history can list a job the new one cancelled.
The downgrade makes every cancelled job failed, with the error 'cancelled', before it
restores the old check.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

STATES = "'queued', 'running', 'completed', 'failed'"
ENDED = "ON jobs (user_id, finished_at) WHERE state IN ('completed', 'failed', 'cancelled')"
FINISHED = "ON jobs (user_id, finished_at) WHERE state IN ('completed', 'failed')"


def _state_check(states: str) -> None:
    op.execute(
        "ALTER TABLE jobs DROP CONSTRAINT jobs_state_check, "
        f"ADD CONSTRAINT jobs_state_check CHECK (state IN ({states})) NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_state_check")


def upgrade() -> None:
    _state_check(f"{STATES}, 'cancelled'")
    execute_sql_file("0018_cancel_jobs.sql")
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_ended {ENDED}")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_finished")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_finished {FINISHED}")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_ended")
    op.execute("DROP FUNCTION cancel_jobs(uuid, uuid[])")
    op.execute("UPDATE jobs SET state = 'failed', error = 'cancelled' WHERE state = 'cancelled'")
    _state_check(STATES)
