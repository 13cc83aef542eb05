"""The operator CLI, run for real on a migrated Postgres: in-process and as `python -m janus`."""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from janus.cli import DEMO_CONFIG, DEMO_USER_NAME, main
from janus.db import accounts
from janus.schemas.requests import ConfigSchema
from tests.conftest import StartGunicorn
from tests.support.app import headers_for, post_json
from tests.support.factories import create_user, stored_buckets
from tests.support.history import insert_jobs
from tests.support.seed import SEED_BATCH, SEED_SINGLE

REPO_ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_USER = "2dad64a8-3f87-4d6e-9b4c-1cfa5917fd4b"

# Refill 0 keeps every level exactly where the test put it.
TWO_DEPENDENCIES = {
    "dependencies": {
        "openai": {"capacity": 6, "refill_per_second": 0},
        "stripe": {"capacity": 4, "refill_per_second": 0},
    }
}


@dataclass
class Run:
    """What one CLI invocation did."""

    status: int
    out: str
    err: str

    def ok(self) -> str:
        """The output of a run that succeeded and wrote nothing to stderr."""
        assert self.status == 0 and self.err == "", self
        return self.out


Cli = Callable[..., Run]
SetConfig = Callable[[object, Any], Run]


@pytest.fixture
def cli(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """Run `janus ARGS...` in-process against this test's database: `cli("pause", user_id)`."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    return functools.partial(run_in_process, capsys)


def run_in_process(capsys: pytest.CaptureFixture[str], *args: object) -> Run:
    """Run `janus ARGS...` in this process, as DATABASE_URL says; what it printed."""
    capsys.readouterr()
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return Run(status, captured.out, captured.err)


@pytest.fixture
def config_set(cli: Cli, tmp_path: Path) -> SetConfig:
    """Run `janus config set USER FILE` of a file holding `config`: JSON of it, or the text
    itself when it is a string: `config_set(user_id, {"dependencies": {}})`."""

    def run(user_id: object, config: Any) -> Run:
        path = tmp_path / "config.json"
        path.write_text(config if isinstance(config, str) else json.dumps(config))
        return cli("config", "set", user_id, path)

    return run


def feed_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """Give the in-process CLI `text` on stdin, as `janus config set USER -` reads it."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def run_module(
    *args: str, database_url: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> Run:
    """Run `python -m janus ARGS...` as an operator would, in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "janus", *args],
        input=stdin,
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(REPO_ROOT),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(run: Run, status: int, *words: str) -> None:
    """The run failed with `status` and said so in one `janus: error:` line holding `words`."""
    assert run.status == status, run
    assert run.out == ""
    assert run.err.endswith("\n") and run.err.count("\n") == 1, run.err
    assert run.err.startswith("janus: error: ")
    assert "Traceback" not in run.err
    for word in words:
        assert word in run.err


def activate_config(
    db: psycopg.Connection, user_id: UUID, dependencies: dict[str, Any], **config: Any
) -> int:
    """Activate a config as `janus config set` would, without the CLI; returns the version."""
    loaded = ConfigSchema().load({"dependencies": dependencies, **config})
    return accounts.activate_config(db, user_id, loaded)


def user_with_config(
    db: psycopg.Connection, dependencies: dict[str, Any] | None = None, **config: Any
) -> UUID:
    """A user with a config of `dependencies` (TWO_DEPENDENCIES' plain buckets by default),
    plus `config`'s fields."""
    if dependencies is None:
        dependencies = TWO_DEPENDENCIES["dependencies"]
    user_id = create_user(db)
    activate_config(db, user_id, dependencies, **config)
    return user_id


def first_column(table: str) -> list[str]:
    """The first cell of each row of a table the CLI printed, its header left out."""
    return [line.split()[0] for line in table.splitlines()[1:]]


def shown_config(cli: Cli, user_id: UUID) -> dict[str, Any]:
    """What `janus config show` prints, parsed."""
    shown: dict[str, Any] = json.loads(cli("config", "show", user_id).ok())
    return shown


def assert_shown(cli: Cli, user_id: UUID, version: int, config: dict[str, Any]) -> None:
    """`janus config show` prints `config` as version `version`, with the moment it was
    activated, as GET /dashboard/config answers it."""
    shown = shown_config(cli, user_id)
    assert shown.pop("activated_at")
    assert shown == {"version": version, **config}


def configs_stored(db: psycopg.Connection) -> int:
    """How many config versions there are, of any user."""
    row = db.execute("SELECT count(*) FROM configs").fetchone()
    assert row is not None
    count: int = row[0]
    return count


def paused_flags(db: psycopg.Connection, user_id: UUID) -> list[tuple[int, bool, bool | None]]:
    """(version, is_active, paused) of every config of the user; paused None: left out."""
    return db.execute(
        "SELECT version, is_active, paused FROM configs WHERE user_id = %s ORDER BY version",
        [user_id],
    ).fetchall()


# --- user create ---


def test_user_create_prints_only_the_new_users_id(cli: Cli, db: psycopg.Connection) -> None:
    out = cli("user", "create", "Acme Corp").ok()
    user_id = UUID(out.strip())
    assert out == f"{user_id}\n"
    row = db.execute("SELECT name FROM users WHERE user_id = %s", [user_id]).fetchone()
    assert row == ("Acme Corp",)


@pytest.mark.parametrize("name", ["", "x" * 256, "nul\x00"])
def test_user_create_refuses_a_name_postgres_would_refuse(
    cli: Cli, db: psycopg.Connection, name: str
) -> None:
    assert_one_line_error(cli("user", "create", name), 2, "user name")
    assert db.execute("SELECT count(*) FROM users").fetchone() == (0,)


# --- user list and user delete ---


def test_user_list_shows_every_user_oldest_first_with_its_config(
    cli: Cli, db: psycopg.Connection
) -> None:
    acme = user_with_config(db)
    cli("pause", acme)
    bare = create_user(db, "Beta\nLabs")

    table = cli("user", "list").ok()

    lines = table.splitlines()
    assert lines[0].split() == ["user_id", "name", "created_at", "config", "paused"]
    assert first_column(table) == [str(acme), str(bare)]
    assert lines[1].split()[1] == "tester" and lines[1].split()[-2:] == ["1", "yes"]
    # A name that would break the table is shown escaped; no config shows as a dash.
    assert '"Beta\\nLabs"' in lines[2] and lines[2].split()[-2:] == ["-", "no"]


def test_user_list_finds_users_by_any_part_of_their_name_in_any_case(
    cli: Cli, db: psycopg.Connection
) -> None:
    acme = create_user(db, "Acme Corp")
    create_user(db, "Globex")
    create_user(db, "100% real")

    assert first_column(cli("user", "list", "--name", "ACME").ok()) == [str(acme)]
    # The text is matched literally: % and _ are not wildcards.
    assert len(cli("user", "list", "--name", "%").ok().splitlines()) == 2
    assert first_column(cli("user", "list", "--name", "nobody").ok()) == []


def test_user_delete_without_yes_says_what_it_would_delete_and_keeps_it(
    cli: Cli, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db)

    run = cli("user", "delete", user_id)

    assert_one_line_error(run, 2, str(user_id), "0 jobs", "1 config versions", "2 buckets", "--yes")
    assert db.execute("SELECT count(*) FROM users").fetchone() == (1,)


def test_user_delete_removes_the_user_with_its_configs_buckets_jobs_and_keys(
    cli: Cli, db: psycopg.Connection, app_client: falcon.testing.TestClient
) -> None:
    user_id = user_with_config(db)
    other = user_with_config(db)
    for owner in (user_id, other):
        answer = post_json(
            app_client, "/dashboard/jobs", owner, SEED_SINGLE, {"Idempotency-Key": "k"}
        )
        assert answer.status_code == 202

    out = cli("user", "delete", user_id, "--yes").ok()

    assert out == (
        f"deleted user {user_id} with 1 jobs (accepted and rejected, payloads included), "
        "1 config versions and 2 buckets\n"
    )
    for table in (
        "users",
        "configs",
        "config_dependencies",
        "token_buckets",
        "jobs",
        "idempotency_keys",
    ):
        owners = {row[0] for row in db.execute(f"SELECT user_id FROM {table}")}
        assert owners == {other}, table


def test_user_delete_of_an_unknown_user_fails_cleanly(cli: Cli) -> None:
    assert_one_line_error(cli("user", "delete", UNKNOWN_USER, "--yes"), 1, "unknown user")


# --- config set ---


def test_config_set_stores_version_1_then_2_and_reshapes_the_buckets(
    config_set: SetConfig, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    first = {
        "dependencies": {
            "openai": {"capacity": 10, "refill_per_second": 0},
            "anthropic": {"capacity": 10, "refill_per_second": 0},
            "stripe": {"capacity": 5, "refill_per_second": 0},
        }
    }
    assert config_set(user_id, first).ok() == "1\n"
    assert stored_buckets(db, user_id) == {
        "openai": (10, 0, 10),
        "anthropic": (10, 0, 10),
        "stripe": (5, 0, 5),
    }
    # As if jobs had spent some tokens: refill 0 keeps them there.
    spent = "UPDATE token_buckets SET tokens = %s WHERE user_id = %s AND dependency = %s"
    db.execute(spent, [8, user_id, "openai"])
    db.execute(spent, [2, user_id, "anthropic"])

    second = {
        "paused": True,
        "min_priority": 3,
        "priority_reserve": 0.5,
        "unknown_dependencies": "allow",
        "dependencies": {
            "openai": {"capacity": 4, "refill_per_second": 1.5},  # kept, capacity lowered
            "anthropic": {"capacity": 5, "refill_per_second": 0},  # kept, tokens fit
            "github": {"capacity": 7, "refill_per_second": 2},  # new
        },  # stripe removed
    }
    assert config_set(user_id, second).ok() == "2\n"

    assert stored_buckets(db, user_id) == {
        "openai": (4, Decimal("1.5"), 4),
        "anthropic": (5, 0, 2),
        "github": (7, 2, 7),
    }
    # Version 1 left `paused` out (None); version 2 set it.
    assert paused_flags(db, user_id) == [(1, False, None), (2, True, True)]
    row = db.execute(
        "SELECT min_priority, priority_reserve, unknown_dependencies FROM configs"
        " WHERE user_id = %s AND version = 2",
        [user_id],
    ).fetchone()
    assert row == (3, Decimal("0.5"), "allow")


def test_config_set_reads_stdin_and_fills_in_the_defaults(
    cli: Cli, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = create_user(db)
    document = json.dumps({"dependencies": {"openai": {"capacity": 3, "refill_per_second": 1}}})
    feed_stdin(monkeypatch, document)
    assert cli("config", "set", user_id, "-").ok() == "1\n"
    row = db.execute(
        "SELECT c.paused, u.paused, min_priority, priority_reserve, unknown_dependencies"
        "  FROM configs c JOIN users u USING (user_id)"
        " WHERE user_id = %s AND is_active",
        [user_id],
    ).fetchone()
    # `paused` left out: the version says nothing, and the user is not paused.
    assert row == (None, False, 1, Decimal("0.2"), "reject")


ADAPTIVE = {"decrease": 0.5, "floor": 0.1, "recovery_per_minute": 0.05}


def with_adaptive(adaptive: Any) -> dict[str, Any]:
    """A config whose one bucket, openai, has `adaptive` for its adaptive setting."""
    return {
        "dependencies": {"openai": {"capacity": 5, "refill_per_second": 1, "adaptive": adaptive}}
    }


# What `janus config set` refuses, by name: the file (a string is its text as it is, anything
# else is written as JSON) and the words its one line must hold.
REFUSED_CONFIGS: dict[str, tuple[Any, list[str]]] = {
    "invalid-json": ('{"dependencies": {', ["not valid JSON"]),
    "not-an-object": ("[1, 2]", ["JSON object"]),
    "unknown-field": ({"dependencies": {}, "colour": "red"}, ["colour", "Unknown field"]),
    "reserve-1": ({"dependencies": {}, "priority_reserve": 1}, ["priority_reserve"]),
    "capacity-0": (
        {"dependencies": {"openai": {"capacity": 0, "refill_per_second": 1}}},
        ["dependencies.openai.capacity"],
    ),
    "paused-yes": ({"dependencies": {}, "paused": "yes"}, ["paused", "Not a valid boolean"]),
    "no-dependencies": ({"paused": False}, ["dependencies", "Missing data"]),
    "negative-refill": (
        {"dependencies": {"openai": {"capacity": 1, "refill_per_second": -1}}},
        ["dependencies.openai.refill_per_second"],
    ),
    # What the API refuses in a body is refused alike.
    "duplicate-nested-key": (
        '{"dependencies": {"openai": {"capacity": 5, "capacity": 6, "refill_per_second": 1}}}',
        ["not valid JSON", "duplicate key 'capacity'"],
    ),
    "duplicate-top-key": (
        '{"min_priority": 2, "min_priority": 3, "dependencies": {}}',
        ["not valid JSON", "duplicate key 'min_priority'"],
    ),
    "nan": (
        '{"dependencies": {"openai": {"capacity": NaN, "refill_per_second": 1}}}',
        ["not valid JSON", "NaN"],
    ),
    # A bad adaptive setting.
    "adaptive-decrease-1": (
        with_adaptive({**ADAPTIVE, "decrease": 1}),
        ["dependencies.openai.adaptive.decrease", "less than 1"],
    ),
    "adaptive-decrease-0": (
        with_adaptive({**ADAPTIVE, "decrease": 0}),
        ["dependencies.openai.adaptive.decrease", "greater than 0"],
    ),
    "adaptive-floor-0": (
        with_adaptive({**ADAPTIVE, "floor": 0}),
        ["dependencies.openai.adaptive.floor", "greater than 0"],
    ),
    "adaptive-floor-over-1": (
        with_adaptive({**ADAPTIVE, "floor": 1.5}),
        ["dependencies.openai.adaptive.floor", "or equal to 1"],
    ),
    "adaptive-recovery-0": (
        with_adaptive({**ADAPTIVE, "recovery_per_minute": 0}),
        ["dependencies.openai.adaptive.recovery_per_minute", "greater than 0"],
    ),
    "adaptive-recovery-61": (
        with_adaptive({**ADAPTIVE, "recovery_per_minute": 61}),
        ["dependencies.openai.adaptive.recovery_per_minute", "or equal to 60"],
    ),
    "adaptive-missing-fields": (
        with_adaptive({"decrease": 0.5}),
        ["adaptive.floor", "adaptive.recovery_per_minute", "Missing data"],
    ),
    "adaptive-string": (
        with_adaptive({**ADAPTIVE, "decrease": "0.5"}),
        ["adaptive.decrease", "Not a valid number"],
    ),
    "adaptive-unknown-field": (
        with_adaptive({**ADAPTIVE, "increase": 2}),
        ["adaptive.increase", "Unknown field"],
    ),
    "adaptive-not-an-object": (
        with_adaptive(True),
        ["dependencies.openai.adaptive", "Invalid input type"],
    ),
    # What `config show` prints beside a config is checked before it is left out.
    "shown-version-0": ({"version": 0, "dependencies": {}}, ["version", "greater than or equal"]),
    "shown-version-text": (
        {"version": "2", "dependencies": {}},
        ["version", "Not a valid integer"],
    ),
    "shown-activated-at": (
        {"activated_at": "yesterday", "dependencies": {}},
        ["activated_at", "Not a valid datetime"],
    ),
}


@pytest.mark.parametrize(("config", "words"), REFUSED_CONFIGS.values(), ids=list(REFUSED_CONFIGS))
def test_config_set_refuses_a_bad_config_in_one_line_and_stores_nothing(
    config_set: SetConfig, db: psycopg.Connection, config: Any, words: list[str]
) -> None:
    assert_one_line_error(config_set(create_user(db), config), 2, *words)
    assert configs_stored(db) == 0


def test_config_set_names_every_bad_field_in_its_one_line(
    config_set: SetConfig, db: psycopg.Connection
) -> None:
    config = {
        "version": True,
        "paused": "yes",
        "priority_reserve": 1,
        "dependencies": {"openai": {"capacity": 0, "refill_per_second": 1}, "bad\nname": 1},
    }
    assert_one_line_error(
        config_set(create_user(db), config),
        2,
        "version",
        "paused",
        "priority_reserve",
        "dependencies.openai.capacity",
        '"bad\\nname"',
    )


def test_config_set_refuses_a_missing_file(cli: Cli, db: psycopg.Connection) -> None:
    run = cli("config", "set", create_user(db), "/nonexistent/config.json")
    assert_one_line_error(run, 2, "cannot read /nonexistent/config.json")


def test_config_set_for_an_unknown_user_fails_cleanly(config_set: SetConfig) -> None:
    assert_one_line_error(config_set(UNKNOWN_USER, TWO_DEPENDENCIES), 1, "unknown user")


def test_config_set_stores_adaptive_and_config_show_prints_it(
    config_set: SetConfig, cli: Cli, db: psycopg.Connection
) -> None:
    """`adaptive` is shown only for the dependencies that have it, as it was written."""
    user_id = create_user(db)
    config = {
        "paused": False,
        "min_priority": 1,
        "priority_reserve": 0.2,
        "unknown_dependencies": "reject",
        "max_attempts": 3,
        "retention_days": 7,
        "retry_backoff": {"base_seconds": 0, "max_seconds": 0},
        "when_limited": "reject",
        "max_wait_seconds": 3600,
        "mode": "enforce",
        "tenant_share": 1,
        "tenant_overrides": {},
        "dependencies": {
            "openai": {"capacity": 100, "refill_per_second": 10, "adaptive": ADAPTIVE},
            "stripe": {"capacity": 20, "refill_per_second": 1},
        },
    }
    assert config_set(user_id, config).out == "1\n"
    assert_shown(cli, user_id, 1, config)


# --- config show ---


def test_config_show_prints_the_active_config_with_its_version(
    config_set: SetConfig, cli: Cli, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    config_set(user_id, TWO_DEPENDENCIES).ok()
    config = {
        "paused": False,
        "min_priority": 2,
        "priority_reserve": 0.25,
        "unknown_dependencies": "allow",
        "dependencies": {"openai": {"capacity": 100, "refill_per_second": 0.5}},
        "max_attempts": 5,
        "retention_days": 30,
        "retry_backoff": {"base_seconds": 1.5, "max_seconds": 120},
        "when_limited": "wait",
        "max_wait_seconds": 90,
        "mode": "shadow",
        "tenant_share": 0.5,
        "tenant_overrides": {"vip": 1, "small-tenant": 0.125},
    }
    config_set(user_id, config).ok()

    assert_shown(cli, user_id, 2, config)
    out = cli("config", "show", user_id).ok()
    assert out.startswith('{\n  "version": 2,\n')  # pretty, version first


def test_what_config_show_prints_config_set_stores_again_as_the_next_version(
    config_set: SetConfig, cli: Cli, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config show USER > c.json && config set USER c.json`, and `config show USER | config
    set USER -`: the same config, as a new version."""
    user_id = user_with_config(
        db,
        {
            "openai": {"capacity": 100, "refill_per_second": 10, "adaptive": ADAPTIVE},
            "stripe": {"capacity": 20, "refill_per_second": 0.5},
        },
        min_priority=2,
        priority_reserve=0.25,
        unknown_dependencies="allow",
        max_attempts=5,
        retention_days=30,
        retry_backoff={"base_seconds": 1.5, "max_seconds": 120},
        mode="shadow",
        tenant_share=0.5,
        tenant_overrides={"vip": 1, "small-tenant": 0.125},
    )
    shown = cli("config", "show", user_id).ok()
    buckets = stored_buckets(db, user_id)

    assert config_set(user_id, shown).ok() == "2\n"
    feed_stdin(monkeypatch, shown)
    assert cli("config", "set", user_id, "-").ok() == "3\n"

    in_force = json.loads(shown)
    assert in_force.pop("version") == 1 and in_force.pop("activated_at")
    assert_shown(cli, user_id, 3, in_force)
    # Stored alike, but that the shown `paused` (the user's state) is now said by the version.
    versions = json.loads(cli("config", "versions", user_id, "--json").ok())["versions"]
    assert [version["version"] for version in versions] == [3, 2, 1]
    third, second, first = (version["config"] for version in versions)
    assert third == second == {**first, "paused": False}
    assert stored_buckets(db, user_id) == buckets


def test_a_shown_config_is_set_as_the_next_version_whatever_is_active_by_then(
    config_set: SetConfig, cli: Cli, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db)
    shown_from_1 = cli("config", "show", user_id).ok()
    assert config_set(user_id, {"dependencies": {}}).ok() == "2\n"

    assert config_set(user_id, shown_from_1).ok() == "3\n"
    assert set(shown_config(cli, user_id)["dependencies"]) == {"openai", "stripe"}


def test_config_show_without_a_config_fails_cleanly(cli: Cli, db: psycopg.Connection) -> None:
    assert_one_line_error(cli("config", "show", create_user(db)), 1, "no active config")


# --- pause and resume ---


def test_pause_and_resume_set_the_users_state_whatever_the_version(
    cli: Cli, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db)
    activate_config(db, user_id, {})
    assert paused_flags(db, user_id) == [(1, False, None), (2, True, None)]

    out = cli("pause", user_id).ok()
    assert out.startswith("paused since 20")
    assert shown_config(cli, user_id)["paused"] is True
    # The versions keep what they said; the state is the user's.
    assert paused_flags(db, user_id) == [(1, False, None), (2, True, None)]
    assert cli("pause", user_id).out == out  # already paused: nothing changes

    assert cli("resume", user_id).out.startswith("resumed since 20")
    assert shown_config(cli, user_id)["paused"] is False


def test_a_config_set_without_paused_keeps_the_pause(
    config_set: SetConfig, cli: Cli, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db)
    cli("pause", user_id)
    config_set(user_id, TWO_DEPENDENCIES).ok()
    assert shown_config(cli, user_id)["paused"] is True


def test_pause_leaves_the_buckets_alone(cli: Cli, db: psycopg.Connection) -> None:
    user_id = user_with_config(db)
    db.execute("UPDATE token_buckets SET tokens = 1 WHERE user_id = %s", [user_id])
    before = stored_buckets(db, user_id)
    cli("pause", user_id)
    cli("resume", user_id)
    assert stored_buckets(db, user_id) == before


def test_a_user_without_a_config_can_be_paused(cli: Cli, db: psycopg.Connection) -> None:
    user_id = create_user(db)
    assert cli("pause", user_id).out.startswith("paused since")
    assert cli("resume", user_id).out.startswith("resumed since")
    assert cli("resume", create_user(db)).out == "not paused\n"


# --- config versions and config activate ---


def test_config_versions_lists_newest_first_and_marks_the_active_one(
    config_set: SetConfig, cli: Cli, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    config_set(user_id, {"paused": False, **TWO_DEPENDENCIES}).ok()
    config_set(user_id, {"dependencies": {}}).ok()
    lines = cli("config", "versions", user_id).ok().splitlines()
    assert lines[0].split() == [
        "version",
        "created_at",
        "activated_at",
        "active",
        "paused",
        "dependencies",
    ]
    assert lines[1].split()[0] == "2" and lines[1].split()[-3:] == ["yes", "-", "-"]
    assert lines[2].split()[0] == "1" and lines[2].split()[-3:] == ["no", "openai,", "stripe"]

    as_json = json.loads(cli("config", "versions", user_id, "--json", "--limit", "1").out)
    [only] = as_json["versions"]
    assert only["version"] == 2 and only["is_active"] is True
    assert only["config"]["dependencies"] == {}


def test_config_activate_rolls_back_to_the_version_itself(
    config_set: SetConfig, cli: Cli, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    config_set(user_id, TWO_DEPENDENCIES).ok()
    config_set(user_id, {"dependencies": {}}).ok()
    assert cli("config", "activate", user_id, "1").ok() == "config version 1 is active\n"
    shown = shown_config(cli, user_id)
    assert shown["version"] == 1 and set(shown["dependencies"]) == {"openai", "stripe"}
    assert paused_flags(db, user_id)[0][:2] == (1, True)
    assert len(stored_buckets(db, user_id)) == 2


def test_config_activate_refuses_unknown_versions_cleanly(cli: Cli, db: psycopg.Connection) -> None:
    user_id = user_with_config(db)
    assert_one_line_error(cli("config", "activate", user_id, "7"), 1, "version")
    assert_one_line_error(cli("config", "activate", user_id, "0"), 2, "'0'")
    assert_one_line_error(cli("config", "activate", user_id, "x"), 2, "'x'")
    assert_one_line_error(cli("config", "activate", UNKNOWN_USER, "1"), 1, "unknown user")


# --- quotas ---


# Buckets whose levels quotas prints exactly: openai never refills, and stripe is full.
QUOTA_BUCKETS = {
    "openai": {"capacity": 100, "refill_per_second": 0},
    "stripe": {"capacity": 4, "refill_per_second": 0.25},
}


def quotas_user(db: psycopg.Connection, openai_tokens: str) -> UUID:
    """A user with QUOTA_BUCKETS whose openai bucket holds `openai_tokens` (a decimal)."""
    user_id = user_with_config(db, QUOTA_BUCKETS)
    db.execute(
        "UPDATE token_buckets SET tokens = %s WHERE user_id = %s AND dependency = 'openai'",
        [Decimal(openai_tokens), user_id],
    )
    return user_id


def test_quotas_prints_an_aligned_table_of_the_buckets(cli: Cli, db: psycopg.Connection) -> None:
    user_id = quotas_user(db, "37.456")
    assert cli("quotas", user_id).ok().splitlines() == [
        "mode: enforce",
        "dependency  capacity  refill/s  tokens now",
        "openai           100         0       37.46",
        "stripe             4      0.25        4.00",
    ]


def test_quotas_of_a_config_without_dependencies_is_just_the_header(
    cli: Cli, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {})
    assert cli("quotas", user_id).ok().splitlines() == [
        "mode: enforce",
        "dependency  capacity  refill/s  tokens now",
    ]


def test_quotas_shows_the_effective_refill_when_a_bucket_is_adaptive(
    cli: Cli, db: psycopg.Connection
) -> None:
    adaptive = {"decrease": 0.5, "floor": 0.25, "recovery_per_minute": 0.05}
    user_id = user_with_config(
        db,
        {
            **QUOTA_BUCKETS,
            "openai": {"capacity": 100, "refill_per_second": 60, "adaptive": adaptive},
        },
    )
    # Cut to the floor, with the recovery off and the bucket full, so the table is exact.
    db.execute(
        "UPDATE token_buckets SET effective_refill_per_second = 15,"
        "       adaptive_recovery_per_second = 0"
        " WHERE user_id = %s AND dependency = 'openai'",
        [user_id],
    )
    assert cli("quotas", user_id).ok().splitlines() == [
        "mode: enforce",
        "dependency  capacity  refill/s  effective/s  tokens now",
        "openai           100        60           15      100.00",
        "stripe             4      0.25         0.25        4.00",
    ]


def test_quotas_without_a_config_fails_cleanly(cli: Cli, db: psycopg.Connection) -> None:
    assert_one_line_error(cli("quotas", create_user(db)), 1, "no active config")


def test_quotas_json_is_the_dashboards_answer(
    cli: Cli, db: psycopg.Connection, app_client: falcon.testing.TestClient
) -> None:
    user_id = quotas_user(db, "37.4567891")
    out = cli("quotas", user_id, "--json").ok()
    assert out.count("\n") == 1
    document = json.loads(out, parse_float=Decimal)
    assert document == {
        "mode": "enforce",
        "quotas": [
            {
                "dependency": "openai",
                "capacity": 100,
                "refill_per_second": 0,
                "effective_refill_per_second": 0,
                "adaptive": False,
                "tokens": Decimal("37.456789"),
                "full_in_seconds": None,
            },
            {
                "dependency": "stripe",
                "capacity": 4,
                "refill_per_second": Decimal("0.25"),
                "effective_refill_per_second": Decimal("0.25"),
                "adaptive": False,
                "tokens": 4,
                "full_in_seconds": 0,
            },
        ],
        "tenant_quotas": [],
    }
    answer = app_client.simulate_get("/dashboard/quotas", headers=headers_for(user_id))
    assert json.loads(answer.text, parse_float=Decimal) == document


def submit_as_tenants(
    client: falcon.testing.TestClient, user_id: UUID, spending: list[tuple[str, dict[str, int]]]
) -> None:
    """Send the seed's single job once per (tenant, dependencies); each must be accepted."""
    for tenant, dependencies in spending:
        body = {**SEED_SINGLE, "tenant_id": tenant, "dependencies": dependencies}
        assert post_json(client, "/dashboard/jobs", user_id, body).status_code == 202


def test_quotas_prints_the_mode_and_the_tenant_buckets_closest_to_their_limit(
    cli: Cli, db: psycopg.Connection, app_client: falcon.testing.TestClient
) -> None:
    user_id = user_with_config(
        db,
        {"openai": {"capacity": 100, "refill_per_second": 0}},
        priority_reserve=0,
        mode="shadow",
        tenant_share=0.5,
        tenant_overrides={"tiny": 0.125},
    )
    submit_as_tenants(
        app_client,
        user_id,
        [("ok", {"openai": 10}), ("hog", {"openai": 45}), ("tiny", {"openai": 5}), ("full", {})],
    )
    dashboard = app_client.simulate_get("/dashboard/quotas", headers=headers_for(user_id))
    # "full" took nothing: it has no row, and is not listed.
    assert cli("quotas", user_id).ok().splitlines() == [
        "mode: shadow (every job is accepted; refusals are only recorded)",
        "dependency  capacity  refill/s  tokens now",
        "openai           100         0       40.00",
        "",
        "tenant  dependency  share  capacity  refill/s  tokens now",
        "hog     openai        0.5        50         0        5.00",
        "tiny    openai      0.125      12.5         0        7.50",
        "ok      openai        0.5        50         0       40.00",
    ]
    as_json = cli("quotas", user_id, "--json").out
    assert json.loads(as_json, parse_float=Decimal) == json.loads(
        dashboard.text, parse_float=Decimal
    )
    assert json.loads(as_json)["tenant_quotas"][1] == {
        "dependency": "openai",
        "tenant_id": "tiny",
        "share": 0.125,
        "capacity": 12.5,
        "refill_per_second": 0,
        "tokens": 7.5,
        "full_in_seconds": None,
    }


def test_quotas_says_when_it_shows_only_the_tenants_closest_to_their_limit(
    cli: Cli, db: psycopg.Connection
) -> None:
    user_id = user_with_config(
        db, {"openai": {"capacity": 100, "refill_per_second": 0}}, tenant_share=0.5
    )
    db.execute(
        "INSERT INTO tenant_buckets (user_id, dependency, tenant_id, capacity,"
        " refill_per_second, tokens, refilled_at)"
        " SELECT %s, 'openai', 't' || lpad(n::text, 3, '0'), 50, 0, n %% 50, now()"
        "   FROM generate_series(1, 101) AS n",
        [user_id],
    )
    lines = cli("quotas", user_id).out.splitlines()
    # Empty first (t050, t100), then by tokens and tenant; the last of 49 tokens is left out.
    assert [line.split()[0] for line in lines[5:7]] == ["t050", "t100"]
    assert len(lines) == 5 + 100 + 1  # mode, buckets (header, openai), blank, header
    assert lines[-2].split()[0] == "t049"
    assert lines[-1] == "(the 100 closest to their limit; the other tenants are fuller)"
    assert "t099" not in "\n".join(lines)


# --- jobs ---


def test_jobs_filters_are_the_dashboards(cli: Cli, db: psycopg.Connection) -> None:
    user_id = user_with_config(db)
    old = insert_jobs(db, user_id, 2, newest=datetime(2025, 1, 1, 12, tzinfo=UTC))
    rejected = insert_jobs(db, user_id, 2, status="Rejected", state=None, source="system")
    queued = insert_jobs(db, user_id, 2, state="queued", tenant_id="tenant-b", batch_name="b")

    def shown(*options: str) -> list[str]:
        return first_column(cli("jobs", user_id, *options).ok())

    # Jobs stored at one moment are listed by id, newest (highest) first.
    assert set(shown()) == {str(j) for j in queued + rejected + old}
    assert shown()[-2:] == [str(j) for j in old]
    assert set(shown("--status", "Rejected")) == {str(j) for j in rejected}
    assert set(shown("--source", "system")) == {str(j) for j in rejected}
    assert set(shown("--tenant", "tenant-b")) == {str(j) for j in queued}
    assert set(shown("--batch", "b", "--state", "queued")) == {str(j) for j in queued}
    assert shown("--until", "2025-01-01T12:00:00Z") == [str(old[1])]
    assert shown("--since", "2025-01-01T12:00:00Z", "--until", "2025-01-02T00:00:00+01:00") == [
        str(old[0])
    ]
    assert len(shown("--limit", "3")) == 3


def test_jobs_json_is_the_dashboards_items(
    cli: Cli, db: psycopg.Connection, app_client: falcon.testing.TestClient
) -> None:
    user_id = user_with_config(db)
    insert_jobs(db, user_id, 3)
    insert_jobs(db, user_id, 1, status="Rejected", state=None)
    document = json.loads(cli("jobs", user_id, "--json", "--limit", "10").ok())
    assert list(document) == ["jobs"] and len(document["jobs"]) == 4
    answer = app_client.simulate_get("/dashboard/jobs", headers=headers_for(user_id))
    assert document["jobs"] == answer.json["jobs"]
    run = cli("jobs", user_id, "--json", "--status", "Rejected")
    assert [job["status"] for job in json.loads(run.out)["jobs"]] == ["Rejected"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--status", "accepted"], ["--status", "invalid choice"]),
        (["--source", "web"], ["--source", "invalid choice"]),
        (["--since", "yesterday"], ["--since", "ISO 8601"]),
        (["--until", "2025-01-01T00:00:00"], ["--until", "timezone"]),
        (["--since", "2025-01-02T00:00:00Z", "--until", "2025-01-01T00:00:00Z"], ["--until"]),
        (["--tenant", ""], ["--tenant"]),
        (["--limit", "0"], ["--limit"]),
    ],
)
def test_jobs_with_a_bad_filter_fails_cleanly(
    cli: Cli, db: psycopg.Connection, options: list[str], words: list[str]
) -> None:
    assert_one_line_error(cli("jobs", user_with_config(db), *options), 2, *words)


# --- prune ---


def test_prune_deletes_the_tenant_buckets_full_again_and_keeps_the_others(
    cli: Cli, db: psycopg.Connection, app_client: falcon.testing.TestClient
) -> None:
    user_id = user_with_config(
        db,
        {
            # A tenant's openai bucket (5 tokens, 500 a second) is full again within 2 ms;
            # its stripe bucket (5 tokens, no refill) never is.
            "openai": {"capacity": 10, "refill_per_second": 1000},
            "stripe": {"capacity": 10, "refill_per_second": 0},
        },
        priority_reserve=0,
        tenant_share=0.5,
    )
    submit_as_tenants(app_client, user_id, [("fast", {"openai": 1}), ("slow", {"stripe": 1})])
    rows = "SELECT dependency, tenant_id, tokens FROM tenant_buckets ORDER BY 1, 2"
    before = db.execute(rows).fetchall()
    assert [(dependency, tenant) for dependency, tenant, _ in before] == [
        ("openai", "fast"),
        ("stripe", "slow"),
    ]
    assert before[0][2] < 5  # stored as the debit left it: full only as of now

    assert cli("prune").ok().splitlines()[-1] == "pruned 1 tenant buckets full again"
    assert db.execute(rows).fetchall() == [("stripe", "slow", 4)]
    # Deleting a full row changed nothing: the tenant is shown full, by having no row.
    assert cli("quotas", user_id, "--json").out.count('"tenant_id"') == 1


# --- demo ---


def demo_users(db: psycopg.Connection) -> list[UUID]:
    """The ids of every user called `demo`."""
    rows = db.execute("SELECT user_id FROM users WHERE name = %s", [DEMO_USER_NAME]).fetchall()
    return [row[0] for row in rows]


def second_shell(out: str) -> tuple[str, str]:
    """JANUS_URL and JANUS_API_KEY as bash sets them from the export lines `janus demo` printed."""
    exports = [line for line in out.splitlines() if line.startswith("export ")]
    done = subprocess.run(
        ["bash", "-euc", "\n".join([*exports, 'printf "%s\\n" "$JANUS_URL" "$JANUS_API_KEY"'])],
        capture_output=True,
        text=True,
        timeout=10,
        env={"PATH": os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    url, key = done.stdout.splitlines()
    return url, key


def demo_keys(db: psycopg.Connection, user_id: UUID) -> list[tuple[str, list[str], bool]]:
    """(name, scopes, revoked) of the user's keys, oldest first."""
    rows = db.execute(
        "SELECT name, scopes, revoked_at IS NOT NULL FROM api_keys"
        " WHERE user_id = %s ORDER BY created_at",
        [user_id],
    ).fetchall()
    return [(name, list(scopes), revoked) for name, scopes, revoked in rows]


def bearer(key: str) -> dict[str, str]:
    """The headers of a request made with `key`."""
    return {"Authorization": f"Bearer {key}"}


def test_demo_creates_the_demo_user_once(cli: Cli, db: psycopg.Connection) -> None:
    first = cli("demo")
    second = cli("demo")
    assert first.status == second.status == 0
    [user_id] = demo_users(db)
    for run in (first, second):
        assert run.err == ""
        assert run.out.splitlines()[0].startswith(f"# The demo user ({user_id}) ")
    # Each run a key of its own, both good (a shell that pasted the first still works).
    assert second_shell(first.out)[1] != second_shell(second.out)[1]
    assert demo_keys(db, user_id) == 2 * [("demo (make run)", ["produce", "work", "read"], False)]
    assert paused_flags(db, user_id) == [(1, True, None)]
    # The queue's fields, left out of the demo config, show their defaults.
    defaults = {
        "max_attempts": 3,
        "retention_days": 7,
        "retry_backoff": {"base_seconds": 0, "max_seconds": 0},
        "when_limited": "reject",
        "max_wait_seconds": 3600,
        "mode": "enforce",
        "tenant_share": 1,
        "tenant_overrides": {},
    }
    assert_shown(cli, user_id, 1, {"paused": False, **DEMO_CONFIG, **defaults})


def test_demo_prints_lines_a_second_shell_pastes_as_they_are(
    cli: Cli, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "18123")
    out = cli("demo").ok()
    # Every line is a comment or a command: the whole block pastes, not only its commands.
    lines = out.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [
        "#", "#", "export", "export", "#", "curl", "#"
    ]  # fmt: skip
    syntax = subprocess.run(["bash", "-n"], input=out, capture_output=True, text=True, timeout=10)
    assert syntax.returncode == 0, syntax.stderr
    [user_id] = demo_users(db)
    url, key = second_shell(out)
    assert url == "http://127.0.0.1:18123"
    assert key.startswith(f"janus_{user_id.hex}_")
    assert lines[-1] == "# The dashboard: http://127.0.0.1:18123/ (sign in with the key)."
    curl = lines[5]
    assert curl.startswith(
        'curl -i -X POST "$JANUS_URL/dashboard/jobs" -H "Authorization: Bearer $JANUS_API_KEY"'
    )
    assert "-H 'Content-Type: application/json'" in curl
    body = curl.split(" -d ", 1)[1]
    assert body.startswith("'") and body.endswith("'")
    assert json.loads(body[1:-1]) == SEED_SINGLE


def test_demo_keeps_the_keys_of_its_last_five_runs(cli: Cli, db: psycopg.Connection) -> None:
    for _ in range(7):
        cli("demo").ok()
    [user_id] = demo_users(db)
    assert [revoked for _, _, revoked in demo_keys(db, user_id)] == 2 * [True] + 5 * [False]


def test_demo_gives_a_demo_user_without_a_config_the_demo_config(
    cli: Cli, db: psycopg.Connection
) -> None:
    user_id = create_user(db, DEMO_USER_NAME)
    assert cli("demo").out.startswith(f"# The demo user ({user_id}) ")
    assert demo_users(db) == [user_id]
    assert paused_flags(db, user_id) == [(1, True, None)]


def test_demo_config_shows_the_seed_examples_documented_outcomes(
    cli: Cli, app_client: falcon.testing.TestClient
) -> None:
    _, key = second_shell(cli("demo").out)
    statuses = [
        app_client.simulate_post("/dashboard/jobs", json=SEED_SINGLE, headers=bearer(key))
        for _ in range(3)
    ]
    assert [result.status_code for result in statuses] == [202, 202, 429]
    assert statuses[2].json["reason"] == "dependency 'openai' rate limit exceeded"
    batch = app_client.simulate_post("/dashboard/jobs/batch", json=SEED_BATCH, headers=bearer(key))
    assert batch.status_code == 200
    assert (batch.json["accepted"], batch.json["rejected"]) == (1, 1)


def test_demo_lines_pasted_whole_submit_to_the_service_on_port(
    database_url: str, start_gunicorn: StartGunicorn
) -> None:
    """What `make run` does, then what a person does in a second shell: paste it all."""
    server = start_gunicorn(workers=1)
    port = urlsplit(server.url).port
    demo = run_module("demo", database_url=database_url, env={"PORT": str(port)})
    pasted = subprocess.run(
        ["bash", "-eu"],
        input=demo.ok(),
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"]},
    )
    assert pasted.returncode == 0, pasted.stderr
    # Read as text, curl's CRLFs are newlines.
    head, body = pasted.stdout.split("\n\n", 1)
    assert head.startswith("HTTP/1.1 202 Accepted\n"), pasted.stdout
    assert json.loads(body)["status"] == "Accepted"


# --- failures before any work ---


# The commands that take nothing but a user id.
USER_COMMANDS = [["config", "show"], ["pause"], ["resume"], ["quotas"]]


@pytest.mark.parametrize("command", USER_COMMANDS)
def test_a_malformed_user_id_fails_cleanly(cli: Cli, command: list[str]) -> None:
    assert_one_line_error(cli(*command, "not-a-uuid"), 2, "'not-a-uuid'", "UUID")


@pytest.mark.parametrize("command", USER_COMMANDS)
def test_an_unknown_user_fails_cleanly(cli: Cli, command: list[str]) -> None:
    assert_one_line_error(cli(*command, UNKNOWN_USER), 1, "unknown user")


def test_a_bad_command_line_is_one_line_too(cli: Cli) -> None:
    assert_one_line_error(cli(), 2, "required")
    assert_one_line_error(cli("config", "set", UNKNOWN_USER), 2, "FILE")
    assert_one_line_error(cli("frobnicate"), 2, "frobnicate")


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("", 2, ["DATABASE_URL is not set"]),
        ("mysql://localhost/janus", 2, ["postgres://"]),
        ("postgresql://us er@localhost/janus", 2, ["DATABASE_URL cannot be parsed"]),
        ("postgresql://postgres@127.0.0.1:1/janus", 1, ["database unavailable", "port 1"]),
    ],
    ids=["missing", "not-postgres", "malformed", "unreachable"],
)
def test_a_bad_database_url_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    status: int,
    words: list[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert_one_line_error(run_in_process(capsys, "user", "create", "someone"), status, *words)


# --- as an operator runs it: python -m janus ---


def test_python_m_janus_with_a_postgres_url(database_url: str, db: psycopg.Connection) -> None:
    heroku_style = "postgres://" + database_url.removeprefix("postgresql://")
    user_id = UUID(run_module("user", "create", "ops", database_url=heroku_style).ok().strip())

    config_set = run_module(
        "config",
        "set",
        str(user_id),
        "-",
        database_url=heroku_style,
        stdin=json.dumps(TWO_DEPENDENCIES),
    )
    assert config_set.ok() == "1\n"
    assert stored_buckets(db, user_id) == {"openai": (6, 0, 6), "stripe": (4, 0, 4)}


def test_python_m_janus_fails_in_one_line_without_a_traceback(database_url: str) -> None:
    assert_one_line_error(run_module("quotas", "not-a-uuid", database_url=database_url), 2, "UUID")
    assert_one_line_error(
        run_module("quotas", UNKNOWN_USER, database_url=database_url), 1, "unknown user"
    )
    unreachable = "postgresql://postgres@127.0.0.1:1/janus"
    assert_one_line_error(run_module("demo", database_url=unreachable), 1, "database unavailable")
