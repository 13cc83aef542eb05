"""Migrations 0018 to 0020 (cancelled and waiting jobs, the retry backoff) beside the release
before them: its calls still reach the new functions, and the downgrade leaves no job in a
state the old schema refuses."""

from __future__ import annotations

from uuid import UUID

import alembic.command
import psycopg

from tests.support.factories import user_with_config
from tests.test_sql_sources import alembic_config

LIMITS = {"openai": {"capacity": 100, "refill_per_second": 0}}

# What the release before 0018 sends (its janus/db/sql/queries.sql), word for word.
OLD_FINISH_JOBS = """
SELECT job_id, outcome, state, attempt
  FROM finish_jobs(%(user_id)s, %(job_ids)s::uuid[], %(lease_tokens)s::uuid[],
                   %(failed)s::boolean[], %(results)s::json[], %(errors)s::text[],
                   %(retry)s::boolean[], %(actual_costs)s::jsonb[],
                   %(upstream_throttled)s::jsonb[])
"""
OLD_ACTIVATE_CONFIG = """
SELECT activate_config(%(user_id)s, %(paused)s, %(min_priority)s::smallint,
                       %(priority_reserve)s::numeric, %(unknown_dependencies)s,
                       %(dependencies)s::json, %(max_attempts)s, %(retention_days)s,
                       %(mode)s, %(tenant_share)s::numeric, %(tenant_overrides)s::jsonb)
"""


def _queued_job(db: psycopg.Connection, user_id: UUID) -> UUID:
    row = db.execute(
        "SELECT job_id FROM admit_requests(%s, ARRAY['system'], ARRAY['b'], '{1}',"
        " ARRAY[NULL::text], ARRAY[NULL::bytea], ARRAY['t'], ARRAY[5::smallint],"
        " ARRAY['{\"openai\": 1}'::jsonb], ARRAY['{}'::json], false, false)",
        [user_id],
    ).fetchone()
    assert row is not None
    job_id: UUID = row[0]
    return job_id


def _claim(db: psycopg.Connection, user_id: UUID) -> tuple[UUID, UUID]:
    row = db.execute(
        "SELECT job_id, lease_token FROM hand_out_jobs(%s, 1, 60, NULL, NULL, NULL)"
        " WHERE job_id IS NOT NULL",
        [user_id],
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_the_previous_releases_calls_reach_the_new_functions(db: psycopg.Connection) -> None:
    user_id = user_with_config(db, LIMITS)
    version = db.execute(
        OLD_ACTIVATE_CONFIG,
        {
            "user_id": user_id,
            "paused": None,
            "min_priority": 1,
            "priority_reserve": 0,
            "unknown_dependencies": "reject",
            "dependencies": '{"openai": {"capacity": 100, "refill_per_second": 0}}',
            "max_attempts": 3,
            "retention_days": 7,
            "mode": "enforce",
            "tenant_share": 1,
            "tenant_overrides": "{}",
        },
    ).fetchone()
    assert version == (2,)
    # Stored without a backoff, as that release would have.
    backoff = db.execute(
        "SELECT retry_backoff_base_seconds, retry_backoff_max_seconds FROM configs"
        " WHERE user_id = %s AND is_active",
        [user_id],
    ).fetchone()
    assert backoff == (0, 0)

    _queued_job(db, user_id)
    job_id, token = _claim(db, user_id)
    finished = db.execute(
        OLD_FINISH_JOBS,
        {
            "user_id": user_id,
            "job_ids": [job_id],
            "lease_tokens": [token],
            "failed": [True],
            "results": [None],
            "errors": ["boom"],
            "retry": [True],
            "actual_costs": [None],
            "upstream_throttled": [None],
        },
    ).fetchall()
    assert finished == [(job_id, "ok", "waiting", 1)]


def test_the_downgrade_makes_cancelled_jobs_failed_and_waiting_ones_queued(
    database_url: str, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, LIMITS)
    cancelled = _queued_job(db, user_id)
    db.execute("SELECT * FROM cancel_jobs(%s, ARRAY[%s]::uuid[])", [user_id, cancelled])
    _queued_job(db, user_id)
    waiting, token = _claim(db, user_id)
    db.execute(
        "SELECT * FROM finish_jobs(%s, ARRAY[%s]::uuid[], ARRAY[%s]::uuid[], '{true}', '{NULL}',"
        " '{slow down}', '{true}', '{NULL}', '{NULL}', '{60}')",
        [user_id, waiting, token],
    )
    states: dict[UUID, str] = dict(db.execute("SELECT job_id, state FROM jobs").fetchall())
    assert states == {cancelled: "cancelled", waiting: "waiting"}

    config = alembic_config(database_url)
    alembic.command.downgrade(config, "0017")

    rows = {
        job_id: (state, error)
        for job_id, state, error in db.execute("SELECT job_id, state, error FROM jobs")
    }
    assert rows == {cancelled: ("failed", "cancelled"), waiting: ("queued", "slow down")}
    alembic.command.upgrade(config, "head")
