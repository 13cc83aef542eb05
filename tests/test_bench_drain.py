"""`make bench`'s drains (issue 26), small: the raw driver and janus-worker each drain a queue
of the real service, the worker stopped by SIGTERM half-way and started again, and every job
is audited from the database; and how the report reads a drain."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bench import arguments, drain
from bench.database import provision
from bench.drivers import LoadResult
from bench.measure import Bench
from bench.report import evaluate
from bench.results import ScenarioResult
from bench.scenarios import RAW_DRAIN, SCENARIOS, WORKER_DRAIN, WORKER_DRAIN_10
from bench.tables import drain_lines
from devtools.service import Service

pytestmark = pytest.mark.concurrency

SCENARIO = {scenario.name: scenario for scenario in SCENARIOS}
JOBS = 2_000


@pytest.mark.parametrize("name", [RAW_DRAIN, WORKER_DRAIN_10])
def test_a_drain_empties_the_queue_and_audits_every_job(
    worker_service: Service,
    worker_service_database: str,
    worker_db: psycopg.Connection,
    tmp_path: Path,
    name: str,
) -> None:
    scenario = SCENARIO[name]
    users = provision(worker_service_database, [scenario])
    bench = Bench(
        arguments.parse([]),
        worker_service_database,
        worker_db,
        worker_service,
        users,
        tmp_path,
        tmp_path,
        {},
    )
    drain.fill(bench, users[name][0], JOBS)
    load = bench.drive(scenario, 0)

    counters = load.counters
    assert (counters["jobs"], counters["completed"], counters["lost"]) == (JOBS, JOBS, 0)
    assert 0 < load.wall_s <= counters["end_to_end_ms"] / 1000
    if name == RAW_DRAIN:
        assert set(load.outcomes) == {"200"} and counters["not_completed"] == 0
        assert counters["runs"] == 1
    else:  # stopped half-way by SIGTERM, exited 0, started again: nothing done twice
        assert load.outcomes == {"exit 0": 2} and counters["runs"] == 2
        assert counters["completed_twice"] == counters["uncounted"] == 0
        assert counters["claimed"] == JOBS + counters["given_back"]
        assert load.output.count("worker: SIGTERM received") == 2


def drain_result(name: str, completed: int, wall_s: float, **counters: int) -> ScenarioResult:
    load = LoadResult(
        wall_s, 0, {"exit 0": 2}, dict(drain.NO_LATENCY), "", {"completed": completed, **counters}
    )
    return ScenarioResult(SCENARIO[name], load, {})


def test_the_report_judges_a_drain_by_its_jobs_per_second_and_its_audit() -> None:
    results = {
        RAW_DRAIN: drain_result(RAW_DRAIN, 10_000, 2.5, jobs=10_000, end_to_end_ms=2600),
        WORKER_DRAIN: drain_result(
            WORKER_DRAIN, 10_000, 2.0, jobs=10_000, runs=2, end_to_end_ms=2500, lost=0
        ),
        WORKER_DRAIN_10: drain_result(
            WORKER_DRAIN_10, 9_990, 3.0, jobs=10_000, runs=2, lost=10, completed_twice=1
        ),
    }
    checks = {check.label: check for check in evaluate(results, [])}
    assert checks["worker-drain / raw-drain (jobs/s, issue 26)"].value == "125.0%"
    assert checks["worker-drain / raw-drain (jobs/s, issue 26)"].passed
    assert checks["worker-drain-10 / raw-drain (jobs/s, issue 26)"].passed is False
    assert checks["worker-drain jobs lost / completed twice (issue 26)"].passed
    assert checks["worker-drain-10 jobs lost / completed twice (issue 26)"].value == "10 / 1"
    assert results[WORKER_DRAIN_10].unexpected() == [
        "worker-drain-10: 10 jobs not completed by the drain",
        "worker-drain-10: 1 completions counted by the workers beyond the database's",
    ]
    assert drain_lines(results)[1] == (
        "worker-drain: 10,000 of 10,000 jobs completed in 2.00s draining (5,000 jobs/s), 2.50s "
        "from the first start to the last job (4,000 jobs/s) over 2 run(s); lost 0, completed "
        "twice 0."
    )
