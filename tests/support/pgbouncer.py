"""Janus behind PgBouncer in the tests and the fault scenarios (devtools/pgbouncer.py starts it)."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from janus.db.pool import server_settings
from janus.settings import Settings


def give_settings_to_database(database_url: str, settings: Settings | None = None) -> None:
    """ALTER DATABASE ... SET the settings Janus sends in `options` (janus.db.pool), which
    PgBouncer cannot pass on: docs/operations.md gives them to the role, the same way.

    New sessions of the database have them; `settings` defaults to Janus's defaults.
    """
    name = urlsplit(database_url).path.lstrip("/")
    chosen = settings or Settings(database_url=database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for setting, value in server_settings(chosen).items():
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
                )
            )
