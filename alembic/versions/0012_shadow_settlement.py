"""Settling a job's real cost under shadow mode and tenant shares.

Revision ID: 0012
Revises: 0011

Under a config in shadow mode every job is accepted, but the buckets are debited by the jobs
enforcement would accept only. A job enforcement would have refused (jobs.shadow_status
'Rejected') took no token, yet settling its reported costs gave back the cost it declared (a
report of 0) or took only what it spent beyond it: tokens appeared that no job had returned,
and the shadow buckets drifted away from what enforcement would hold. Its costs are now
recorded (actual_costs) and move no token.

Under tenant shares a job was debited from its tenant's bucket too, so settling now moves the
tenant's bucket with the dependency's: what a worker reports is what the tenant spent.

settle_costs() takes the job's tenant and whether admission took anything (a new
signature: dropped and created again); finish_jobs() passes both.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP FUNCTION settle_costs(uuid, jsonb, jsonb, jsonb, timestamptz)")
    execute_sql_file("0012_settle_costs.sql")
    execute_sql_file("0012_finish_jobs.sql")


def downgrade() -> None:
    op.execute("DROP FUNCTION settle_costs(uuid, jsonb, jsonb, jsonb, timestamptz, text, boolean)")
    execute_sql_file("0007_settle_costs.sql")
    execute_sql_file("0006_finish_jobs.sql")
