"""The connection pool: one per gunicorn worker, opened after the fork."""

from __future__ import annotations

import select
import time
from typing import Any, TypeAlias

from psycopg import Connection, pq
from psycopg_pool import ConnectionPool

from janus import metrics
from janus.db.urls import parsable_database_url
from janus.settings import Settings

# The name the rest of Janus gives the pool, so that only janus.db imports the driver.
Pool: TypeAlias = ConnectionPool


class MeasuredPool(ConnectionPool):
    """A ConnectionPool that reports how long each connection took to get, and its size then.

    Every use of the pool (`with pool.connection()`) goes through getconn.
    """

    def getconn(self, timeout: float | None = None) -> Connection[Any]:
        """A connection, as ConnectionPool gives it; the wait is recorded, timeouts too."""
        started = time.perf_counter()
        try:
            return super().getconn(timeout)
        finally:
            waited = time.perf_counter() - started
            stats = self.get_stats()
            metrics.observe_pool(waited, stats["pool_size"], stats["pool_available"])


RECONNECT_TIMEOUT_S = 2.0


def check_if_stirred(conn: Connection[Any]) -> None:
    """ConnectionPool.check_connection's round trip, for a connection that may be broken only.

    A server that ends a session (a restart, a crash, pg_terminate_backend) sends an error
    and closes the socket, or its kernel closes it: either way the idle connection's socket
    turns readable. A connection in good standing with nothing to read is taken as it is,
    with no round trip; anything else is checked, and the pool replaces it if it fails.
    """
    pgconn = conn.pgconn
    if (
        pgconn.status != pq.ConnStatus.OK
        or pgconn.transaction_status != pq.TransactionStatus.IDLE
        or select.select([pgconn.socket], [], [], 0)[0]
    ):
        ConnectionPool.check_connection(conn)


def make_pool(settings: Settings) -> Pool:
    """A closed pool for `settings`; the caller opens it in the process that will use it."""
    server_options = " ".join(
        [
            f"-c statement_timeout={settings.statement_timeout_ms}",
            f"-c lock_timeout={settings.lock_timeout_ms}",
            f"-c idle_in_transaction_session_timeout={settings.statement_timeout_ms * 2}",
            # A statement sent without BEGIN is a READ COMMITTED transaction of its own
            # (janus/db/transactions.py), whatever the server's default.
            r"-c default_transaction_isolation=read\ committed",
        ]
    )
    return MeasuredPool(
        parsable_database_url(settings.database_url),
        min_size=settings.pool_size,
        max_size=settings.pool_size,
        timeout=settings.pool_timeout_ms / 1000,
        open=False,
        # A connection broken by a database restart is found and replaced before use.
        check=check_if_stirred,
        kwargs={
            # Each unit of work is one statement sent alone, or its own BEGIN and COMMIT
            # pipelined with it (janus/db/transactions.py): one round trip, with no implicit
            # ones from psycopg.
            "autocommit": True,
            "application_name": "janus",
            "options": server_options,
            "connect_timeout": 3,
            # Notice a dead peer in about a minute instead of the OS's two hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # Drop a connection whose sent data stays unacknowledged this long (a network
            # partition), instead of waiting for the kernel's retransmission limit.
            "tcp_user_timeout": 10_000,
        },
        name="janus",
        # While the database is down the pool retries connecting with a doubling delay (1 s,
        # 2 s, 4 s, ...) for reconnect_timeout, 5 minutes by default: after an outage of T
        # seconds its next try could come up to T seconds after the database is back, and
        # every request until then is a 503. Giving up after a few seconds bounds that gap:
        # the next request that finds the pool empty starts a fresh attempt at once.
        reconnect_timeout=RECONNECT_TIMEOUT_S,
    )
