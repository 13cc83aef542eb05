"""The client (clients/python) over real HTTP against the real service under gunicorn: its
own suite, every call of JanusClient and AsyncJanusClient, run from the project's venv
(tests/test_client_wheel.py runs it again from the client's wheel alone)."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import GunicornServer
from tests.support.client_suite import SERVER, run_client_suite


@pytest.mark.parametrize("gunicorn_server", [SERVER], indirect=True)
def test_the_clients_suite_passes_against_the_service(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    run = run_client_suite(Path(sys.executable), gunicorn_server, db)

    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-4000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
