"""Issue 25's smaller defences, in process over real Postgres: `janus keys` from a shell, no
answer a cache may keep, a readiness check that reaches Postgres at most once a second, a
prune of every rejected job only when asked twice, a Blueprint database on Render's private
network only, and the service run as a role that cannot change the schema."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
import yaml
from psycopg import sql

from devtools.ports import free_port
from janus.admission import DatabaseRefused
from janus.cli import DEMO_CONFIG
from janus.db.health import check_database
from janus.db.pool import make_pool
from janus.keys import parse_key
from janus.resources.errors import add_error_handlers
from janus.resources.health import READY_FOR_S, ReadinessResource
from janus.settings import Settings
from tests.support.app import headers_for, post_json, serve_app
from tests.support.factories import activate_config, create_user, user_with_config
from tests.support.seed import SEED_SINGLE
from tests.test_cli import REPO_ROOT, Cli, cli

__all__ = ["cli"]  # the fixture, from test_cli

LIMITS = {"openai": {"capacity": 10, "refill_per_second": 0}}


def test_keys_are_made_listed_and_revoked_from_a_shell(cli: Cli, db: psycopg.Connection) -> None:
    user = user_with_config(db, LIMITS)

    made = cli("keys", "create", user, "--name", "nightly", "--scope", "work", "--scope", "read")

    key = made.ok().strip()
    credential = parse_key(key)
    assert credential is not None and credential.user_id == user
    listed = json.loads(cli("keys", "list", user, "--json").ok())["keys"]
    assert [(k["key_id"], k["scopes"], k["revoked_at"]) for k in listed] == [
        (credential.key_id, ["work", "read"], None)
    ]
    table = cli("keys", "list", user).ok()
    assert credential.key_id in table and key.rsplit("_", 1)[1] not in table
    said = cli("keys", "revoke", user, credential.key_id).ok()
    assert said == f"key {credential.key_id} of user {user} revoked\n"
    again = cli("keys", "revoke", user, credential.key_id).ok()
    assert again.endswith("was already revoked\n")
    missing = cli("keys", "revoke", user, "0" * 16)
    assert missing.status == 2 and f"user {user} has no key {'0' * 16}" in missing.err
    assert cli("keys", "create", user, "--name", "x", "--scope", "root").status == 2
    assert cli("user", "tag", user).ok().strip().isalnum()


def test_every_answer_but_the_pages_files_says_no_store(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    answers: dict[str, Any] = {
        "job": app_client.simulate_get("/dashboard/jobs", headers=headers_for(open_user)),
        "refused": app_client.simulate_get("/dashboard/jobs"),
        "health": app_client.simulate_get("/health"),
        "nowhere": app_client.simulate_get("/nowhere"),
    }
    for name, answer in answers.items():
        assert answer.headers["Cache-Control"] == "no-store", name
        assert answer.headers["Vary"] == "Authorization, X-User-ID", name
    page = app_client.simulate_get("/")
    assert page.headers["Cache-Control"] == "no-cache"


class Checks:
    """The real readiness check, through a pool of the test database or of a port nobody
    listens on, and the clock reading at each check made."""

    def __init__(self, up: Callable[[], None], down: Callable[[], None]) -> None:
        self.now = 100.0
        self.made: list[float] = []
        self.database_up = True
        self._up, self._down = up, down

    def check(self) -> None:
        """Check the database that is up or down, as `database_up` says."""
        self.made.append(self.now)
        (self._up if self.database_up else self._down)()

    def client(self, check: Callable[[], None] | None = None) -> falcon.testing.TestClient:
        """A client of /health/ready alone, on this clock."""
        app = falcon.App()
        add_error_handlers(app)
        app.add_route("/health/ready", ReadinessResource(check or self.check, lambda: self.now))
        return falcon.testing.TestClient(app)


@pytest.fixture
def checks(database_url: str) -> Iterator[Checks]:
    up = make_pool(Settings(database_url=database_url))
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/janus"
    down = make_pool(Settings(database_url=nowhere, pool_timeout_ms=100))
    up.open(wait=True)
    down.open(wait=False)
    try:
        yield Checks(partial(check_database, up), partial(check_database, down))
    finally:
        up.close()
        down.close()


def test_readiness_reaches_postgres_at_most_once_a_second(checks: Checks) -> None:
    client = checks.client()
    for _ in range(5):
        assert client.simulate_get("/health/ready").status_code == 200
    assert checks.made == [100.0]

    checks.database_up = False
    checks.now += READY_FOR_S
    for _ in range(3):
        failed = client.simulate_get("/health/ready")
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert checks.made == [100.0, 101.0]
    checks.database_up = True
    checks.now = 101.0 + READY_FOR_S - 0.01
    assert client.simulate_get("/health/ready").status_code == 503
    checks.now = 101.0 + READY_FOR_S
    assert client.simulate_get("/health/ready").status_code == 200
    assert checks.made == [100.0, 101.0, 102.0]


def test_a_readiness_success_stands_from_when_its_check_began(checks: Checks) -> None:
    def slow_check() -> None:
        checks.check()
        checks.now += 0.75

    client = checks.client(slow_check)
    assert client.simulate_get("/health/ready").status_code == 200
    checks.now = 100.0 + READY_FOR_S - 0.01
    assert client.simulate_get("/health/ready").status_code == 200
    assert checks.made == [100.0]
    # A second after the check began, though only a quarter of one after it ended.
    checks.now = 100.0 + READY_FOR_S
    checks.database_up = False
    assert client.simulate_get("/health/ready").status_code == 503
    assert checks.made == [100.0, 101.0]


def test_callers_during_a_readiness_check_share_its_outcome(checks: Checks) -> None:
    begun, finish = threading.Event(), threading.Event()

    def held_check() -> None:
        if checks.made:
            begun.set()
            assert finish.wait(timeout=10)
        checks.check()

    client = checks.client(held_check)
    assert client.simulate_get("/health/ready").status_code == 200
    checks.now += READY_FOR_S
    checks.database_up = False
    answers: list[int] = []

    def ask() -> None:
        answers.append(client.simulate_get("/health/ready").status_code)

    callers = [threading.Thread(target=ask) for _ in range(10)]
    callers[0].start()
    assert begun.wait(timeout=10)
    # The last success is a second old and a check is under way: the others wait for it.
    for caller in callers[1:]:
        caller.start()
    time.sleep(0.2)
    assert answers == [] and checks.made == [100.0]
    finish.set()
    for caller in callers:
        caller.join(timeout=10)
    # One check for all ten, against a database that does not answer: ten 503s.
    assert answers == [503] * 10
    assert checks.made == [100.0, 101.0]


def test_callers_behind_a_dead_database_wait_for_one_check_not_one_each() -> None:
    """On the real clock, with a pool that waits longer than READY_FOR_S for a connection
    that never comes: ten callers at once are answered by one check, its outcome already a
    second old when it ends, not by ten checks in a row."""
    wait_ms = int(READY_FOR_S * 1000) + 200
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/janus"
    down = make_pool(Settings(database_url=nowhere, pool_timeout_ms=wait_ms))
    down.open(wait=False)
    made: list[float] = []

    def check() -> None:
        made.append(time.monotonic())
        check_database(down)

    app = falcon.App()
    add_error_handlers(app)
    app.add_route("/health/ready", ReadinessResource(check))
    client = falcon.testing.TestClient(app)
    answers: list[int] = []
    callers = [
        threading.Thread(
            target=lambda: answers.append(client.simulate_get("/health/ready").status_code)
        )
        for _ in range(10)
    ]
    try:
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=30)
    finally:
        down.close()
    assert answers == [503] * 10
    assert len(made) == 1


def test_a_readiness_check_that_raised_is_made_again_by_the_next_caller(checks: Checks) -> None:
    def refused_once() -> None:
        checks.check()
        if len(checks.made) == 1:
            raise DatabaseRefused("permission denied")

    client = checks.client(refused_once)
    assert client.simulate_get("/health/ready").status_code == 500
    assert client.simulate_get("/health/ready").status_code == 200
    assert checks.made == [100.0, 100.0]


def test_pruning_every_rejected_job_needs_yes(cli: Cli) -> None:
    refused = cli("prune", "--rejected-days", "0")

    assert refused.status == 2
    assert "deletes every rejected job of every user" in refused.err
    assert (
        "pruned 0 rejected jobs older than 0 days"
        in cli("prune", "--rejected-days", "0", "--yes").ok()
    )


def test_the_blueprints_database_takes_no_connection_from_outside_render() -> None:
    blueprint = yaml.safe_load((REPO_ROOT / "render.yaml").read_text())
    [database] = blueprint["databases"]

    assert database["ipAllowList"] == []


_ROLE_BLOCK = re.compile(r"<!-- role: janusweb -->\n```sql\n(.*?)```", re.S)


def test_the_service_runs_as_the_documented_role_that_cannot_change_the_schema(
    postgres_server_url: str, database_url: str, db: psycopg.Connection
) -> None:
    [block] = _ROLE_BLOCK.findall((REPO_ROOT / "docs" / "operations.md").read_text())
    # Roles belong to the whole server: this run's own name, dropped after.
    role = f"janusweb_{uuid4().hex[:8]}"
    db.execute(block.replace("janusweb", role))
    parts = urlsplit(database_url)
    as_role = urlunsplit(parts._replace(netloc=f"{role}:change-me@{parts.hostname}:{parts.port}"))
    try:
        user = user_with_config(db, DEMO_CONFIG["dependencies"])
        with serve_app(Settings(database_url=as_role)) as client:
            answer = post_json(client, "/dashboard/jobs", user, SEED_SINGLE)
        assert answer.status_code == 202, answer.text
        with psycopg.connect(as_role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE not_allowed (x int)")
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_config_of_too_many_dependencies_is_a_400_naming_the_limit(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    many = {f"dep-{n}": {"capacity": 1, "refill_per_second": 1} for n in range(1001)}

    answer = app_client.simulate_put(
        "/dashboard/config", json={"dependencies": many}, headers=headers_for(open_user)
    )

    assert answer.status_code == 400, answer.text
    assert answer.json["errors"] == {"dependencies": ["Longer than maximum length 1000."]}


def test_prune_keeps_each_users_newest_versions_and_pause_changes(
    cli: Cli, db: psycopg.Connection
) -> None:
    user = create_user(db)
    for version in range(1, 106):
        # Version 3 pauses the user and version 4 resumes it: two pause changes that name them.
        activate_config(db, user, LIMITS, paused=version == 3)

    said = cli("prune").ok().splitlines()

    assert (
        "pruned 0 pause changes beyond each user's newest 1000 and 3 config versions" in (said[-2])
    )
    assert _versions(db, user)[:4] == [3, 4, 6, 7]  # 1, 2 and 5 pruned; 3 and 4 named
    cli("prune", "--keep-pause-changes", "1", "--keep-config-versions", "100").ok()
    assert _versions(db, user)[:3] == [4, 6, 7]
    assert len(_versions(db, user)) == 101
    rolled_back = cli("config", "activate", user, 1)
    assert rolled_back.status != 0 and "version 1" in rolled_back.err
    assert cli("config", "activate", user, 4).status == 0


def _versions(db: psycopg.Connection, user: UUID) -> list[int]:
    return [
        v
        for (v,) in db.execute(
            "SELECT version FROM configs WHERE user_id = %s ORDER BY version", [user]
        )
    ]


def test_a_page_of_config_versions_stops_at_a_mebibyte_of_configs(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = create_user(db)
    big = {f"{n:04d}-" + "d" * 95: {"capacity": 1, "refill_per_second": 1} for n in range(1000)}
    for _ in range(10):
        activate_config(db, user, big)

    pages: list[list[int]] = []
    cursor = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        answer = app_client.simulate_get(
            "/dashboard/config/versions", params=params, headers=headers_for(user)
        )
        assert answer.status_code == 200, answer.text
        pages.append([version["version"] for version in answer.json["versions"]])
        assert len(answer.text) <= 1024 * 1024 + 200_000  # a page's own fields beside
        cursor = answer.json["next"]
        if cursor is None:
            break

    assert [version for page in pages for version in page] == list(range(10, 0, -1))
    assert len(pages) >= 2 and all(len(page) < 10 for page in pages)
