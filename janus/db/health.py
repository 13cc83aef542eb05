"""Whether Postgres answers, for the readiness check."""

from __future__ import annotations

from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from janus.db import queries
from janus.db.transactions import fetch_in_transaction


def check_database(pool: ConnectionPool) -> None:
    """Return when Postgres answers a query; raise DatabaseUnavailable when it does not."""
    fetch_in_transaction(pool, queries.HEALTH_CHECK, {}, row_factory=tuple_row, retries=0)
