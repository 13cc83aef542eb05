"""A DATABASE_URL libpq cannot parse stops every way in (the pool, the CLI's connection, the
migrations) with the same line, which never holds the password.

janus.settings reads DATABASE_URL without a driver; janus.db.urls checks it where Janus
connects. gunicorn's master (tests/test_isolation.py) and the CLI's exit status
(tests/test_cli.py) are tested with them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from janus.db.accounts import operator_transaction
from janus.db.pool import make_pool
from janus.settings import Settings, SettingsError
from tests.conftest import REPO_ROOT

MESSAGE = "DATABASE_URL cannot be parsed (check the percent-encoding of user and password)"


@pytest.fixture(params=["pw%zz-", "pw secret-"], ids=["bad percent escape", "space"])
def password(request: pytest.FixtureRequest) -> str:
    """A password pasted unencoded, as operators do, with a part that is secret."""
    prefix: str = request.param
    return prefix + secrets.token_hex(6)


def _url(password: str) -> str:
    return f"postgresql://janus:{password}@127.0.0.1:1/janus"


def test_the_pool_refuses_it(password: str) -> None:
    with pytest.raises(SettingsError) as refused:
        make_pool(Settings(database_url=_url(password)))

    assert str(refused.value) == MESSAGE
    assert refused.value.__cause__ is None and refused.value.__context__ is None


def test_the_operators_connection_refuses_it(password: str) -> None:
    with pytest.raises(SettingsError) as refused, operator_transaction(_url(password)):
        pass

    assert str(refused.value) == MESSAGE
    assert refused.value.__cause__ is None and refused.value.__context__ is None


def test_the_migrations_refuse_it(password: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env={**env, "DATABASE_URL": _url(password)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert MESSAGE in output
    assert password.split("-", 1)[1] not in output, output
