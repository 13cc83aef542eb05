"""The one retry loop: run a statement in its own transaction, again on serialization conflicts."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import IsolationLevel
from psycopg.rows import RowFactory
from psycopg_pool import ConnectionPool

from janus.admission import DatabaseUnavailable
from janus.db.errors import translate

Row = TypeVar("Row")

# Both mean the transaction was rolled back whole, so running it again is safe.
RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


def fetch_in_transaction(
    pool: ConnectionPool,
    query: str,
    params: Mapping[str, Any],
    *,
    row_factory: RowFactory[Row],
    isolation: IsolationLevel = IsolationLevel.READ_COMMITTED,
    retries: int = 5,
    base_delay: float = 0.005,
) -> list[Row]:
    """Run `query` in a transaction of its own and return its rows.

    BEGIN, the statement and COMMIT are pipelined, so they travel to Postgres together: one
    round trip in the normal case. On 40001/40P01 the whole transaction is retried after a
    jittered, growing delay; after `retries` more attempts it gives up as unavailable.
    """
    for attempt in range(retries + 1):
        try:
            with pool.connection() as conn:
                conn.isolation_level = isolation
                with conn.pipeline():
                    cursor = conn.cursor(row_factory=row_factory)
                    cursor.execute(query, params, prepare=True)
                    conn.commit()
                return cursor.fetchall()
        except RETRYABLE:
            if attempt == retries:
                break
            time.sleep(random.uniform(0, base_delay * 2**attempt))
        except psycopg.Error as error:
            raise translate(error) from error
    raise DatabaseUnavailable(f"conflict persisted after {retries} retries")
