"""Jobs record the config version that decided them and the Retry-After they were given.

Revision ID: 0005
Revises: 0004

An operator asking why a job was rejected needs the rules it was decided by and the wait it
was told; both are now stored with it. admit_jobs() is replaced to write them (its decision
is unchanged). Jobs stored before this migration have neither (NULL).

"Jobs of tenant X today" is served by an index on (user_id, tenant_id, created_at).
`janus prune` deletes rejected jobs past their retention with the existing
(user_id, created_at) index.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE jobs
            -- The version of the user's config that decided the job (configs are never
            -- deleted but with their user, so it always names one).
            ADD COLUMN config_version integer,
            -- The Retry-After the job was answered with when rejected (NULL: none given).
            ADD COLUMN retry_after integer CHECK (retry_after >= 1);
        """
    )
    execute_sql_file("0005_admit_jobs.sql")
    # CONCURRENTLY, outside the migration's transaction: building it on a large jobs table
    # must not block admissions while a deploy runs.
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_by_tenant_and_time"
            " ON jobs (user_id, tenant_id, created_at)"
        )


def downgrade() -> None:
    # The admit_jobs() of 0002, which this migration replaced.
    execute_sql_file("0002_admit_jobs.sql")
    op.execute(
        """
        DROP INDEX IF EXISTS jobs_by_tenant_and_time;
        ALTER TABLE jobs DROP COLUMN config_version, DROP COLUMN retry_after;
        """
    )
