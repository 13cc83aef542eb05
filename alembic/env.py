"""Run the migrations against DATABASE_URL, safely even when two deploys migrate at once."""

from __future__ import annotations

import logging.config

from sqlalchemy import create_engine, text

from alembic import context
from janus.db.urls import parsable_database_url
from janus.settings import database_url_from_env, sqlalchemy_url

# Any fixed number; it names the lock that serialises concurrent `alembic upgrade` runs.
MIGRATION_LOCK_ID = 0x4A414E5553

config = context.config
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _migration_url() -> str:
    """alembic.ini's sqlalchemy.url when set (the tests set it), else DATABASE_URL.

    DATABASE_URL is checked as libpq will read it first, since libpq's error would quote the
    password.
    """
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    parsable_database_url(database_url_from_env())
    return sqlalchemy_url()


def run_migrations_online() -> None:
    """Migrate with a session-level advisory lock held, one transaction per migration."""
    engine = create_engine(_migration_url())
    with engine.connect() as connection:
        # A second deploy waits for the first one's migrations however long they take, so no
        # timeout (not even a role's or database's default) may cut the wait for the lock.
        connection.execute(text("SET lock_timeout = 0"))
        connection.execute(text("SET statement_timeout = 0"))
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        # The migrations themselves fail fast instead of queueing behind live traffic, and
        # never hang a deploy.
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SET statement_timeout = '5min'"))
        connection.commit()
        try:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported: run against DATABASE_URL.")
run_migrations_online()
