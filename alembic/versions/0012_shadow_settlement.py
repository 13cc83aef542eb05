"""finish_jobs() settles no cost of a job that only shadow mode let in.

Revision ID: 0012
Revises: 0011

Under a config in shadow mode every job is accepted, but the buckets are debited by the jobs
enforcement would accept only. A job enforcement would have refused (jobs.shadow_status
'Rejected') took no token, yet settling its reported costs gave back the cost it declared (a
report of 0) or took only what it spent beyond it: tokens appeared that no job had returned,
and the shadow buckets drifted away from what enforcement would hold. Its costs are now
recorded (actual_costs) and move no token. Same signature: CREATE OR REPLACE is enough.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file("0012_finish_jobs.sql")


def downgrade() -> None:
    execute_sql_file("0006_finish_jobs.sql")
