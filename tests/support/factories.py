"""Test data made through the real SQL functions, so tests set state the way operators do.

Also what tests read back from the database: a job's or a bucket's stored row, bucket levels
as of now, and job counts.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from janus.schemas.requests import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_DAYS

# The dependency names the tests' configs give buckets to; the strategies draw the dependencies
# of their jobs from these and from any name at all.
CONFIGURED = ["openai", "search", "stripe"]
# The tokens of each of an open user's buckets (the `open_user` fixture): more than any test takes.
OPEN_CAPACITY = 10**12


def limits(capacity: int, refill: float = 0) -> dict[str, Any]:
    """One dependency's limits in a config: `capacity` tokens, refilled at `refill` a second."""
    return {"capacity": capacity, "refill_per_second": refill}


def create_user(db: psycopg.Connection, name: str = "tester", user_id: UUID | None = None) -> UUID:
    """Insert a user (with `user_id`, or a new one) and return its id."""
    row = db.execute(
        "INSERT INTO users (user_id, name) VALUES (coalesce(%s, gen_random_uuid()), %s)"
        " RETURNING user_id",
        [user_id, name],
    ).fetchone()
    assert row is not None
    created: UUID = row[0]
    return created


def activate_config(
    db: psycopg.Connection,
    user_id: UUID,
    dependencies: dict[str, dict[str, Any]],
    *,
    paused: bool | None = False,  # None: the config leaves `paused` out
    min_priority: int = 1,
    priority_reserve: float = 0.0,
    unknown_dependencies: str = "reject",
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    mode: str = "enforce",
    tenant_share: float = 1,
    tenant_overrides: dict[str, float] | None = None,
    retry_backoff: tuple[float, float] = (0, 0),  # (base_seconds, max_seconds); 0: off
    when_limited: str | None = None,  # None: the table's default, reject
    max_wait_seconds: int | None = None,  # None: the table's default, 3600
) -> int:
    """Activate a config as `activate_config()` does for the CLI; returns the version.

    The reserve defaults to 0 here (the contract's default is 0.2) so that tests that are not
    about the reserve see a plain token bucket. A `tenant_share` below 1 (or an override)
    gives each tenant its own bucket per dependency at that share. A `retry_backoff` is
    passed only when one is asked for, so that a database downgraded below migration 0020
    (the migration tests) takes the call too; so are `when_limited` and `max_wait_seconds`
    (0021).
    """
    backoff, backoff_params = "", list[Any]()
    if retry_backoff != (0, 0):
        backoff = (
            ", p_retry_backoff_base_seconds => %s::numeric"
            ", p_retry_backoff_max_seconds => %s::numeric"
        )
        backoff_params = [str(retry_backoff[0]), str(retry_backoff[1])]
    if when_limited is not None:
        backoff += ", p_when_limited => %s"
        backoff_params.append(when_limited)
    if max_wait_seconds is not None:
        backoff += ", p_max_wait_seconds => %s"
        backoff_params.append(max_wait_seconds)
    row = db.execute(
        "SELECT activate_config(%s, %s, %s::smallint, %s::numeric, %s, %s::json, %s, %s,"
        " p_mode => %s, p_tenant_share => %s::numeric, p_tenant_overrides => %s::jsonb"
        + backoff
        + ")",
        [
            user_id,
            paused,
            min_priority,
            priority_reserve,
            unknown_dependencies,
            json.dumps(dependencies),
            max_attempts,
            retention_days,
            mode,
            str(tenant_share),
            json.dumps(tenant_overrides or {}),
            *backoff_params,
        ],
    ).fetchone()
    assert row is not None
    version: int = row[0]
    return version


def user_with_config(
    db: psycopg.Connection, dependencies: dict[str, dict[str, Any]], **config: Any
) -> UUID:
    """A new user with an active config of `dependencies`: {name: {capacity, refill}}."""
    user_id = create_user(db)
    activate_config(db, user_id, dependencies, **config)
    return user_id


def stored_job(db: psycopg.Connection, job_id: UUID | str, columns: str) -> dict[str, Any]:
    """The stored job's `columns` by name; `columns` is a select list (`state, payload::text
    AS payload`). The job must be stored."""
    query = sql.SQL("SELECT {} FROM jobs WHERE job_id = %s").format(sql.SQL(columns))
    row = db.cursor(row_factory=dict_row).execute(query, [UUID(str(job_id))]).fetchone()
    assert row is not None, f"job {job_id} is not stored"
    return row


def stored_bucket(
    db: psycopg.Connection, user_id: UUID, dependency: str, columns: str
) -> dict[str, Any]:
    """The `columns` (a select list) of the bucket's token_buckets row by name, as last
    written: no refill added. The bucket must exist."""
    query = sql.SQL("SELECT {} FROM token_buckets WHERE user_id = %s AND dependency = %s")
    cursor = db.cursor(row_factory=dict_row)
    row = cursor.execute(query.format(sql.SQL(columns)), [user_id, dependency]).fetchone()
    assert row is not None, f"no {dependency} bucket"
    return row


def stored_tokens(db: psycopg.Connection, user_id: UUID, dependency: str) -> float:
    """The bucket's tokens column itself, as last written (no refill added)."""
    return float(stored_bucket(db, user_id, dependency, "tokens")["tokens"])


def stored_buckets(
    db: psycopg.Connection, user_id: UUID, columns: str = "capacity, refill_per_second, tokens"
) -> dict[str, tuple[Any, ...]]:
    """Every token_buckets row of the user as stored: dependency -> its `columns`."""
    query = sql.SQL("SELECT dependency, {} FROM token_buckets WHERE user_id = %s")
    rows = db.execute(query.format(sql.SQL(columns)), [user_id]).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def bucket_tokens(db: psycopg.Connection, user_id: UUID, dependency: str) -> float:
    """The bucket's tokens as of now, from the operators' view."""
    row = db.execute(
        "SELECT tokens_now FROM token_buckets_now WHERE user_id = %s AND dependency = %s",
        [user_id, dependency],
    ).fetchone()
    assert row is not None
    return float(row[0])


def tenant_tokens(
    db: psycopg.Connection, user_id: UUID, dependency: str, tenant_id: str
) -> float | None:
    """The tenant bucket's tokens as of now; None when it has no row (a full bucket)."""
    row = db.execute(
        "SELECT tokens_now FROM tenant_buckets_now"
        " WHERE user_id = %s AND dependency = %s AND tenant_id = %s",
        [user_id, dependency, tenant_id],
    ).fetchone()
    return None if row is None else float(row[0])


def tenant_bucket_rows(db: psycopg.Connection, user_id: UUID) -> dict[tuple[str, str], float]:
    """Every stored tenant bucket of the user: (dependency, tenant_id) -> stored tokens."""
    rows = db.execute(
        "SELECT dependency, tenant_id, tokens FROM tenant_buckets WHERE user_id = %s",
        [user_id],
    ).fetchall()
    return {(row[0], row[1]): float(row[2]) for row in rows}


def jobs_of(db: psycopg.Connection, user_id: UUID) -> int:
    """How many jobs are stored for `user_id`."""
    row = db.execute("SELECT count(*) FROM jobs WHERE user_id = %s", [user_id]).fetchone()
    assert row is not None
    count: int = row[0]
    return count
