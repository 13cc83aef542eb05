"""What workers tell the token buckets: reports of upstream throttling (adaptive refill)."""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg

from janus.db import queries
from janus.db.errors import translated


def report_upstream_throttled(
    conn: psycopg.Connection[Any], user_id: UUID, dependencies: Collection[str]
) -> dict[str, Decimal]:
    """Cut the effective refill of the user's adaptive buckets named in `dependencies`.

    Runs in `conn`'s current transaction, so that a caller completing or failing a job commits
    the report with it (see janus/db/sql/report_upstream_throttled.sql for the locking order
    it shares with admission). Names that are not adaptive buckets of the user are ignored.
    Returns each bucket slowed down with its effective refill (tokens/s) after the cut.
    """
    if isinstance(dependencies, str):
        # A str is a collection of its characters: "openai" would report o, p, e, n, a, i.
        raise TypeError("dependencies must be a collection of names, not one str")
    with translated():
        rows = conn.execute(
            queries.REPORT_UPSTREAM_THROTTLED,
            {"user_id": user_id, "dependencies": list(dependencies)},
        ).fetchall()
    return {dependency: rate for dependency, rate in rows}
