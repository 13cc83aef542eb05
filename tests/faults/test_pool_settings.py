"""The outage settings of janus.db.pool really reach Postgres and the socket, and really bound.

Each connection is made as the service makes it (make_pool from Settings) and asked what it
got: the server-side timeouts through SHOW, connect_timeout from libpq, and the TCP
keepalives from the socket itself. Then the bounds are tried: a statement over
statement_timeout, and a pool whose database does not answer, both end as
DatabaseUnavailable (the service's 503) within their limits instead of hanging.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from devtools import localdb
from devtools.ports import free_port
from janus.admission import DatabaseUnavailable
from janus.db.pool import make_pool
from janus.db.transactions import fetch_in_transaction
from janus.settings import Settings

pytestmark = pytest.mark.fault


@contextmanager
def open_pool(settings: Settings, *, wait: bool = True) -> Iterator[ConnectionPool]:
    """The service's pool for `settings`, opened (and filled, when `wait`) here."""
    pool = make_pool(settings)
    pool.open(wait=wait, timeout=10)
    try:
        yield pool
    finally:
        pool.close()


def test_every_connection_gets_the_timeouts_and_keepalives(database_url: str) -> None:
    """SHOW through a pooled connection; the keepalives read back from the socket."""
    settings = Settings(database_url=database_url, statement_timeout_ms=4321, lock_timeout_ms=321)
    with open_pool(settings) as pool, pool.connection() as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in (
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
                "application_name",
                "default_transaction_isolation",
            )
        }
        parameters = conn.info.get_parameters()
        sock = socket.socket(fileno=conn.pgconn.socket)
        try:
            keepalive = {
                "on": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            }
        finally:
            # The descriptor belongs to libpq: let go of it without closing it.
            sock.detach()

    assert shown == {
        "statement_timeout": ("4321ms",),
        "lock_timeout": ("321ms",),
        "idle_in_transaction_session_timeout": ("8642ms",),
        "application_name": ("janus",),
        "default_transaction_isolation": ("read committed",),
    }
    assert parameters["connect_timeout"] == "3"
    assert keepalive == {"on": 1, "idle": 30, "interval": 10, "count": 3}
    assert pool.timeout == settings.pool_timeout_ms / 1000


def test_a_statement_over_statement_timeout_is_cancelled_as_unavailable(database_url: str) -> None:
    """Postgres cancels it after statement_timeout; the caller gets DatabaseUnavailable."""
    settings = Settings(database_url=database_url, statement_timeout_ms=200)
    with open_pool(settings) as pool:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="QueryCanceled"):
            fetch_in_transaction(pool, "SELECT pg_sleep(5)", {}, row_factory=tuple_row)
        elapsed = time.monotonic() - started
        # The pool replaces nothing: the connection is fine and serves the next statement.
        assert fetch_in_transaction(pool, "SELECT 1", {}, row_factory=tuple_row) == [(1,)]
    assert 0.2 <= elapsed < 1.5, elapsed


def test_waiting_for_a_database_that_does_not_answer_is_bounded() -> None:
    """Nothing listens: each request gives up after JANUS_POOL_TIMEOUT_MS, not later."""
    nowhere = localdb.database_url(free_port())
    settings = Settings(database_url=nowhere, pool_timeout_ms=700)
    with open_pool(settings, wait=False) as pool:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="PoolTimeout"):
                fetch_in_transaction(pool, "SELECT 1", {}, row_factory=tuple_row)
            elapsed = time.monotonic() - started
            assert 0.6 <= elapsed < 1.5, elapsed


def test_a_connection_whose_session_ended_is_replaced_without_a_failed_request(
    database_url: str,
) -> None:
    """Every pooled session is terminated while idle: the next statements still succeed.

    The pool's check (janus.db.pool.check_if_stirred) sees the closed sockets without a
    round trip and connects again; a connection that is fine is used with no query of its own.
    """
    settings = Settings(database_url=database_url, pool_size=2)
    with open_pool(settings) as pool, psycopg.connect(database_url, autocommit=True) as admin:
        with pool.connection() as conn:
            old = {conn.info.backend_pid}
        terminated = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'janus' AND datname = current_database()"
        ).fetchone()
        assert terminated == (2,)
        time.sleep(0.2)
        pids = {
            fetch_in_transaction(pool, "SELECT pg_backend_pid()", {}, row_factory=tuple_row)[0][0]
            for _ in range(4)
        }
        assert pids and not old & pids
        assert pool.get_stats()["connections_lost"] == 2

        # A connection in good standing is taken as it is: its session's last statement is
        # still the one it ran before, not a check.
        for _ in range(2):
            fetch_in_transaction(pool, "SELECT 'before'", {}, row_factory=tuple_row)
        with pool.connection() as conn:
            last = admin.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s", [conn.info.backend_pid]
            ).fetchone()
        assert last == ("SELECT 'before'",)
