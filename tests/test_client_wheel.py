"""Issue 26's done-when: the client's wheel installs into an empty virtualenv without
falcon, psycopg, gunicorn or alembic, and its tests pass there, against the real service.

One test, one server: the wheel is built from a copy of clients/python (the checkout stays
as it was, and two runs side by side build apart), installed with the pytest and httpx
pinned in requirements-dev.txt from the package index, and its suite run from that
virtualenv, whose janus_client is the wheel's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO_ROOT, GunicornServer
from tests.support.client_suite import CLIENT, SERVER, run_client_suite

SERVER_ONLY = ("falcon", "psycopg", "gunicorn", "alembic")
# What the empty virtualenv gets besides the wheel: the suite's runner, and the client's
# one dependency at the version the project pins.
SUITE_NEEDS = ("pytest", "httpx")
INSTALL_TIMEOUT_S = 300


def pinned(name: str) -> str:
    """`name==version` as requirements-dev.txt pins it."""
    text = (REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(name)}==\S+", text, re.MULTILINE)
    assert found is not None, f"requirements-dev.txt pins no {name}"
    return found.group(0)


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )


def _ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return run.stdout


@pytest.mark.parametrize("gunicorn_server", [SERVER], indirect=True)
def test_the_wheel_installs_alone_and_its_tests_pass_there(
    gunicorn_server: GunicornServer, db: psycopg.Connection, tmp_path: Path
) -> None:
    source = tmp_path / "janus-client"
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__")
    )
    _ok(_run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, source))
    [wheel] = tmp_path.glob("janus_client-*.whl")
    venv = tmp_path / "venv"
    _ok(_run(sys.executable, "-m", "venv", venv))
    python = venv / "bin" / "python"
    needs = [pinned(name) for name in SUITE_NEEDS]
    _ok(_run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, *needs))

    for module in SERVER_ONLY:
        # Not from the checkout, where alembic/ (the migrations) would be found.
        found = _run(python, "-c", f"import {module}", cwd=tmp_path)
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, module
    where = _ok(_run(python, "-c", "import janus_client; print(janus_client.__file__)", cwd=CLIENT))
    assert Path(where.strip()).is_relative_to(venv), where
    run = run_client_suite(python, gunicorn_server, db)

    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-4000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
