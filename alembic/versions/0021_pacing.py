"""Pacing: a job limited by tokens alone may wait in line, and pays when it is handed out.

Revision ID: 0021
Revises: 0020

Issue 24, items 1 to 3. A request (or the config, by default) says `when_limited`: `reject`,
as always, or `wait`: a job that would be refused only for tokens (its dependency's rate
limit, the priority reserve, its tenant's share) is accepted, `waiting`, in the line of each
of its dependencies, and takes its tokens when a claim hands it out, highest priority first,
then first in line. While a job waits in a dependency's line, no new job of its priority or
a lower one on that dependency is accepted at once. A waiting job not handed out within its
max wait ends `expired`; a job may name a `run_at` to wait for. A retried job (a failure, an
expired lease) waits too, and pays again when it is handed out again.

- configs.when_limited ('reject' by default, so every version stored before keeps rejecting)
  and configs.max_wait_seconds (3600 by default, 1 to 604800).
- jobs.in_line_at (a waiting job in its dependencies' line, since when) and jobs.expires_at
  (a waiting job's deadline), each null unless waiting; jobs_state_check admits 'expired'
  (NOT VALID, then validated, as 0018 did).
- token_buckets.line_jobs and line_tokens: per priority (element p for priority p), the jobs
  in the bucket's line and the tokens they wait for, so that admission keeps a new job behind
  them without reading a job.
- Indexes, built CONCURRENTLY: jobs_in_line (user_id, priority DESC, in_line_at, job_id), the
  line in hand-out order, merged by a claim with jobs_queued; jobs_expiring (user_id,
  expires_at); jobs_done, jobs_ended with 'expired' (so `janus prune` has an index path for
  expired jobs), which replaces jobs_ended. The previous release prunes with state IN
  ('completed', 'failed', 'cancelled'), whose predicate implies jobs_done's.
- admit_requests() takes p_when_limited, p_max_wait_seconds and p_run_at, last and defaulted,
  and answers each job's state and estimated start; activate_config() takes when_limited and
  max_wait_seconds, defaulted. Both signatures change: the old ones are dropped first, and
  the previous release's calls, which leave the new arguments out, reach the new functions
  (its queries name the columns they read, so the new ones go unseen).
- hand_out_jobs(), new, is the claim: it expires, lines up and pays, and counts the leases
  and waiting jobs that expired for the metrics (a last row); claim_queued_jobs(), new, is
  its statement for queued jobs; claim_jobs() becomes hand_out_jobs() without that row, for
  the previous release (it goes with the next migration); finish_jobs() sends a retried job to wait (run_at now when there is no
  backoff); cancel_jobs() takes a job out of the line (leave_line(), new).
- retry_jobs(), new (issue 24, item 4): a failed, expired or cancelled job waits again, due at
  once, with a fresh max wait and attempts, and pays when it is handed out.

While this runs, the previous release keeps rejecting (it never sends `wait`), and its claims
are this release's claim_jobs(). The downgrade queues every waiting job at once, as 0019's
does, and makes expired jobs failed before it restores the old check.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

STATES = "'queued', 'running', 'completed', 'failed', 'cancelled', 'waiting'"
ENDED = "ON jobs (user_id, finished_at) WHERE state IN ('completed', 'failed', 'cancelled')"
DONE = (
    "ON jobs (user_id, finished_at) WHERE state IN ('completed', 'failed', 'cancelled', 'expired')"
)
IN_LINE = (
    "ON jobs (user_id, priority DESC, in_line_at, job_id)"
    " WHERE state = 'waiting' AND in_line_at IS NOT NULL"
)
EXPIRING = "ON jobs (user_id, expires_at) WHERE state = 'waiting' AND expires_at IS NOT NULL"
_ADMIT_ARGS = (
    "uuid, text[], text[], integer[], text[], bytea[], text[], smallint[], jsonb[], json[],"
    " boolean, boolean"
)
OLD_ADMIT_REQUESTS = f"admit_requests({_ADMIT_ARGS})"
NEW_ADMIT_REQUESTS = f"admit_requests({_ADMIT_ARGS}, text[], integer[], timestamptz[])"
_ACTIVATE_ARGS = (
    "uuid, boolean, smallint, numeric, text, json, integer, integer, text, numeric, jsonb,"
    " numeric, numeric"
)
OLD_ACTIVATE_CONFIG = f"activate_config({_ACTIVATE_ARGS})"
NEW_ACTIVATE_CONFIG = f"activate_config({_ACTIVATE_ARGS}, text, integer)"
ZEROS = "'{0,0,0,0,0,0,0,0,0,0}'"


def _state_check(states: str) -> None:
    op.execute(
        "ALTER TABLE jobs DROP CONSTRAINT jobs_state_check, "
        f"ADD CONSTRAINT jobs_state_check CHECK (state IN ({states})) NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_state_check")


def upgrade() -> None:
    op.execute(
        "ALTER TABLE configs"
        " ADD COLUMN when_limited text NOT NULL DEFAULT 'reject'"
        " CHECK (when_limited IN ('reject', 'wait')),"
        " ADD COLUMN max_wait_seconds integer NOT NULL DEFAULT 3600"
        " CHECK (max_wait_seconds BETWEEN 1 AND 604800)"
    )
    op.execute(
        "ALTER TABLE jobs ADD COLUMN in_line_at timestamptz, ADD COLUMN expires_at timestamptz"
    )
    for column in ("in_line_at", "expires_at"):
        op.execute(
            f"ALTER TABLE jobs ADD CONSTRAINT jobs_{column}_only_when_waiting"
            f" CHECK ({column} IS NULL OR state = 'waiting') NOT VALID"
        )
        op.execute(f"ALTER TABLE jobs VALIDATE CONSTRAINT jobs_{column}_only_when_waiting")
    _state_check(f"{STATES}, 'expired'")
    op.execute(
        "ALTER TABLE token_buckets"
        f" ADD COLUMN line_jobs integer[] NOT NULL DEFAULT {ZEROS},"
        f" ADD COLUMN line_tokens numeric[] NOT NULL DEFAULT {ZEROS}"
    )
    op.execute(f"DROP FUNCTION {OLD_ADMIT_REQUESTS}")
    execute_sql_file("0021_admit_requests.sql")
    op.execute(f"DROP FUNCTION {OLD_ACTIVATE_CONFIG}")
    execute_sql_file("0021_activate_config.sql")
    execute_sql_file("0021_leave_line.sql")
    execute_sql_file("0021_claim_queued_jobs.sql")
    execute_sql_file("0021_hand_out_jobs.sql")
    execute_sql_file("0021_claim_jobs.sql")
    execute_sql_file("0021_finish_jobs.sql")
    execute_sql_file("0021_cancel_jobs.sql")
    execute_sql_file("0021_retry_jobs.sql")
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_in_line {IN_LINE}")
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_expiring {EXPIRING}")
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_done {DONE}")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_ended")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_ended {ENDED}")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_done")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_expiring")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_in_line")
    op.execute("DROP FUNCTION retry_jobs(uuid, uuid[])")
    execute_sql_file("0019_cancel_jobs.sql")
    execute_sql_file("0020_finish_jobs.sql")
    execute_sql_file("0020_claim_jobs.sql")
    op.execute("DROP FUNCTION hand_out_jobs(uuid, integer, integer, text, text, text[])")
    op.execute(
        "DROP FUNCTION claim_queued_jobs(uuid, integer, timestamptz, integer, text, text, text[])"
    )
    op.execute("DROP FUNCTION leave_line(uuid, integer, jsonb)")
    op.execute(f"DROP FUNCTION {NEW_ACTIVATE_CONFIG}")
    execute_sql_file("0020_activate_config.sql")
    op.execute(f"DROP FUNCTION {NEW_ADMIT_REQUESTS}")
    execute_sql_file("0017_admit_requests.sql")
    op.execute(
        "UPDATE jobs SET state = 'queued', run_at = NULL, in_line_at = NULL, expires_at = NULL"
        " WHERE state = 'waiting'"
    )
    op.execute("UPDATE jobs SET state = 'failed', expires_at = NULL WHERE state = 'expired'")
    _state_check(STATES)
    op.execute("ALTER TABLE token_buckets DROP COLUMN line_jobs, DROP COLUMN line_tokens")
    op.execute("ALTER TABLE jobs DROP COLUMN in_line_at, DROP COLUMN expires_at")
    op.execute("ALTER TABLE configs DROP COLUMN when_limited, DROP COLUMN max_wait_seconds")
