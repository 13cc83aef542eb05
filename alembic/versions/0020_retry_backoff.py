"""A config's retry_backoff: a retried job waits before its next attempt.

Revision ID: 0020
Revises: 0019

Issue 24, item 3: a job failed with retry, or whose lease expired, with attempts left, goes
back only after a backoff, when the config has one: `retry_backoff` {base_seconds,
max_seconds}, the base doubled for each attempt made, never above the max, half of it at
random (retry_backoff()). It waits as a job a worker asked to wait for does (0019: `waiting`,
`run_at`), and a worker's retry_after_seconds still takes its place. A base of 0, the default,
keeps what was: queued again at once.

- configs.retry_backoff_base_seconds and retry_backoff_max_seconds, 0 for every version
  stored before (they had no backoff), with their bounds.
- activate_config() takes both, last and defaulted to 0, so the previous release's call, while
  this runs, stores a version without a backoff, as it would have. Its signature changes: the
  old one is dropped first (alembic/README).
- retry_backoff(), new; finish_jobs() and claim_jobs() call it.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_OLD_ACTIVATE_CONFIG = (
    "activate_config(uuid, boolean, smallint, numeric, text, json, integer, integer, text,"
    " numeric, jsonb)"
)
_NEW_ACTIVATE_CONFIG = (
    "activate_config(uuid, boolean, smallint, numeric, text, json, integer, integer, text,"
    " numeric, jsonb, numeric, numeric)"
)


def upgrade() -> None:
    op.execute(
        "ALTER TABLE configs"
        " ADD COLUMN retry_backoff_base_seconds numeric NOT NULL DEFAULT 0"
        " CHECK (retry_backoff_base_seconds BETWEEN 0 AND 86400),"
        " ADD COLUMN retry_backoff_max_seconds numeric NOT NULL DEFAULT 0"
        " CHECK (retry_backoff_max_seconds BETWEEN 0 AND 86400),"
        " ADD CONSTRAINT configs_retry_backoff_max_not_below_base"
        " CHECK (retry_backoff_max_seconds >= retry_backoff_base_seconds)"
    )
    execute_sql_file("0020_retry_backoff.sql")
    op.execute(f"DROP FUNCTION {_OLD_ACTIVATE_CONFIG}")
    execute_sql_file("0020_activate_config.sql")
    execute_sql_file("0020_finish_jobs.sql")
    execute_sql_file("0020_claim_jobs.sql")


def downgrade() -> None:
    execute_sql_file("0019_claim_jobs.sql")
    execute_sql_file("0019_finish_jobs.sql")
    op.execute(f"DROP FUNCTION {_NEW_ACTIVATE_CONFIG}")
    execute_sql_file("0015_activate_config.sql")
    op.execute("DROP FUNCTION retry_backoff(numeric, numeric, integer)")
    op.execute(
        "ALTER TABLE configs DROP COLUMN retry_backoff_base_seconds,"
        " DROP COLUMN retry_backoff_max_seconds"
    )
