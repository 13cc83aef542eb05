"""One service under gunicorn for the worker runtime's tests, shared by the session: its own
database (a copy of the migrated template), two workers, users made per test.

A pytest plugin (tests/conftest.py registers it): `worker_service` is the server, `worker_db`
an autocommit connection to its database. Also what those tests share: submitting jobs over
HTTP, reading their states back, and waiting for a condition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests

from devtools.service import Service
from tests.conftest import fault_lines, migrated_database

WORKERS = 2
WAIT_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def worker_service_database(postgres_server_url: str, template_database: str) -> Iterator[str]:
    """The URL of a migrated database of the worker tests' own, dropped at the end."""
    with migrated_database(postgres_server_url, template_database, "worker_runtime") as url:
        yield url


@pytest.fixture(scope="session")
def worker_service(
    worker_service_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The service on that database; its log must hold no error line when the session ends."""
    log_path: Path = tmp_path_factory.mktemp("worker-service") / "gunicorn.log"
    server = Service.start(worker_service_database, log_path, workers=WORKERS)
    try:
        yield server
    finally:
        server.stop()
    assert fault_lines(server.log()) == [], server.log()[-5000:]


@pytest.fixture
def worker_db(worker_service_database: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the worker service's database."""
    with psycopg.connect(worker_service_database, autocommit=True) as conn:
        yield conn


def submit_jobs(
    server: Service, user: UUID, payloads: Sequence[dict[str, Any]], cost: int = 1
) -> list[str]:
    """Submit one job per payload (openai: `cost`) in a partial batch; all must be accepted."""
    jobs: list[dict[str, Any]] = [
        {"tenant_id": "t", "priority": 5, "dependencies": {"openai": cost}, "payload": payload}
        for payload in payloads
    ]
    answer = requests.post(
        f"{server.url}/system/jobs/batch",
        json={"batch_name": "worker", "jobs": jobs},
        headers={"X-User-ID": str(user)},
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == len(jobs), answer.text
    return [result["job_id"] for result in answer.json()["results"]]


def unfinished(db: psycopg.Connection, user: UUID) -> int:
    """The user's jobs still queued, waiting or running."""
    row = db.execute(
        "SELECT count(*) FROM jobs"
        " WHERE user_id = %s AND state IN ('queued', 'waiting', 'running')",
        [user],
    ).fetchone()
    assert row is not None
    return int(row[0])


def states(db: psycopg.Connection, user: UUID) -> dict[str, tuple[str, int, Any, str | None]]:
    """Each of the user's jobs by id: (state, attempts, result, error)."""
    rows = db.execute(
        "SELECT job_id::text, state, attempts, result, error FROM jobs WHERE user_id = %s",
        [user],
    ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def wait_for(done: Callable[[], bool], timeout_s: float = WAIT_TIMEOUT_S) -> None:
    """Poll `done()` every 50 ms until it is true; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"still not done after {timeout_s:g} s")
        time.sleep(0.05)
