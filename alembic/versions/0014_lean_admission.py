"""A leaner admit_jobs(): generic plans, and no ordering statements for a single job.

Revision ID: 0014
Revises: 0013

admit_jobs() and admit_jobs_once() now run with `plan_cache_mode = force_generic_plan`. With
the default, Postgres planned most of their statements again on every call (their array
parameters make a custom plan look cheaper than the generic one), which was about a third of
a single job's CPU in the database. A one-job request also skips the two statements that
only order and index the jobs of a batch (evaluation order, each job's dependency range).

Measured on Postgres 15, the backend's CPU per request of the bench's single job (in
process, through falcon's test client): about 900 us before, about 700 us after.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file("0014_admit_jobs.sql")
    execute_sql_file("0014_admit_jobs_once.sql")


def downgrade() -> None:
    execute_sql_file("0013_admit_jobs.sql")
    execute_sql_file("0011_admit_jobs_once.sql")
