"""Running the client's own tests (clients/python/tests) against a real Janus, with a given
Python: the project's, or that of a virtualenv holding only the client's wheel.

The suite takes the service and its users from the environment (its conftest.py says
what): these helpers make the users through the real SQL (fresh users, API keys of every
scope) and run pytest in a subprocess, so the suite sees the service only over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg

from janus.db.keys import create_key
from janus.keys import SCOPES
from tests.conftest import REPO_ROOT, GunicornServer
from tests.support.app import SERVICE_TOKEN
from tests.support.factories import create_user

CLIENT = REPO_ROOT / "clients" / "python"
# Fresh users the suite may take, one per test: more than it has tests of each kind.
KEYED_USERS = 120
KEYLESS_USERS = 10
# The whole suite takes about 25 seconds alone on two cores.
SUITE_TIMEOUT_S = 600
# How gunicorn serves the suite: with a service token, so that every credential the client
# sends (a key alone, a user id with the token) is proven; two workers, as the machines
# running the suite have two cores.
SERVER = {"workers": 2, "env": {"JANUS_SERVICE_TOKEN": SERVICE_TOKEN}}


def prepared_users(db: psycopg.Connection) -> str:
    """JANUS_TEST_USERS for the suite: keys of fresh users, and fresh users without one."""
    keys = [
        create_key(db, create_user(db, f"client-{n}"), "client tests", SCOPES, None)[0].text
        for n in range(KEYED_USERS)
    ]
    ids = [str(create_user(db, f"client-keyless-{n}")) for n in range(KEYLESS_USERS)]
    return json.dumps({"api_keys": keys, "user_ids": ids})


def run_client_suite(
    python: Path, server: GunicornServer, db: psycopg.Connection
) -> subprocess.CompletedProcess[str]:
    """Run clients/python/tests with `python` (from clients/python, so its pytest settings
    apply) against `server`; its output is in the result."""
    env = {
        **os.environ,
        "JANUS_URL": server.url,
        "JANUS_TEST_USERS": prepared_users(db),
        "JANUS_SERVICE_TOKEN": SERVICE_TOKEN,
    }
    for inherited in ("JANUS_API_KEY", "JANUS_USER_ID", "PYTHONPATH"):
        env.pop(inherited, None)
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "tests"],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
