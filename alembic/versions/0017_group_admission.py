"""Group admission: admit_requests() decides one request or a group of one user's requests.

Revision ID: 0017
Revises: 0016

admit_requests() is the one decision: a group of a user's single jobs and partial batches
(janus/grouping.py), or one request of any kind, in one statement, one transaction and one
commit, each request answered as it would have been alone in the group's order. A request's
own refusal (an idempotency key in use or reused) and the user's (unknown, no config,
paused) come back as rows, so that one request's error does not fail the others'.

admit_jobs_once() and admit_jobs() keep their arguments and columns and become wrappers of
it: the release before this one calls admit_jobs_once() while this migration runs and until
the new release takes the traffic, and so decides through admit_requests() too. A later
migration drops both (migrations add before they remove).
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_ADMIT_REQUESTS = (
    "admit_requests(uuid, text[], text[], integer[], text[], bytea[], text[], smallint[], "
    "jsonb[], json[], boolean, boolean)"
)


def upgrade() -> None:
    execute_sql_file("0017_admit_requests.sql")
    execute_sql_file("0017_admit_jobs_once.sql")
    execute_sql_file("0017_admit_jobs.sql")


def downgrade() -> None:
    # admit_jobs() was PL/pgSQL before, and CREATE OR REPLACE may change a function's language.
    execute_sql_file("0015_admit_jobs.sql")
    execute_sql_file("0015_admit_jobs_once.sql")
    op.execute(f"DROP FUNCTION IF EXISTS {_ADMIT_REQUESTS}")
