"""Fewer indexes on jobs: the history newest first from the primary key (user_id, job_id).

Revision ID: 0016
Revises: 0015

Issue 23, item 2. Since 0013 a job's id is time-ordered (version 7): it starts with the
moment admission decided the job, to the microsecond. New functions read that moment in SQL:
first_job_id_at() (the smallest id of a moment, where the layout of an id is now written;
new_job_id() builds its ids on it, with the same layout), job_decided_at() (the moment of an
id) and job_id_version() (7 for a time-ordered id, 4 for a random one).
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# In the order they are installed: new_job_id() (replaced) calls first_job_id_at().
NEW_FUNCTIONS = {
    "first_job_id_at": "timestamptz",
    "job_decided_at": "uuid",
    "job_id_version": "uuid",
}


def upgrade() -> None:
    for name in NEW_FUNCTIONS:
        execute_sql_file(f"0016_{name}.sql")
    execute_sql_file("0016_new_job_id.sql")


def downgrade() -> None:
    # new_job_id() first: it calls first_job_id_at(); the one of 0015 calls none of these.
    execute_sql_file("0015_new_job_id.sql")
    for name, arguments in reversed(NEW_FUNCTIONS.items()):
        op.execute(f"DROP FUNCTION {name}({arguments})")
