"""Two deploys migrating at once: the second waits for the first's lock (alembic/env.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import alembic.command
import alembic.config
import psycopg
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import Engine

from janus.settings import sqlalchemy_url
from tests.conftest import REPO_ROOT

# alembic/env.py's MIGRATION_LOCK_ID (env.py runs inside alembic and cannot be imported).
MIGRATION_LOCK_ID = 0x4A414E5553
# The database's own defaults for this test, short enough that waiting past them is cheap.
DEFAULT_TIMEOUT = "1s"
HOLD_PAST_DEFAULT_TIMEOUT_S = 1.5
WAIT_FOR_WAITER_S = 30


def _settings(cursor: Any) -> tuple[str, str]:
    """lock_timeout and statement_timeout of the session `cursor` belongs to."""
    row = cursor.connection.execute(
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
    ).fetchone()
    return (row[0], row[1])


def _advisory_lock_waiters(conn: psycopg.Connection[Any]) -> int:
    """How many sessions of this database wait for an advisory lock."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event = 'advisory'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_second_migration_waits_for_the_lock_past_any_timeout(database_url: str) -> None:
    """While another deploy holds the migration lock, `alembic upgrade` waits for it with no
    timeout (not even the database's defaults), then migrates with lock_timeout 10s and
    statement_timeout 5min. Checked through the session's settings at the moment it asks for
    the lock, and by holding the lock past the database's 1 s defaults."""
    config = alembic.config.Config(str(REPO_ROOT / "alembic.ini"))
    url = sqlalchemy_url({"DATABASE_URL": database_url})
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # Something to migrate: 0005 and later run again once the lock is ours.
    alembic.command.downgrade(config, "0004")

    with psycopg.connect(database_url, autocommit=True) as admin:
        database = sql.Identifier(admin.info.dbname)
        for setting in ("lock_timeout", "statement_timeout"):
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    database, sql.Identifier(setting), sql.Literal(DEFAULT_TIMEOUT)
                )
            )

    seen: dict[str, tuple[str, str]] = {}

    def record(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "pg_advisory_lock(" in statement:
            seen["asking for the lock"] = _settings(cursor)
        elif "ALTER TABLE jobs" in statement and "migrating" not in seen:
            seen["migrating"] = _settings(cursor)

    failure: list[BaseException] = []

    def upgrade() -> None:
        try:
            alembic.command.upgrade(config, "head")
        except BaseException as error:  # raised again by the test once the thread ended
            failure.append(error)

    migration = threading.Thread(target=upgrade, name="second deploy")
    event.listen(Engine, "before_cursor_execute", record)
    try:
        with psycopg.connect(database_url, autocommit=True) as holder:
            assert holder.execute("SHOW lock_timeout").fetchone() == (DEFAULT_TIMEOUT,)
            holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
            migration.start()
            deadline = time.monotonic() + WAIT_FOR_WAITER_S
            while _advisory_lock_waiters(holder) == 0:
                assert migration.is_alive(), f"did not wait for the lock: {failure}"
                assert time.monotonic() < deadline, "never asked for the lock"
                time.sleep(0.05)
            time.sleep(HOLD_PAST_DEFAULT_TIMEOUT_S)
            assert migration.is_alive(), f"gave up waiting for the lock: {failure}"
            holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
    finally:
        # Closing the holder released the lock in any case: let the migration finish.
        if migration.ident is not None:
            migration.join(timeout=60)
        event.remove(Engine, "before_cursor_execute", record)

    assert not migration.is_alive()
    if failure:
        raise failure[0]
    assert seen == {"asking for the lock": ("0", "0"), "migrating": ("10s", "5min")}
    # The newest revision, whatever its number: a new migration does not edit this test.
    head = ScriptDirectory.from_config(config).get_current_head()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)
