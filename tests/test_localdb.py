"""The database side of the test setup: the migrated template, isolated copies, the local server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from devtools import localdb
from devtools.ports import free_port


def test_each_database_is_a_migrated_copy_of_the_template(db: psycopg.Connection) -> None:
    """The tables and the admission functions the service relies on are there from the start."""
    tables = {
        name
        for (name,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert {"users", "configs", "token_buckets", "jobs"} <= tables
    # The service calls admit_jobs_once, which calls admit_jobs.
    functions = {
        name
        for (name,) in db.execute(
            "SELECT proname FROM pg_proc WHERE proname IN ('admit_jobs', 'admit_jobs_once')"
        )
    }
    assert functions == {"admit_jobs", "admit_jobs_once"}
    assert db.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_two_test_databases_do_not_see_each_other(
    database_url: str, create_database: Callable[[], str]
) -> None:
    """A user written to one database is not in another made from the same template."""
    other_url = create_database()
    assert other_url != database_url
    with (
        psycopg.connect(database_url, autocommit=True) as mine,
        psycopg.connect(other_url, autocommit=True) as other,
    ):
        mine.execute("INSERT INTO users (name) VALUES ('only-here')")
        assert mine.execute("SELECT count(*) FROM users").fetchone() == (1,)
        assert other.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_ensure_running_is_idempotent_and_stop_keeps_the_data(tmp_path: Path) -> None:
    """A second call reuses the running server; after stop, a start finds the data again."""
    data_dir = tmp_path / "pgdata"
    port = free_port()
    try:
        url = localdb.ensure_running(data_dir, port)
        assert url == f"postgresql://postgres@127.0.0.1:{port}/janus"
        with psycopg.connect(url, autocommit=True) as conn:
            started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
            conn.execute("CREATE TABLE kept (id int)")

        assert localdb.ensure_running(data_dir, port) == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT pg_postmaster_start_time()").fetchone() == started
        with pytest.raises(localdb.LocalDbError, match="already runs on port"):
            localdb.ensure_running(data_dir, free_port())

        localdb.stop(data_dir)
        localdb.stop(data_dir)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()

        assert localdb.ensure_running(data_dir, port) == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)
    finally:
        localdb.stop(data_dir)
