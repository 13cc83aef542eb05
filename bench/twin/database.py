"""The twin's side of the bench's database: its schema (twin.sql), its bucket, its jobs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

TWIN_SQL = Path(__file__).resolve().parent / "twin.sql"


def install(conn: psycopg.Connection[Any]) -> None:
    """Create (or bring up to date) the schema `twin`: its tables and functions."""
    with conn.transaction():
        conn.execute(TWIN_SQL.read_text())


def fill_bucket(
    conn: psycopg.Connection[Any], key: str, capacity: float, refill_per_second: float
) -> None:
    """Make bucket `key` hold `capacity` tokens now, refilling `refill_per_second`."""
    conn.execute(
        "INSERT INTO twin.buckets (key, capacity, refill_per_second, tokens, refilled_at)"
        " VALUES (%(key)s, %(capacity)s, %(refill)s, %(capacity)s, clock_timestamp())"
        " ON CONFLICT (key) DO UPDATE SET capacity = excluded.capacity,"
        " refill_per_second = excluded.refill_per_second, tokens = excluded.tokens,"
        " refilled_at = excluded.refilled_at",
        {"key": key, "capacity": capacity, "refill": refill_per_second},
    )


def stored_jobs(
    conn: psycopg.Connection[Any], bucket: str, since: datetime, until: datetime
) -> dict[str, int]:
    """Jobs of `bucket` stored in [since, until), by status."""
    rows = conn.execute(
        "SELECT status, count(*) FROM twin.jobs"
        " WHERE bucket = %s AND created_at >= %s AND created_at < %s"
        " GROUP BY status ORDER BY status",
        [bucket, since, until],
    ).fetchall()
    return {status: count for status, count in rows}
