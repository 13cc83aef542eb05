"""The one retry loop: run a statement in its own transaction, again on serialization conflicts."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import IsolationLevel, pq
from psycopg.rows import RowFactory
from psycopg_pool import ConnectionPool

from janus import metrics
from janus.admission import DatabaseUnavailable
from janus.db import queries
from janus.db.errors import translated

Row = TypeVar("Row")

# Both mean the transaction was rolled back whole, so running it again is safe.
RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)

_BEGIN = {
    IsolationLevel.READ_COMMITTED: b"BEGIN ISOLATION LEVEL READ COMMITTED",
    IsolationLevel.SERIALIZABLE: b"BEGIN ISOLATION LEVEL SERIALIZABLE",
}


_ROLL_BACK_AND_RELEASE = f"ROLLBACK; {queries.RELEASE_ADVISORY_LOCKS}".encode()


class Statement(NamedTuple):
    """A query and its parameters."""

    query: str
    params: Mapping[str, Any]


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
    locks: Statement | None = None,
    connection_timeout_s: float | None = None,
) -> list[Row]:
    """Run `query` in a transaction of its own and return its rows; without `commit`, the
    transaction is rolled back (a read that must leave nothing behind, not even a lock).

    One round trip in the normal case (see `_alone` and `_pipelined`). `locks` takes
    session-level advisory locks before the transaction begins, so that its snapshot is taken
    once they are granted; every advisory lock of the session is released after it, whatever
    its outcome. On 40001/40P01 the whole transaction, locks included, is retried after a
    jittered delay that doubles up to `max_delay`; after `retries` more attempts it gives up
    as unavailable. `connection_timeout_s` bounds the wait for a pooled connection, the pool's
    own timeout by default.
    """
    with translated():
        for attempt in range(retries + 1):
            try:
                with pool.connection(connection_timeout_s) as conn:
                    if locks is None and runs_alone(isolation, commit):
                        return _alone(conn, query, params, row_factory)
                    return _pipelined(conn, query, params, row_factory, isolation, commit, locks)
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


def _alone(
    conn: psycopg.Connection[Any],
    query: str,
    params: Mapping[str, Any],
    row_factory: RowFactory[Row],
) -> list[Row]:
    """The statement alone (see `runs_alone`). Its rows come back only once the server has
    committed it: psycopg reads its answer up to the ReadyForQuery that follows the commit.
    """
    return conn.cursor(row_factory=row_factory).execute(query, params, prepare=True).fetchall()


def _pipelined(
    conn: psycopg.Connection[Any],
    query: str,
    params: Mapping[str, Any],
    row_factory: RowFactory[Row],
    isolation: IsolationLevel,
    commit: bool,
    locks: Statement | None,
) -> list[Row]:
    """BEGIN, the statement and COMMIT, pipelined so they travel to Postgres together; with
    `locks`, that statement first, and the release of the locks last. Without `commit`, the
    transaction is rolled back after the pipeline (see `_roll_back`).

    The pool's connections are in autocommit mode, so psycopg adds no BEGIN or COMMIT of its
    own, and without `locks` the pipeline's one Sync is the only wait for the server. When a
    statement fails, the server skips the rest, and the pool rolls the connection back when
    it is returned (or `_release_advisory_locks` does, with `locks`).

    `locks` (session-level locks) are taken in a transaction of their own, before BEGIN:
    Postgres refuses BEGIN ISOLATION LEVEL after a query of the same transaction. Pipeline.sync()
    ends the first message, and waits for its answer: a second round trip, needed because the
    server runs what follows a Sync even when what precedes it failed, so a transaction sent
    without waiting would commit after a lock_timeout the caller reports.

    Behind PgBouncer in transaction mode (docs/operations.md), a connection is Postgres's
    only while a transaction is open, or an answer awaited: so that the locks, the
    transaction and the release meet on one server connection, the locks' transaction is
    still open when the first answer comes (its COMMIT goes with the second message), and
    the release is sent before the transaction's COMMIT, which may fail after the server
    connection has been given back (a serialization failure at commit). The transaction
    takes the same locks for itself first (LOCK_BUCKETS_TO_COMMIT, granted at once to the
    session that holds them), so the next batch on a bucket still waits until this COMMIT
    is done.
    """
    cursor = conn.cursor(row_factory=row_factory)
    committing = conn.cursor()
    failure: psycopg.Error | None = None
    try:
        with conn.pipeline() as pipeline:
            try:
                # BEGIN, COMMIT and the release: never prepared, not even after psycopg's
                # fifth use: a statement that the server skips (after an error in the
                # pipeline) would be taken as prepared all the same, and its next use fail
                # with "prepared statement does not exist".
                if locks is not None:
                    conn.execute(b"BEGIN", prepare=False)
                    conn.execute(locks.query, locks.params, prepare=True)
                    pipeline.sync()
                    conn.execute(b"COMMIT", prepare=False)
                conn.execute(_BEGIN[isolation], prepare=False)
                if locks is not None:
                    conn.execute(queries.LOCK_BUCKETS_TO_COMMIT, locks.params, prepare=True)
                cursor.execute(query, params, prepare=True)
                if locks is not None:
                    conn.execute(queries.RELEASE_ADVISORY_LOCKS, prepare=False)
                if commit:
                    committing.execute(b"COMMIT", prepare=False)
            except psycopg.Error as error:
                # psycopg raises a statement's error wherever it happens to read its result.
                # Kept here, not raised out of the block, so the pipeline's exit does not log
                # the skipped rest ("error ignored terminating ... pipeline aborted") as if
                # an expected outcome such as an unknown user were a fault.
                failure = error
    except psycopg.Error as error:
        failure = failure or error
    if not commit:
        failure = _roll_back(conn) or failure
    if failure is None:
        return cursor.fetchall()
    if locks is not None:
        _release_advisory_locks(conn)
    # The connection broke after COMMIT's answer arrived (before the pipeline's final
    # message): the transaction is committed (or rolled back as asked), and these rows are
    # the true answer.
    committed = (
        committing.pgresult is not None and committing.pgresult.status == pq.ExecStatus.COMMAND_OK
    )
    if isinstance(failure, psycopg.OperationalError) and committed:
        return cursor.fetchall()
    raise failure


def _roll_back(conn: psycopg.Connection[Any]) -> psycopg.Error | None:
    """Roll back the connection's transaction with conn.rollback(); its error, if any.

    Never with a ROLLBACK in a pipeline: psycopg forgets its prepared statements on a
    ROLLBACK, and from a pipeline it deallocates them on the server only after the next
    statement, which it prepares meanwhile, so that statement's next use fails with
    "prepared statement does not exist". conn.rollback() deallocates them at once.
    """
    try:
        conn.rollback()
    except psycopg.Error as error:
        return error
    return None


def _release_advisory_locks(conn: psycopg.Connection[Any]) -> None:
    """Give the pool back a connection without advisory locks after a failure skipped their
    release: end the failed transaction, if any, and release them all.

    Both in one message (the simple protocol, with no parameters), so that PgBouncer in
    transaction mode runs them on the server connection that holds the locks, which it keeps
    for this connection until the transaction ends (see `_pipelined`). psycopg forgets its
    prepared statements on a ROLLBACK, and deallocates them on the server at once, before
    this call returns (unlike a ROLLBACK in a pipeline, see `_roll_back`).

    A connection that cannot is closed, so the pool discards it, and the server frees its
    locks when its session ends (PgBouncer closes a server connection whose client leaves
    in a transaction).
    """
    try:
        conn.execute(_ROLL_BACK_AND_RELEASE, prepare=False)
    except psycopg.Error:
        conn.close()
