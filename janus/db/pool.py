"""The connection pool: one per gunicorn worker, opened after the fork."""

from __future__ import annotations

import select
import threading
import time
from collections import Counter
from typing import Any, TypeAlias
from uuid import UUID

from psycopg import Connection, pq
from psycopg_pool import ConnectionPool

from janus import metrics
from janus.admission import UserBusy
from janus.db.urls import parsable_database_url
from janus.keys import ACTING_USER
from janus.settings import Settings

# The name the rest of Janus gives the pool, so that only janus.db imports the driver.
Pool: TypeAlias = ConnectionPool


class UserShare:
    """How many of a worker's connections each user holds, and at most `per_user` each: one
    user's slow requests (a history read that scans, an atomic batch waiting for its locks)
    leave the other connections to the other users."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._held: Counter[UUID] = Counter()
        self._freed = threading.Condition()

    def take(self, user_id: UUID, timeout: float) -> bool:
        """Count one more connection of the user, waiting up to `timeout` seconds for one of
        its own to come back; False when none did."""
        deadline = time.monotonic() + timeout
        with self._freed:
            while self._held[user_id] >= self.per_user:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._freed.wait(left)
            self._held[user_id] += 1
            return True

    def give_back(self, user_id: UUID) -> None:
        """Count one connection of the user fewer."""
        with self._freed:
            self._held[user_id] -= 1
            if self._held[user_id] <= 0:
                del self._held[user_id]
            self._freed.notify_all()


class MeasuredPool(ConnectionPool):
    """A ConnectionPool that reports how long each connection took to get, and its size then;
    and, given a UserShare, holds each user (ACTING_USER, janus.keys) to its share.

    Every use of the pool (`with pool.connection()`) goes through getconn and putconn. A user
    that holds its share waits for one of its own connections to come back, within the
    pool's timeout, and is then refused with UserBusy (429), not left to take the rest.
    """

    def __init__(self, *args: Any, user_share: UserShare | None = None, **kwargs: Any) -> None:
        self._user_share = user_share
        # id(connection) -> the user it is counted against, while it is out.
        self._holders: dict[int, UUID] = {}
        super().__init__(*args, **kwargs)

    def getconn(self, timeout: float | None = None) -> Connection[Any]:
        """A connection, as ConnectionPool gives it; the wait is recorded, timeouts too."""
        started = time.perf_counter()
        budget = self.timeout if timeout is None else timeout
        share, user_id = self._user_share, ACTING_USER.get()
        try:
            if share is None or user_id is None:
                return super().getconn(budget)
            if not share.take(user_id, budget):
                raise UserBusy(share.per_user, self.max_size)
            try:
                conn = super().getconn(max(0.0, budget - (time.perf_counter() - started)))
            except BaseException:
                share.give_back(user_id)
                raise
            self._holders[id(conn)] = user_id
            return conn
        finally:
            waited = time.perf_counter() - started
            stats = self.get_stats()
            metrics.observe_pool(waited, stats["pool_size"], stats["pool_available"])

    def putconn(self, conn: Connection[Any]) -> None:
        """Take the connection back, and count it off its user's share."""
        user_id = self._holders.pop(id(conn), None)
        try:
            super().putconn(conn)
        finally:
            if user_id is not None and self._user_share is not None:
                self._user_share.give_back(user_id)


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


def server_settings(settings: Settings) -> dict[str, str]:
    """The Postgres settings of every pool connection, sent as the `options` of each.

    PgBouncer cannot pass `options` on (docs/operations.md): behind one, the role of
    DATABASE_URL is given them with ALTER ROLE ... SET, and PgBouncer told to ignore them.
    """
    return {
        "statement_timeout": str(settings.statement_timeout_ms),
        "lock_timeout": str(settings.lock_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.statement_timeout_ms * 2),
        # A statement sent without BEGIN is a READ COMMITTED transaction of its own
        # (janus/db/transactions.py), whatever the server's default.
        "default_transaction_isolation": "read committed",
    }


def make_pool(settings: Settings) -> Pool:
    """A closed pool for `settings`; the caller opens it in the process that will use it."""
    server_options = " ".join(
        "-c " + f"{name}={value}".replace(" ", r"\ ")
        for name, value in server_settings(settings).items()
    )
    return MeasuredPool(
        parsable_database_url(settings.database_url),
        min_size=settings.pool_size,
        max_size=settings.pool_size,
        timeout=settings.pool_timeout_ms / 1000,
        user_share=UserShare(settings.user_connections),
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
