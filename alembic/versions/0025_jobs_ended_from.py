"""The queue view's ended jobs read from the partitions that can hold them (issue 27).

Revision ID: 0025
Revises: 0024

GET /dashboard/queue counts the user's jobs that ended in the last day. Such a job may have
been decided at any time before, so the count was planned in every partition of jobs: about
75 ms with a week of hourly partitions, at each of the dashboard's polls. A job that ended at a
moment was unfinished just before, so its id is at least the user's jobs_unfinished_from of
that moment; these columns keep the least of those over a day back or more:

- users.jobs_unfinished_low, jobs_unfinished_low_since: the least jobs_unfinished_from since
  that moment.
- users.jobs_ended_from: the least jobs_unfinished_from from a day back or more to now, below
  which none of the user's jobs ended within a day. `janus maintain` (mark_unfinished_from)
  makes the low of a day ago the new jobs_ended_from, and starts the low again; both take any
  lower mark.
- retry_jobs(), same signature: lowers both with jobs_unfinished_from.

Constant defaults, so no rewrite of users: the lowest id, for no bound until `janus maintain`
has kept a low for a day. The previous release neither reads nor writes them (its `janus
maintain` raises jobs_unfinished_from alone, which leaves them below it, as they must be), and
calls the new retry_jobs().
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

LOWEST_ID = "'00000000-0000-0000-0000-000000000000'"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE users ADD COLUMN jobs_ended_from uuid NOT NULL DEFAULT {LOWEST_ID},"
        f" ADD COLUMN jobs_unfinished_low uuid NOT NULL DEFAULT {LOWEST_ID},"
        " ADD COLUMN jobs_unfinished_low_since timestamptz NOT NULL DEFAULT now()"
    )
    execute_sql_file("0025_retry_jobs.sql")


def downgrade() -> None:
    execute_sql_file("0024_retry_jobs.sql")
    op.execute(
        "ALTER TABLE users DROP COLUMN jobs_ended_from, DROP COLUMN jobs_unfinished_low,"
        " DROP COLUMN jobs_unfinished_low_since"
    )
