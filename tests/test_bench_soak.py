"""The soak of `make bench --soak`: the jobs table pre-filled with rows shaped exactly like the
soak's admitted jobs, and the checks of issue 27's done-when read off its minutes.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from itertools import pairwise
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from bench import arguments
from bench.database import jobs_rows, prefill_jobs, provision
from bench.drivers import LoadResult
from bench.report import soak_checks, soak_document
from bench.results import SoakMinute
from bench.scenarios import (
    SCENARIOS,
    SOAK_MAX_GROWTH,
    SOAK_MIN_KEPT,
    SOAK_MINUTES,
    SOAK_PREFILL_ROWS,
    SOAK_SCENARIO,
)
from bench.soak import Housekeeping
from bench.tables import soak_table
from janus.admission import Source
from tests.support.app import headers_for
from tests.support.factories import user_with_config
from tests.support.queue import queued_job, submit

SCENARIO = next(scenario for scenario in SCENARIOS if scenario.name == SOAK_SCENARIO)

# Every column but the two each job has of its own.
_SHAPES = """
SELECT to_jsonb(j) - 'job_id' - 'created_at' AS shape, count(*)
  FROM jobs AS j WHERE user_id = %s GROUP BY 1
"""


def shapes(db: psycopg.Connection, user_id: UUID) -> dict[str, int]:
    """The user's jobs by everything but job_id and created_at: {shape as JSON: count}."""
    return {
        json.dumps(shape, sort_keys=True): count for shape, count in db.execute(_SHAPES, [user_id])
    }


def test_prefill_adds_rows_shaped_exactly_like_the_soaks_admitted_jobs(
    database_url: str, db: psycopg.Connection, app_client: falcon.testing.TestClient
) -> None:
    [user_id] = provision(database_url, [SCENARIO])[SCENARIO.name]

    added = prefill_jobs(db, user_id, Source.DASHBOARD, 2_345, chunk=1_000)

    assert added == 2_345
    assert jobs_rows(db) == 2_345
    # One transaction each: the admitted job, then chunks of 1,000, 1,000 and 344 copies.
    chunks = db.execute(
        "SELECT array_agg(job_id) FROM jobs GROUP BY created_at ORDER BY created_at"
    ).fetchall()
    assert [len(ids) for (ids,) in chunks] == [1, 1_000, 1_000, 344]
    ids = [job_id for (chunk,) in chunks for job_id in chunk]
    assert len(set(ids)) == 2_345
    assert {job_id.version for job_id in ids} == {7}
    # Each chunk's ids sort after the one before's: they append to the primary key as
    # admission's do.
    for (earlier,), (later,) in pairwise(chunks):
        assert max(earlier) < min(later)
    [(prefilled, count)] = shapes(db, user_id).items()
    assert count == 2_345

    # The soak's own request, through the service's route: its jobs are the same rows.
    answer = app_client.simulate_post(
        SCENARIO.path,
        body=json.dumps(SCENARIO.body, ensure_ascii=False),
        headers=headers_for(user_id, **{"Content-Type": "application/json"}),
    )

    assert answer.status_code == SCENARIO.expect
    assert shapes(db, user_id) == {prefilled: 2_345 + SCENARIO.jobs}
    assert json.loads(prefilled)["state"] == "queued"


def test_prefill_stops_at_the_rows_the_table_already_holds(
    database_url: str, db: psycopg.Connection
) -> None:
    [user_id] = provision(database_url, [SCENARIO])[SCENARIO.name]
    prefill_jobs(db, user_id, Source.DASHBOARD, 10)

    assert prefill_jobs(db, user_id, Source.DASHBOARD, 10) == 0
    assert prefill_jobs(db, user_id, Source.DASHBOARD, 4) == 0
    assert prefill_jobs(db, user_id, Source.DASHBOARD, 13) == 3
    assert jobs_rows(db) == 13


def minute(number: int, jobs_per_s: float, mb: float, dropped: int = 0) -> SoakMinute:
    """A soak minute with only what the checks read."""
    load = LoadResult(
        requests=0, wall_s=60, latency_ms={"p50": 1, "p99": 2}, outcomes={"200": 1}, output=""
    )
    return SoakMinute(
        minute=number,
        load=load,
        jobs_per_s=jobs_per_s,
        jobs_rows=1000,
        jobs_table_mb=mb,
        wal_mb=1,
        checkpoints=0,
        cpu={"app": 1, "postgres": 1, "load": 1, "other": 1},
        autovacuums=1,
        dropped_partitions=dropped,
    )


def test_the_soak_passes_when_every_minute_after_the_first_drop_keeps_pace_and_size() -> None:
    minutes = [minute(1, 1000, 100), minute(2, 800, 200), minute(3, 950, 300, dropped=1)]
    minutes += [minute(4, 1000 * SOAK_MIN_KEPT, 300 * SOAK_MAX_GROWTH), minute(5, 990, 250)]

    pace, size = soak_checks(minutes)

    # Minute 2 is slow, but before the first drop: the done-when does not ask.
    assert (pace.value, pace.passed) == (
        f"{SOAK_MIN_KEPT * 100:.0f}% (minute 4; first drop in minute 3)",
        True,
    )
    assert size.passed and size.value.startswith(f"{SOAK_MAX_GROWTH * 100:.0f}%")


def test_the_soak_fails_on_a_slow_minute_a_growing_table_or_no_drop() -> None:
    slow = [minute(1, 1000, 100, dropped=1), minute(2, 890, 100), minute(3, 1000, 100)]
    assert [check.passed for check in soak_checks(slow)] == [False, True]

    growing = [minute(1, 1000, 100, dropped=1), minute(2, 1000, 200)]
    assert [check.passed for check in soak_checks(growing)] == [True, False]

    never = [minute(1, 1000, 100), minute(2, 1000, 200)]
    assert [(c.value, c.passed) for c in soak_checks(never)] == [
        ("no partition dropped", False),
        ("no partition dropped", False),
    ]


def test_the_soak_reports_the_autovacuums_and_drops_of_each_minute() -> None:
    header, _ = soak_table([minute(1, 1000, 5, dropped=2)])

    assert "autovacuums" in header and "dropped" in header
    document = soak_document(minute(1, 1000, 5, dropped=2))
    assert (document["autovacuums"], document["dropped_partitions"]) == (1, 2)


@pytest.mark.parametrize(
    ("argv", "prefill", "minutes"),
    [
        (["--soak"], SOAK_PREFILL_ROWS, SOAK_MINUTES),
        (["--soak", "--soak-prefill", "1000", "--soak-minutes", "2"], 1000, 2),
    ],
)
def test_a_default_soak_runs_twenty_minutes_from_an_empty_table(
    argv: list[str], prefill: int, minutes: int
) -> None:
    args = arguments.parse(argv)

    assert (args.soak_prefill, args.soak_minutes) == (prefill, minutes)
    # Issue 27: 20 minutes, partitions of 5 kept 10: the first drop within it.
    assert (SOAK_MINUTES, SOAK_PREFILL_ROWS) == (20, 0)


def test_a_negative_prefill_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        arguments.parse(["--soak", "--soak-prefill", "-1"])
    assert "--soak-prefill must be 0 or more" in capsys.readouterr().err


def test_the_soaks_drainer_completes_the_jobs_its_bucket_accepts(
    db: psycopg.Connection, database_url: str, app_client: falcon.testing.TestClient
) -> None:
    """The drainer claims and completes as the queue's routes do (queries.HAND_OUT_JOBS and
    FINISH_JOBS): without it no partition of the soak would ever be dropped."""
    user = user_with_config(db, {"openai": {"capacity": 100, "refill_per_second": 0}})
    jobs = [submit(app_client, user, queued_job({"openai": 1})) for _ in range(5)]
    with Housekeeping(database_url, user, soak_starts=datetime.now(UTC)) as housekeeping:
        deadline = time.monotonic() + 30
        while housekeeping.completed < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert housekeeping.completed == len(jobs)
    states = db.execute("SELECT state, count(*) FROM jobs WHERE user_id = %s GROUP BY 1", [user])
    assert dict(states.fetchall()) == {"completed": len(jobs)}
