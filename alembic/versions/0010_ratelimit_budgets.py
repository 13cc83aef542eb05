"""admit_jobs() and admit_jobs_once() also return the budgets the RateLimit headers tell.

Revision ID: 0010
Revises: 0009

Every job answer now carries `RateLimit-Policy` and `RateLimit` (docs/api.md): for each
bucket the request named, its capacity, how long a full refill takes, its whole tokens after
the decision and the seconds until its next token. They must come from the decision itself,
under its locks and on its clock, and cost no second round trip, so admit_jobs() returns them
as a new column, `budgets` (json, on the first row), and admit_jobs_once() passes it on (a
replay carries none). A new return type: both functions are dropped and created again.

The web process names the columns it reads, so one still running the previous release keeps
working against these functions while a deploy goes on.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_DROP_BOTH = """
    DROP FUNCTION admit_jobs_once(uuid, text, text, text[], smallint[], jsonb[], json[], boolean,
                                  text, bytea);
    DROP FUNCTION admit_jobs(uuid, text, text, text[], smallint[], jsonb[], json[], boolean);
"""


def upgrade() -> None:
    op.execute(_DROP_BOTH)
    execute_sql_file("0010_admit_jobs.sql")
    execute_sql_file("0010_admit_jobs_once.sql")


def downgrade() -> None:
    op.execute(_DROP_BOTH)
    execute_sql_file("0009_admit_jobs.sql")
    execute_sql_file("0004_admit_jobs_once.sql")
