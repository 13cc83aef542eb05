"""Jobs stored before migration 0013 keep their random ids (version 4). From 0016 on the history
is the primary key (user_id, job_id) read backwards, which only time-ordered ids follow: the
jobs of random id are listed after all of them, newest first among themselves, with every
filter and across pages, and `janus prune` still finds their old rejections.

Built as a database is upgraded: jobs admitted by 0012's admit_jobs(), the database brought
to 0015, then to head, and new jobs stored beside them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import alembic.command
import psycopg

from janus.db import maintenance
from janus.db.history import job_page
from janus.history import JobFilter, JobPosition
from tests.support.history import insert_jobs
from tests.test_sql_sources import alembic_config

# admit_jobs() and activate_config() as 0012 left them.
_ACTIVATE_AT_0012 = (
    "SELECT activate_config(%s, false, 1::smallint, 0::numeric, 'reject',"
    ' \'{"openai": {"capacity": 9, "refill_per_second": 0}}\'::json)'
)
_ADMIT_AT_0012 = (
    "SELECT job_id FROM admit_jobs(%s, 'system', 'b', ARRAY[%s]::text[], ARRAY[5]::smallint[],"
    " ARRAY[%s]::jsonb[], ARRAY['{}']::json[], false)"
)


def _ids(
    conn: psycopg.Connection[Any], user_id: UUID, limit: int = 100, **filters: Any
) -> list[UUID]:
    return [job.job_id for job in job_page(conn, user_id, JobFilter(**filters), limit).jobs]


def test_jobs_of_random_id_stay_in_the_history_after_the_time_ordered_ones(
    database_url: str,
) -> None:
    config = alembic_config(database_url)
    alembic.command.downgrade(config, "0012")
    old: list[UUID] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("INSERT INTO users (name) VALUES ('u') RETURNING user_id").fetchone()
        assert row is not None
        user_id = row[0]
        conn.execute(_ACTIVATE_AT_0012, [user_id])
        # One transaction each, so each a created_at of its own; the last costs more than the
        # bucket holds: rejected.
        for tenant, cost in (("t-a", 1), ("t-b", 1), ("t-a", 99)):
            [(job_id,)] = conn.execute(_ADMIT_AT_0012, [user_id, tenant, f'{{"openai": {cost}}}'])
            old.append(job_id)
    alembic.command.upgrade(config, "0015")
    alembic.command.upgrade(config, "head")

    with psycopg.connect(database_url, autocommit=True) as conn:
        new = insert_jobs(conn, user_id, 3, tenant_id="t-a", spacing_s=1e-3)
        assert [job_id.version for job_id in old + new] == [4, 4, 4, 7, 7, 7]
        every = new + old[::-1]

        assert _ids(conn, user_id) == every
        # A page at a time: each job once, in the same order, across the two kinds.
        seen: list[UUID] = []
        after: JobPosition | None = None
        while page := job_page(conn, user_id, JobFilter(), 2, after).jobs:
            seen += [job.job_id for job in page]
            after = page[-1].position
        assert seen == every
        # Two jobs read a page at most, and two of every three do not match: short pages, each
        # ending where its read stopped, find every match of both kinds once, in order.
        found: list[UUID] = []
        after = None
        while True:
            read = job_page(
                conn, user_id, JobFilter(tenant_id="t-a", status="Rejected"), 2, after, 2
            )
            found += [job.job_id for job in read.jobs]
            if read.read_up_to is None:
                break
            after = read.read_up_to
        assert found == [old[2]]

        assert _ids(conn, user_id, status="Rejected") == [old[2]]
        assert _ids(conn, user_id, state="queued") == [old[1], old[0]]
        assert _ids(conn, user_id, tenant_id="t-a") == [*new, old[2], old[0]]
        assert _ids(conn, user_id, tenant_id="t-a", limit=4) == [*new, old[2]]
        [second] = [
            job for job in job_page(conn, user_id, JobFilter(), 100).jobs if job.job_id == old[1]
        ]
        assert _ids(conn, user_id, since=second.created_at) == [*new, old[2], old[1]]
        assert _ids(conn, user_id, until=second.created_at) == [old[0]]

        # Their rejection is past a retention of 0 days; the jobs accepted stay.
        assert maintenance.prune_rejected_jobs(conn, timedelta(0)) == 1
        assert _ids(conn, user_id) == [*new, old[1], old[0]]
