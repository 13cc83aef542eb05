"""The one retry loop: run a statement in its own transaction, again on serialization conflicts."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import IsolationLevel, pq
from psycopg.rows import RowFactory
from psycopg_pool import ConnectionPool

from janus import metrics
from janus.admission import DatabaseUnavailable
from janus.db.errors import translated

Row = TypeVar("Row")

# Both mean the transaction was rolled back whole, so running it again is safe.
RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)

_END = {True: b"COMMIT", False: b"ROLLBACK"}
_BEGIN = {
    IsolationLevel.READ_COMMITTED: b"BEGIN ISOLATION LEVEL READ COMMITTED",
    IsolationLevel.SERIALIZABLE: b"BEGIN ISOLATION LEVEL SERIALIZABLE",
}


def fetch_in_transaction(
    pool: ConnectionPool,
    query: str,
    params: Mapping[str, Any],
    *,
    row_factory: RowFactory[Row],
    isolation: IsolationLevel = IsolationLevel.READ_COMMITTED,
    retries: int = 10,
    base_delay: float = 0.005,
    max_delay: float = 0.1,
    commit: bool = True,
) -> list[Row]:
    """Run `query` in a transaction of its own and return its rows; without `commit`, the
    transaction is rolled back (a read that must leave nothing behind, not even a lock).

    One round trip in the normal case (see `_in_one_round_trip`). On 40001/40P01 the whole
    transaction is retried after a jittered delay that doubles up to `max_delay`; after
    `retries` more attempts it gives up as unavailable.
    """
    with translated():
        for attempt in range(retries + 1):
            try:
                with pool.connection() as conn:
                    return _in_one_round_trip(
                        conn, query, params, row_factory, isolation, _end(isolation, commit)
                    )
            except RETRYABLE as conflict:
                if attempt == retries:
                    break
                metrics.count_conflict_retry(
                    "deadlock"
                    if isinstance(conflict, psycopg.errors.DeadlockDetected)
                    else "serialization_failure"
                )
                time.sleep(random.uniform(0, min(max_delay, base_delay * 2**attempt)))
    raise DatabaseUnavailable(f"conflict persisted after {retries} retries", cause="conflict")


def runs_alone(isolation: IsolationLevel, commit: bool = True) -> bool:
    """Whether the statement is sent alone, as a transaction of its own, with no BEGIN.

    On the pool's autocommit connections (READ COMMITTED by default, janus/db/pool.py) a
    statement sent alone is a READ COMMITTED transaction, committed before its answer ends:
    what BEGIN and COMMIT around it would do, for two statements fewer to send and run.
    """
    return isolation is IsolationLevel.READ_COMMITTED and commit


def _end(isolation: IsolationLevel, commit: bool) -> bytes | None:
    return None if runs_alone(isolation, commit) else _END[commit]


def _in_one_round_trip(
    conn: psycopg.Connection[Any],
    query: str,
    params: Mapping[str, Any],
    row_factory: RowFactory[Row],
    isolation: IsolationLevel,
    end: bytes | None,
) -> list[Row]:
    """The statement alone (`end` None, see `runs_alone`); or BEGIN, the statement and COMMIT
    (or ROLLBACK), pipelined so they travel to Postgres together.

    The pool's connections are in autocommit mode, so psycopg adds no BEGIN or COMMIT of its
    own, and the pipeline's one Sync is the only wait for the server. When a statement fails,
    the server skips the rest, and the pool rolls the connection back when it is returned.
    Alone, the statement's rows come back only once the server has committed it: psycopg
    reads its answer up to the ReadyForQuery that follows the commit.
    """
    cursor = conn.cursor(row_factory=row_factory)
    if end is None:
        cursor.execute(query, params, prepare=True)
        return cursor.fetchall()
    commit = conn.cursor()
    failure: psycopg.Error | None = None
    try:
        with conn.pipeline():
            try:
                conn.execute(_BEGIN[isolation])
                cursor.execute(query, params, prepare=True)
                commit.execute(end)
            except psycopg.Error as error:
                # psycopg raises a statement's error wherever it happens to read its result.
                # Kept here, not raised out of the block, so the pipeline's exit does not log
                # the skipped rest ("error ignored terminating ... pipeline aborted") as if
                # an expected outcome such as an unknown user were a fault.
                failure = error
    except psycopg.Error as error:
        failure = failure or error
    if failure is None:
        return cursor.fetchall()
    # The connection broke after COMMIT's answer arrived (before the pipeline's final
    # message): the transaction is committed (or rolled back as asked), and these rows are
    # the true answer.
    committed = commit.pgresult is not None and commit.pgresult.status == pq.ExecStatus.COMMAND_OK
    if isinstance(failure, psycopg.OperationalError) and committed:
        return cursor.fetchall()
    raise failure
