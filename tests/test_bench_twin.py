"""The bare twin of `make bench` (bench/twin/): its SQL decides an exact token bucket, its app
answers a job and a batch, its gunicorn serves as Janus's does (workers, worker class,
threads), read from Janus's own gunicorn.conf.py, and the report sets its CPU per decision
next to Janus's.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import psycopg
import pytest
import requests
from psycopg_pool import ConnectionPool

from bench.drivers import LoadResult
from bench.results import ScenarioResult
from bench.scenarios import SCENARIOS
from bench.tables import decision_cpu_table
from bench.twin import database as twin_database
from bench.twin import server as twin_server
from bench.twin.app import BUCKET, create_app
from tests.conftest import REPO_ROOT, fault_lines

# Two dependencies costing 3 in all, as the bench's job.
JOB: dict[str, Any] = {"tenant_id": "t", "priority": 8, "dependencies": {"openai": 2, "stripe": 1}}


@pytest.fixture
def twin_db(db: psycopg.Connection) -> psycopg.Connection:
    """The test's database with the twin's schema loaded."""
    twin_database.install(db)
    return db


def admit(conn: psycopg.Connection, job: Any) -> tuple[str, str]:
    """twin.admit() of one job: its status and reason."""
    row = conn.execute(
        "SELECT status, reason FROM twin.admit(%s, %s::json)", [BUCKET, json.dumps(job)]
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def admit_batch(conn: psycopg.Connection, jobs: list[Any]) -> list[str]:
    """twin.admit_batch() of `jobs`: each one's status, in order."""
    rows = conn.execute(
        "SELECT status FROM twin.admit_batch(%s, %s::json)", [BUCKET, json.dumps(jobs)]
    ).fetchall()
    return [status for (status,) in rows]


def tokens(conn: psycopg.Connection) -> Any:
    row = conn.execute("SELECT tokens FROM twin.buckets WHERE key = %s", [BUCKET]).fetchone()
    assert row is not None
    return row[0]


def stored(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM twin.jobs GROUP BY status").fetchall()
    return dict(rows)


# --- The SQL ----------------------------------------------------------------------------------


def test_a_bucket_of_capacity_3_admits_3_jobs_of_5(twin_db: psycopg.Connection) -> None:
    twin_database.fill_bucket(twin_db, BUCKET, capacity=3, refill_per_second=0)

    decided = [admit(twin_db, {}) for _ in range(5)]

    assert decided == [("Accepted", "")] * 3 + [("Rejected", "rate limit exceeded")] * 2
    assert stored(twin_db) == {"Accepted": 3, "Rejected": 2}
    assert tokens(twin_db) == 0


def test_a_job_costs_the_sum_of_its_dependencies(twin_db: psycopg.Connection) -> None:
    twin_database.fill_bucket(twin_db, BUCKET, capacity=10, refill_per_second=0)

    decided = [admit(twin_db, JOB)[0] for _ in range(4)]

    assert decided == ["Accepted"] * 3 + ["Rejected"]
    # The one token left takes a job that names no dependency (it costs 1).
    assert admit(twin_db, {"dependencies": {}})[0] == "Accepted"
    assert tokens(twin_db) == 0


def test_the_bucket_refills_exactly_by_the_database_clock(twin_db: psycopg.Connection) -> None:
    twin_database.fill_bucket(twin_db, BUCKET, capacity=10, refill_per_second=2)
    twin_db.execute(
        "UPDATE twin.buckets SET tokens = 0, refilled_at = clock_timestamp() - interval '1.5 s'"
    )
    row = twin_db.execute("SELECT refilled_at FROM twin.buckets").fetchone()
    assert row is not None
    before = row[0]

    assert admit(twin_db, JOB)[0] == "Accepted"

    # 2 tokens/s over the time since `before`, less the job's 3, to the microsecond.
    row = twin_db.execute(
        "SELECT tokens, 2 * extract(epoch FROM refilled_at - %s) - 3 FROM twin.buckets", [before]
    ).fetchone()
    assert row is not None and row[0] == row[1]
    assert 0 <= row[0] < 1
    assert admit(twin_db, {"dependencies": {"openai": 1}})[0] == "Rejected"


def test_a_partial_batch_is_decided_in_order_in_one_call(twin_db: psycopg.Connection) -> None:
    twin_database.fill_bucket(twin_db, BUCKET, capacity=3, refill_per_second=0)

    assert admit_batch(twin_db, [{}] * 5) == ["Accepted"] * 3 + ["Rejected"] * 2

    # A later, cheaper job fits where an earlier one did not.
    twin_database.fill_bucket(twin_db, BUCKET, capacity=3, refill_per_second=0)
    costs = [{"dependencies": {"openai": cost}} for cost in (2, 2, 1)]
    assert admit_batch(twin_db, costs) == ["Accepted", "Rejected", "Accepted"]
    assert tokens(twin_db) == 0
    assert admit_batch(twin_db, []) == []
    assert stored(twin_db) == {"Accepted": 5, "Rejected": 3}


def test_an_unknown_bucket_is_an_error(twin_db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="unknown bucket"):
        admit(twin_db, {})


# --- The app ----------------------------------------------------------------------------------


@pytest.fixture
def twin_client(
    twin_db: psycopg.Connection, database_url: str
) -> Iterator[falcon.testing.TestClient]:
    """The twin's app in-process, over an autocommit pool on the test's database."""
    pool = ConnectionPool(
        database_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )
    pool.open(wait=True)
    try:
        yield falcon.testing.TestClient(create_app(pool))
    finally:
        pool.close()


def test_the_app_answers_a_single_job(
    twin_db: psycopg.Connection, twin_client: falcon.testing.TestClient
) -> None:
    twin_database.fill_bucket(twin_db, BUCKET, capacity=3, refill_per_second=0)

    accepted = twin_client.simulate_post("/jobs", json=JOB)
    rejected = twin_client.simulate_post("/jobs", json=JOB)

    assert accepted.status_code == 202
    assert accepted.json["status"] == "Accepted" and accepted.json["reason"] == ""
    row = twin_db.execute(
        "SELECT body::text FROM twin.jobs WHERE job_id = %s", [accepted.json["job_id"]]
    ).fetchone()
    assert row is not None and json.loads(row[0]) == JOB
    assert rejected.status_code == 429
    assert rejected.json["status"] == "Rejected"


def test_the_app_answers_a_partial_batch(
    twin_db: psycopg.Connection, twin_client: falcon.testing.TestClient
) -> None:
    twin_database.fill_bucket(twin_db, BUCKET, capacity=7, refill_per_second=0)

    answer = twin_client.simulate_post("/jobs/batch", json={"batch_name": "b", "jobs": [JOB] * 3})

    assert answer.status_code == 200
    assert {key: answer.json[key] for key in ("total", "accepted", "rejected")} == {
        "total": 3,
        "accepted": 2,
        "rejected": 1,
    }
    assert [result["status"] for result in answer.json["results"]] == [
        "Accepted",
        "Accepted",
        "Rejected",
    ]
    assert len({result["job_id"] for result in answer.json["results"]}) == 3


@pytest.mark.parametrize(
    ("path", "body"), [("/jobs", [JOB]), ("/jobs/batch", {"jobs": JOB}), ("/jobs/batch", [])]
)
def test_the_app_refuses_a_body_of_another_shape(
    twin_client: falcon.testing.TestClient, path: str, body: Any
) -> None:
    assert twin_client.simulate_post(path, json=body).status_code == 400


# --- Its gunicorn -----------------------------------------------------------------------------


def test_the_twin_is_served_as_janus_is(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DATABASE_URL": "postgresql://janus@127.0.0.1:5432/janus",
        "PORT": "18123",
        "WEB_CONCURRENCY": "3",
        "JANUS_THREADS": "5",
        "JANUS_POOL_SIZE": "4",
        "JANUS_BIND_HOST": "127.0.0.1",
    }.items():
        monkeypatch.setenv(name, value)

    janus = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    twin = runpy.run_path(str(twin_server.TWIN_CONF))

    for name in ("workers", "worker_class", "threads", "preload_app", "timeout", "header_map"):
        assert twin[name] == janus[name], name
    assert (twin["workers"], twin["threads"]) == (3, 5)
    assert twin["raw_env"] == ["TWIN_POOL_SIZE=4"]
    assert twin["bind"] == "127.0.0.1:18123"
    assert twin["wsgi_app"] == "bench.twin.wsgi:app"


def test_the_twin_serves_under_gunicorn(
    twin_db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    twin_database.fill_bucket(twin_db, BUCKET, capacity=100, refill_per_second=0)

    with twin_server.start(database_url, tmp_path / "twin.log", workers=2, timeout_s=30) as twin:
        single = requests.post(f"{twin.url}/jobs", json=JOB, timeout=10)
        batch = requests.post(f"{twin.url}/jobs/batch", json={"jobs": [JOB] * 10}, timeout=10)
        assert len(twin.worker_pids()) == 2

    assert single.status_code == 202
    assert batch.status_code == 200 and batch.json()["accepted"] == 10
    assert stored(twin_db) == {"Accepted": 11}
    assert "Using worker: janus.worker.JanusWorker" in twin.log()
    assert fault_lines(twin.log()) == []


# --- The report -------------------------------------------------------------------------------


def test_cpu_per_decision_sets_each_pair_apart() -> None:
    scenarios = {scenario.name: scenario for scenario in SCENARIOS}

    def measured(name: str, answers: int, cpu_s: dict[str, float]) -> ScenarioResult:
        scenario = scenarios[name]
        load = LoadResult(10.0, answers, {str(scenario.expect): answers}, {}, output="")
        return ScenarioResult(scenario, load, {}, cpu_s=cpu_s)

    results = {
        "single-hot": measured("single-hot", 1000, {"app": 2.0, "postgres": 1.5, "load": 0.1}),
        "twin-single": measured("twin-single", 2000, {"app": 2.0, "postgres": 1.0}),
    }

    assert results["single-hot"].cpu_us_per_decision == {"app": 2000.0, "postgres": 1500.0}
    assert decision_cpu_table(results)[1:] == [
        "single-hot                  2,000  1,500   3,500",
        "twin-single                 1,000    500   1,500",
        "  single-hot / twin-single   2.0x   3.0x    2.3x",
    ]
