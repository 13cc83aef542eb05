"""What each attempt paid, and a waiting job's estimated start, kept on the job.

Revision ID: 0022
Revises: 0021

- jobs.paid: whether the job's current attempt has taken its tokens (admission, for a job
  queued at once that the buckets let in; a claim, for a job paid from the line). A job that
  goes back to wait (a retry, an expired lease, `janus jobs retry`) has paid nothing yet.
  finish_jobs() settles and cancel_jobs() gives back only what was paid. Under shadow mode a
  retried job is queued again without paying, and was settled (and, cancelled, refunded) as
  though it had paid: tokens nobody took came back. Null for the jobs stored before, which
  keep the rule they were stored under (paid unless shadow mode alone let them in).
- jobs.estimated_start: the start admission told a job that it put in its dependencies'
  line; null unless waiting (a CHECK, NOT VALID then validated, as 0021 did), so that
  GET /dashboard/jobs and the job's record can show it.
- admit_requests(): under shadow mode a job that names a future run_at waits for it, as it
  does under enforcement (it was queued at once); it writes both columns.
- hand_out_jobs(), finish_jobs(), cancel_jobs() and retry_jobs() keep both. A job that joins
  the line at a claim without tokens to pay (shadow mode, or no configured dependency) is
  queued with its expires_at cleared, as jobs_expires_at_only_when_waiting asks.
- claim_jobs(), kept by 0021 for the release before it, is dropped: the previous release
  (0021's) claims through hand_out_jobs().

None of the signatures change, so the previous release's calls reach the new functions; its
queries read neither column.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

CHANGED = (
    "admit_requests",
    "hand_out_jobs",
    "finish_jobs",
    "cancel_jobs",
    "retry_jobs",
    "user_max_attempts",
    "retry_backoff",
)
# Each function's frozen copy before this migration.
BEFORE = {
    "admit_requests": "0021",
    "hand_out_jobs": "0021",
    "finish_jobs": "0021",
    "cancel_jobs": "0021",
    "retry_jobs": "0021",
    "user_max_attempts": "0015",
    "retry_backoff": "0020",
}
CLAIM_JOBS = "claim_jobs(uuid, integer, integer, text, text, text[])"


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN paid boolean, ADD COLUMN estimated_start timestamptz")
    op.execute(
        "ALTER TABLE jobs ADD CONSTRAINT jobs_estimated_start_only_when_waiting"
        " CHECK (estimated_start IS NULL OR state = 'waiting') NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_estimated_start_only_when_waiting")
    for function in CHANGED:
        execute_sql_file(f"0022_{function}.sql")
    op.execute(f"DROP FUNCTION {CLAIM_JOBS}")


def downgrade() -> None:
    execute_sql_file("0021_claim_jobs.sql")
    for function in CHANGED:
        execute_sql_file(f"{BEFORE[function]}_{function}.sql")
    op.execute("ALTER TABLE jobs DROP COLUMN paid, DROP COLUMN estimated_start")
