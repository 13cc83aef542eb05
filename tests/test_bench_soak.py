"""The soak of `make bench --soak`: the jobs table pre-filled with rows shaped exactly like the
soak's admitted jobs, and the checks of issue 13's done-when read off its minutes.
"""

from __future__ import annotations

import json
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
    SOAK_MIN_KEPT,
    SOAK_MINUTES,
    SOAK_PAST_ROWS,
    SOAK_PREFILL_ROWS,
    SOAK_SCENARIO,
)
from bench.tables import soak_table
from janus.admission import Source
from tests.support.app import headers_for

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


def minute(number: int, jobs_per_s: float, jobs_rows: int) -> SoakMinute:
    """A soak minute with only what the checks read."""
    load = LoadResult(
        requests=0, wall_s=60, latency_ms={"p50": 1, "p99": 2}, outcomes={"200": 1}, output=""
    )
    return SoakMinute(
        minute=number,
        load=load,
        jobs_per_s=jobs_per_s,
        jobs_rows=jobs_rows,
        jobs_table_mb=1,
        wal_mb=1,
        checkpoints=0,
        cpu={"app": 1, "postgres": 1, "load": 1, "other": 1},
        autovacuums=1,
    )


def test_the_soak_passes_when_every_minute_past_the_rows_keeps_its_pace() -> None:
    below, past = SOAK_PAST_ROWS - 1, SOAK_PAST_ROWS
    minutes = [minute(1, 1000, below), minute(2, 800, below), minute(3, 950, past)]
    minutes.append(minute(4, 1000 * SOAK_MIN_KEPT, past + 1))

    reached, kept = soak_checks(minutes)

    assert (reached.value, reached.passed) == (f"{past + 1:,}", True)
    # Minute 2 is slow, but before the table passed the rows: the done-when does not ask.
    assert (kept.value, kept.passed) == (f"{SOAK_MIN_KEPT * 100:.0f}% (minute 4)", True)


def test_the_soak_fails_on_a_slow_minute_past_the_rows_or_a_table_too_small() -> None:
    past = SOAK_PAST_ROWS
    slow = [minute(1, 1000, past), minute(2, 890, past + 1), minute(3, 1000, past + 2)]
    assert [check.passed for check in soak_checks(slow)] == [True, False]

    small = [minute(1, 1000, 5), minute(2, 1000, 6)]
    reached, kept = soak_checks(small)
    assert (reached.passed, kept.value, kept.passed) == (False, "no such minute", None)


def test_the_soak_reports_the_autovacuums_of_each_minute() -> None:
    header, _ = soak_table([minute(1, 1000, 5)])

    assert "autovacuums" in header
    assert soak_document(minute(1, 1000, 5))["autovacuums"] == 1


@pytest.mark.parametrize(
    ("argv", "prefill", "minutes"),
    [
        (["--soak"], SOAK_PREFILL_ROWS, SOAK_MINUTES),
        (["--soak", "--soak-prefill", "0", "--soak-minutes", "2"], 0, 2),
    ],
)
def test_a_default_soak_prefills_so_that_it_can_pass_the_rows(
    argv: list[str], prefill: int, minutes: int
) -> None:
    args = arguments.parse(argv)

    assert (args.soak_prefill, args.soak_minutes) == (prefill, minutes)
    # At 4,200 jobs/s, half of partial-100's on the quiet 2-core machine.
    assert SOAK_PREFILL_ROWS + SOAK_MINUTES * 60 * 4_200 >= SOAK_PAST_ROWS > SOAK_PREFILL_ROWS


def test_a_negative_prefill_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        arguments.parse(["--soak", "--soak-prefill", "-1"])
    assert "--soak-prefill must be 0 or more" in capsys.readouterr().err
