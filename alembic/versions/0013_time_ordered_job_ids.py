"""Time-ordered job ids: new_job_id(), a UUID of version 7, replaces gen_random_uuid().

Revision ID: 0013
Revises: 0012

The jobs primary key is (user_id, job_id). A random id (version 4) lands anywhere in its
user's part of that B-tree, so once the index outgrows shared_buffers an insert reads and
dirties a leaf of its own, and writes it whole to the WAL once after each checkpoint:
admission slowed down as the table grew (issue 13, the soak of bench/README.md).

new_job_id() returns a UUID of version 7 (RFC 9562): the Unix time in milliseconds first,
then the microseconds within it, then random bits, so a user's new ids all land on the last
leaf of its part of the index, as its new entries in the created_at indexes land on their
first. It overlays the time on a gen_random_uuid(), so it is the same on every server Janus
runs on (PostgreSQL 18's uuidv7() has the same layout; older servers lack it).

admit_jobs() calls it for each job, and nothing else of it changes. Jobs stored before keep
their random ids.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file("0013_new_job_id.sql")
    execute_sql_file("0013_admit_jobs.sql")


def downgrade() -> None:
    # admit_jobs() first: it calls new_job_id() (PL/pgSQL binds names only when it runs).
    execute_sql_file("0011_admit_jobs.sql")
    op.execute("DROP FUNCTION new_job_id()")
