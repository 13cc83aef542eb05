"""admit_jobs(): the whole admission decision for a job or a batch, in one call.

Revision ID: 0002
Revises: 0001

The web process sends one statement per request; this function refills the buckets, runs
the checks of the contract in their order, debits the buckets of accepted jobs and stores
the jobs. Reasons are produced here, in the exact text of the contract.

Custom SQLSTATEs (class J0) tell the caller why there was no decision at all:
J0U01 unknown user, J0C01 no active config, J0P01 service paused.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Also restored by the downgrade of 0005, which replaced it.
    execute_sql_file("0002_admit_jobs.sql")


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION admit_jobs(uuid, text, text, text[], smallint[], jsonb[], json[], boolean)"
    )
