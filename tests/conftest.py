"""Fixtures over a real PostgreSQL: one migrated template per session, one database per test.

The server is TEST_DATABASE_URL when it is set (its user must be allowed to CREATE DATABASE);
otherwise an embedded PostgreSQL started for the session in a temporary directory, so
`pytest` needs nothing running beforehand. Migrations run once, into a template database;
each test gets `CREATE DATABASE ... TEMPLATE` of it, a copy in milliseconds, dropped after.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import alembic.command
import alembic.config
import falcon.testing
import psycopg
import pytest
from psycopg import sql

from devtools import localdb
from devtools.ports import free_port
from devtools.service import Service, ServiceError
from janus.settings import Settings, normalize_database_url
from tests.support.app import SERVICE_TOKEN, serve_app

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKERS = 4


def url_for_database(server_url: str, name: str) -> str:
    """`server_url` with its database replaced by `name`."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def unique_name(prefix: str) -> str:
    """A database name no other test or session uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A URL on a server where the tests may create and drop databases."""
    given = os.environ.get("TEST_DATABASE_URL", "").strip()
    if given:
        yield normalize_database_url(given)
        return
    workdir = Path(tempfile.mkdtemp(prefix="janus-test-"))
    data_dir = workdir / "pgdata"
    try:
        yield localdb.ensure_running(data_dir, free_port())
    finally:
        localdb.stop(data_dir)
        shutil.rmtree(workdir, ignore_errors=True)


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


def _drop_database(server_url: str, name: str) -> None:
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    """The name of a database migrated to head and marked as a template, dropped at the end."""
    name = unique_name("janus_template")
    with _admin(postgres_server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with pytest.MonkeyPatch.context() as env:
            # alembic/env.py reads DATABASE_URL, as the Procfile's release command does.
            env.setenv("DATABASE_URL", url_for_database(postgres_server_url, name))
            alembic.command.upgrade(alembic.config.Config(str(REPO_ROOT / "alembic.ini")), "head")
        with _admin(postgres_server_url) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(name)))
        yield name
    finally:
        with _admin(postgres_server_url) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name))
            )
        _drop_database(postgres_server_url, name)


@contextmanager
def migrated_database(server_url: str, template: str, prefix: str = "test") -> Iterator[str]:
    """The URL of a new database made from `template` (template_database: migrated to head),
    named after `prefix`; dropped on exit."""
    name = unique_name(prefix)
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    try:
        yield url_for_database(server_url, name)
    finally:
        _drop_database(server_url, name)


@pytest.fixture
def create_database(
    postgres_server_url: str, template_database: str
) -> Iterator[Callable[[], str]]:
    """Make fresh migrated databases: `create_database()` returns a URL; all dropped after."""
    with ExitStack() as made:

        def create() -> str:
            return made.enter_context(migrated_database(postgres_server_url, template_database))

        yield create


@pytest.fixture
def database_url(create_database: Callable[[], str]) -> str:
    """The postgresql:// URL of a fresh, migrated database of this test's own."""
    return create_database()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's database, for setting up and checking state."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def app_client(database_url: str) -> Iterator[falcon.testing.TestClient]:
    """The real app, default settings, in-process over a pool on this test's database."""
    with serve_app(Settings(database_url=database_url)) as client:
        yield client


@pytest.fixture
def token_client(database_url: str) -> Iterator[falcon.testing.TestClient]:
    """The real app in-process as app_client, with SERVICE_TOKEN as its service token."""
    with serve_app(Settings(database_url=database_url, service_token=SERVICE_TOKEN)) as client:
        yield client


# The real service under gunicorn, started as the Procfile's `web` line starts it: its `url`,
# `process`, `log()`, `worker_pids()` and `stop()`.
GunicornServer = Service
StartGunicorn = Callable[..., GunicornServer]


def _start_gunicorn(
    database_url: str, log_path: Path, workers: int, env: Mapping[str, str]
) -> GunicornServer:
    """Start gunicorn with devtools.service; a server that does not come up fails the test."""
    try:
        return Service.start(database_url, log_path, workers=workers, env=env)
    except ServiceError as error:
        pytest.fail(str(error), pytrace=False)


# A line of gunicorn's log that reports a fault: an error, a traceback, or psycopg's "error
# ignored" (an expected outcome mistaken for one).
_FAULT_LINE = re.compile(r"\[(ERROR|CRITICAL)\]|Traceback|error ignored")


def fault_lines(log: str) -> list[str]:
    """The lines of a gunicorn log that report a fault."""
    return [line for line in log.splitlines() if _FAULT_LINE.search(line)]


@pytest.fixture
def start_gunicorn(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartGunicorn]:
    """Start the service on this test's database: `start_gunicorn(workers=4, env={...})`.

    Every server started is stopped (SIGTERM, then wait) when the test ends, and its log must
    then hold no error line: an expected outcome (a 401, a 503 while Postgres is down) is not
    an error. A test that causes real ones is marked `logs_errors`.
    """
    servers: list[GunicornServer] = []

    def start(
        workers: int = DEFAULT_WORKERS, env: Mapping[str, str] | None = None
    ) -> GunicornServer:
        log_path = tmp_path / f"gunicorn-{len(servers)}.log"
        server = _start_gunicorn(database_url, log_path, workers, env or {})
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
    if request.node.get_closest_marker("logs_errors") is None:
        for server in servers:
            assert fault_lines(server.log()) == [], server.log()[-5000:]


@pytest.fixture
def gunicorn_server(
    request: pytest.FixtureRequest, start_gunicorn: StartGunicorn
) -> GunicornServer:
    """The service on this test's database with DEFAULT_WORKERS workers.

    Other workers or extra environment through indirect parametrization:
    `@pytest.mark.parametrize("gunicorn_server", [{"workers": 2, "env": {...}}], indirect=True)`.
    """
    options: Mapping[str, object] = getattr(request, "param", {})
    return start_gunicorn(**options)


# Fixtures of tests/support any module may use: the users of fixtures.py (open_user,
# openai_user, seed_once_user, ten_token_user), browser.py's headless Chromium (browser) and
# worker_service.py's service for the worker runtime's tests (worker_service, worker_db); and
# secrets.py's check, at the run's end, that no log holds an API key's secret.
pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.browser",
    "tests.support.secrets",
    "tests.support.worker_service",
]
