"""Waiting jobs: a failed job the worker says to try again later waits until then.

Revision ID: 0019
Revises: 0018

Issue 24, item 3 (its first part): `POST /system/jobs/{job_id}/fail` may carry
`retry_after_seconds` (an upstream's own Retry-After, say). A job failed so, with attempts
left, is not queued at once: it is `waiting`, with `run_at` the moment it may be handed out
again, and claim_jobs() queues it again once that moment has passed. Without it, a retried
job is queued at once, as before.

- jobs.run_at, new, null unless waiting (jobs_run_at_only_when_waiting); jobs_state_check
  admits 'waiting' (NOT VALID, then validated, as 0018 did).
- jobs_waiting (user_id, run_at, job_id) WHERE state = 'waiting', built CONCURRENTLY: a claim
  reads the due ones through it, so waiting jobs whose moment has not come cost a claim
  nothing, however many there are.
- finish_jobs() takes p_retry_after_seconds, last and defaulted, so the previous release's
  call of nine arguments, while this runs, reaches the new function. Its signature changes, so
  the old one is dropped first (alembic/README). claim_jobs() queues due waiting jobs again;
  cancel_jobs() cancels waiting jobs too.

The previous release never makes a job waiting, nor reads run_at; a job the new release
made waiting is queued again by the new release's claims only. The downgrade queues every
waiting job at once before it restores the old check.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

STATES = "'queued', 'running', 'completed', 'failed', 'cancelled'"
WAITING = "ON jobs (user_id, run_at, job_id) WHERE state = 'waiting'"
OLD_FINISH_JOBS = (
    "finish_jobs(uuid, uuid[], uuid[], boolean[], json[], text[], boolean[], jsonb[], jsonb[])"
)
NEW_FINISH_JOBS = (
    "finish_jobs(uuid, uuid[], uuid[], boolean[], json[], text[], boolean[], jsonb[], jsonb[],"
    " integer[])"
)


def _state_check(states: str) -> None:
    op.execute(
        "ALTER TABLE jobs DROP CONSTRAINT jobs_state_check, "
        f"ADD CONSTRAINT jobs_state_check CHECK (state IN ({states})) NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_state_check")


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN run_at timestamptz")
    op.execute(
        "ALTER TABLE jobs ADD CONSTRAINT jobs_run_at_only_when_waiting"
        " CHECK (run_at IS NULL OR state = 'waiting') NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_run_at_only_when_waiting")
    _state_check(f"{STATES}, 'waiting'")
    op.execute(f"DROP FUNCTION {OLD_FINISH_JOBS}")
    execute_sql_file("0019_finish_jobs.sql")
    execute_sql_file("0019_claim_jobs.sql")
    execute_sql_file("0019_cancel_jobs.sql")
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_waiting {WAITING}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_waiting")
    execute_sql_file("0018_cancel_jobs.sql")
    execute_sql_file("0015_claim_jobs.sql")
    op.execute(f"DROP FUNCTION {NEW_FINISH_JOBS}")
    execute_sql_file("0015_finish_jobs.sql")
    op.execute("UPDATE jobs SET state = 'queued', run_at = NULL WHERE state = 'waiting'")
    _state_check(STATES)
    op.execute("ALTER TABLE jobs DROP CONSTRAINT jobs_run_at_only_when_waiting")
    op.execute("ALTER TABLE jobs DROP COLUMN run_at")
