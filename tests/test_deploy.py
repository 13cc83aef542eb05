"""The ways Janus is started are run as written: render.yaml's pre-deploy and start commands on
a fresh database, and `make run PORT=...`, so neither can drift from the code."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import alembic.config
import psycopg
import pytest
import requests
import yaml
from alembic.script import ScriptDirectory
from psycopg import sql

from devtools.ports import free_port
from tests.conftest import REPO_ROOT, unique_name, url_for_database
from tests.support.secrets import SECRET

VENV_BIN = REPO_ROOT / ".venv" / "bin"
START_TIMEOUT_S = 60


def _blueprint() -> dict[str, Any]:
    blueprint: dict[str, Any] = yaml.safe_load((REPO_ROOT / "render.yaml").read_text())
    return blueprint


def _web_service() -> dict[str, Any]:
    webs: list[dict[str, Any]] = [
        service for service in _blueprint()["services"] if service["type"] == "web"
    ]
    [web] = webs
    return web


def _blueprint_env(service: Mapping[str, Any], database_url: str) -> dict[str, str]:
    """The environment Render gives the service: its values, the database's URL, and a
    generated service token."""
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(Path.home())}
    for variable in service["envVars"]:
        if "value" in variable:
            env[variable["key"]] = str(variable["value"])
        elif variable.get("generateValue"):
            env[variable["key"]] = "generated-" + "x" * 32
        elif "fromDatabase" in variable:
            env[variable["key"]] = database_url
    return env


@pytest.fixture
def empty_database(postgres_server_url: str) -> Iterator[str]:
    """A database with nothing in it, as Render's is before the first deploy; dropped after."""
    name = unique_name("render")
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_for_database(postgres_server_url, name)
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def _serving(command: str, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in the repository (its own process group); stopped with SIGTERM after."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            shell=True,
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> requests.Response:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            # A connection is accepted before a worker has booted to answer it: wait for one.
            return requests.get(url, timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered:\n{log.read_text(errors='replace')[-3000:]}")


def test_the_blueprint_has_what_render_needs() -> None:
    web = _web_service()
    assert web["runtime"] == "python"
    assert web["preDeployCommand"] == "alembic upgrade head"
    # The Procfile's web command is the start command.
    procfile = dict(
        line.split(": ", 1) for line in (REPO_ROOT / "Procfile").read_text().splitlines() if line
    )
    assert web["startCommand"] == procfile["web"]
    assert procfile["release"] == web["preDeployCommand"]
    assert web["healthCheckPath"] == "/health/ready"
    [database] = _blueprint()["databases"]
    wired = {
        variable["key"]: variable["fromDatabase"]
        for variable in web["envVars"]
        if "fromDatabase" in variable
    }
    assert wired == {"DATABASE_URL": {"name": database["name"], "property": "connectionString"}}
    keys = {variable["key"] for variable in web["envVars"]}
    # Every setting Janus reads, with its default, so the Blueprint is where they are changed.
    assert {"WEB_CONCURRENCY", "JANUS_THREADS", "JANUS_POOL_SIZE", "JANUS_LOG_LEVEL"} <= keys
    assert {name for name in keys if name.startswith("JANUS_")} == _janus_settings()


@pytest.mark.parametrize(
    ("name", "last_line"),
    [("janus-prune", "pruned 0 tenant buckets full again"), ("janus-maintain", "jobs has ")],
)
def test_the_blueprints_cron_jobs_run_against_the_database(
    empty_database: str, name: str, last_line: str
) -> None:
    [cron] = [service for service in _blueprint()["services"] if service["name"] == name]
    web = _web_service()
    assert cron["type"] == "cron" and cron["buildCommand"] == web["buildCommand"]
    assert cron["startCommand"] == f"janus {name.removeprefix('janus-')}"
    env = _blueprint_env(cron, empty_database)
    # The settings of the partitions of jobs are the web service's, as the migration read them.
    web_env = _blueprint_env(web, empty_database)
    assert {k: v for k, v in env.items() if k.startswith("JANUS_JOBS_")} == {
        k: v for k, v in web_env.items() if k.startswith("JANUS_JOBS_") and k in env
    }
    subprocess.run(
        shlex.split(web["preDeployCommand"]), cwd=REPO_ROOT, env=env, check=True, timeout=120
    )

    done = subprocess.run(
        shlex.split(cron["startCommand"]),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(last_line), done.stdout


def _janus_settings() -> set[str]:
    """The JANUS_* variables janus/settings.py reads."""
    return set(re.findall(r'"(JANUS_[A-Z_]+)"', (REPO_ROOT / "janus" / "settings.py").read_text()))


def test_the_blueprints_commands_migrate_a_new_database_and_serve(
    empty_database: str, tmp_path: Path
) -> None:
    web = _web_service()
    port = free_port()
    env = {**_blueprint_env(web, empty_database), "PORT": str(port)}

    migrated = subprocess.run(
        web["preDeployCommand"],
        shell=True,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")[-3000:]
    head = ScriptDirectory.from_config(alembic.config.Config(str(REPO_ROOT / "alembic.ini")))
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head.get_current_head(),
        )

    log = tmp_path / "render-start.log"
    with _serving(web["startCommand"], env, log) as process:
        health = _wait_for(f"http://127.0.0.1:{port}{web['healthCheckPath']}", process, log)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        # The generated service token guards everything but the health checks.
        guarded = requests.get(f"http://127.0.0.1:{port}/dashboard/quotas", timeout=5)
        assert guarded.status_code == 401
    assert "Traceback" not in log.read_text(errors="replace")


def test_make_run_serves_on_the_port_it_is_given(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("PORT", None)
    # What the terminal shows, not a log: `make run` prints the demo's new key on purpose
    # (tests/support/secrets.py searches every *.log of the run for a secret).
    shown = tmp_path / "make-run.out"
    command = f"make --no-print-directory run PORT={shlex.quote(str(port))}"
    with _serving(command, env, shown) as process:
        health = _wait_for(f"http://127.0.0.1:{port}/health", process, shown)
        assert health.status_code == 200
    output = shown.read_text(errors="replace")
    assert f"serving on http://127.0.0.1:{port}" in output
    # The key's secret once, on the line a person pastes; gunicorn's lines never hold it.
    [key_line] = [line for line in output.splitlines() if SECRET.search(line)]
    assert key_line.startswith("export JANUS_API_KEY=janus_")
