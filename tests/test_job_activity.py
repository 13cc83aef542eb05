"""GET /dashboard/activity: a user's jobs per minute over the last hour, counted in Postgres
from the jobs table, at most a fixed number of them per read (janus.db.history.job_activity)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import falcon
import falcon.testing
import psycopg
import pytest

from janus.db import queries
from janus.db.history import HistoryStore, activity_params
from janus.db.keys import KeyStoreOnPool
from janus.db.pool import make_pool
from janus.history import ACTIVITY_MINUTES
from janus.keys import Scope
from janus.resources.auth import AuthMiddleware
from janus.resources.errors import add_error_handlers
from janus.resources.history import ActivityResource
from janus.settings import Settings
from tests.support.answers import RATE_LIMITED, assert_clear_error
from tests.support.app import headers_for, post_json
from tests.support.factories import user_with_config
from tests.support.history import ACTIVITY, insert_jobs
from tests.support.plans import plan_nodes
from tests.support.seed import SEED_SINGLE

MINUTE = timedelta(minutes=1)
MICROSECOND = timedelta(microseconds=1)
TOO_LOW = "priority too low"


def _current_minute(db: psycopg.Connection) -> datetime:
    """The database clock's current minute (UTC), not in its last seconds: a test that places
    jobs by minute then reads them before the minute turns."""
    while True:
        row = db.execute("SELECT now()").fetchone()
        assert row is not None
        now: datetime = row[0].astimezone(UTC)
        if now.second < 55:
            return now.replace(second=0, microsecond=0)
        time.sleep(60.5 - now.second - now.microsecond / 1e6)


def _activity(client: falcon.testing.TestClient, user_id: UUID) -> dict[str, Any]:
    answer = client.simulate_get(ACTIVITY, headers=headers_for(user_id))
    assert answer.status_code == 200, answer.text
    assert list(answer.json) == ["minutes", "counted_since"]
    body: dict[str, Any] = answer.json
    return body


def _by_minute(body: dict[str, Any]) -> dict[datetime, tuple[Any, Any]]:
    return {
        datetime.fromisoformat(item["minute"]): (item["accepted"], item["rejected"])
        for item in body["minutes"]
    }


def _store(
    db: psycopg.Connection,
    user_id: UUID,
    when: datetime,
    count: int = 1,
    reason: str | None = None,
    spacing_s: float = 0,
) -> None:
    """`count` jobs of `user_id`, the newest at `when` (all of them, unless spaced): accepted,
    or rejected for `reason`."""
    if reason is None:
        insert_jobs(db, user_id, count, newest=when, spacing_s=spacing_s)
    else:
        insert_jobs(
            db,
            user_id,
            count,
            newest=when,
            spacing_s=spacing_s,
            status="Rejected",
            state=None,
            reason=reason,
        )


@pytest.fixture
def capped_client(database_url: str) -> Iterator[Any]:
    """A client of GET /dashboard/activity over a HistoryStore that counts at most `cap` jobs:
    `capped_client(cap)`."""
    settings = Settings(database_url=database_url)
    pool = make_pool(settings)
    pool.open(wait=True)

    def client(cap: int) -> falcon.testing.TestClient:
        app = falcon.App(
            middleware=[
                AuthMiddleware(
                    KeyStoreOnPool(pool),
                    {(ACTIVITY, "GET"): (Scope.READ,)},
                    service_token=None,
                    keys_required=False,
                )
            ]
        )
        add_error_handlers(app)
        app.add_route(ACTIVITY, ActivityResource(HistoryStore(pool, activity_max_jobs=cap)))
        return falcon.testing.TestClient(app)

    try:
        yield client
    finally:
        pool.close()


def test_every_minute_of_the_hour_oldest_first_with_jobs_by_minute_and_reason(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    now = _current_minute(db)
    _store(db, ten_token_user, now - 5 * MINUTE + timedelta(seconds=10), count=3, spacing_s=1)
    _store(
        db, ten_token_user, now - 5 * MINUTE + timedelta(seconds=40), count=2, reason=RATE_LIMITED
    )
    _store(db, ten_token_user, now - 20 * MINUTE + timedelta(seconds=59.999999), reason=TOO_LOW)
    _store(
        db,
        ten_token_user,
        now - 20 * MINUTE + timedelta(seconds=0.003),
        count=4,
        reason=RATE_LIMITED,
        spacing_s=0.001,
    )
    _store(db, ten_token_user, now)

    body = _activity(app_client, ten_token_user)

    minutes = [datetime.fromisoformat(item["minute"]) for item in body["minutes"]]
    assert minutes == [now - (ACTIVITY_MINUTES - 1 - n) * MINUTE for n in range(ACTIVITY_MINUTES)]
    assert all(item["minute"].endswith(":00+00:00") for item in body["minutes"])
    counts = _by_minute(body)
    assert counts.pop(now - 5 * MINUTE) == (3, {RATE_LIMITED: 2})
    # Reasons in name order.
    assert counts.pop(now - 20 * MINUTE) == (0, {RATE_LIMITED: 4, TOO_LOW: 1})
    assert list(_by_minute(body)[now - 20 * MINUTE][1]) == [RATE_LIMITED, TOO_LOW]
    assert counts.pop(now) == (1, {})
    # Every other minute is there, with zeros, not left out.
    assert list(counts.values()) == [(0, {})] * (ACTIVITY_MINUTES - 3)
    assert body["counted_since"] is None


def test_the_hour_starts_at_the_first_minutes_first_microsecond(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    now = _current_minute(db)
    first = now - (ACTIVITY_MINUTES - 1) * MINUTE
    _store(db, ten_token_user, first)
    _store(db, ten_token_user, first - MICROSECOND, count=5, spacing_s=1)
    _store(db, ten_token_user, first - 2 * MINUTE, count=5, reason=RATE_LIMITED)
    # After the current minute (a clock ahead, say): not in any minute shown.
    _store(db, ten_token_user, now + MINUTE, count=7)

    body = _activity(app_client, ten_token_user)

    counts = _by_minute(body)
    assert next(iter(counts)) == first
    assert counts[first] == (1, {})
    assert sum(accepted for accepted, _ in counts.values()) == 1
    assert all(rejected == {} for _, rejected in counts.values())


def test_another_users_jobs_are_never_counted(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    other = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    now = _current_minute(db)
    _store(db, other, now - 3 * MINUTE, count=50)
    _store(db, other, now - 3 * MINUTE, count=20, reason=RATE_LIMITED)
    _store(db, ten_token_user, now - 3 * MINUTE, count=2)

    assert _by_minute(_activity(app_client, ten_token_user))[now - 3 * MINUTE] == (2, {})
    assert _by_minute(_activity(app_client, other))[now - 3 * MINUTE] == (50, {RATE_LIMITED: 20})


def test_a_job_answered_accepted_in_shadow_mode_counts_as_accepted(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    shadow = user_with_config(
        db,
        {
            "openai": {"capacity": 2, "refill_per_second": 0},
            "stripe": {"capacity": 1, "refill_per_second": 0},
        },
        mode="shadow",
    )
    answers = [post_json(app_client, "/dashboard/jobs", shadow, SEED_SINGLE) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [202, 202]
    row = db.execute(
        "SELECT count(*) FROM jobs WHERE user_id = %s AND shadow_status = 'Rejected'", [shadow]
    ).fetchone()
    assert row == (1,)

    counts = _by_minute(_activity(app_client, shadow))
    assert sum(accepted for accepted, _ in counts.values()) == 2
    assert all(rejected == {} for _, rejected in counts.values())


def test_past_the_cap_the_count_starts_after_the_oldest_job_read_and_earlier_minutes_are_null(
    capped_client: Any, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    now = _current_minute(db)
    _store(db, ten_token_user, now - 3 * MINUTE + timedelta(seconds=30), count=3)
    oldest_read = now - 2 * MINUTE + timedelta(seconds=10)
    _store(db, ten_token_user, oldest_read)
    _store(db, ten_token_user, now - 2 * MINUTE + timedelta(seconds=20), reason=TOO_LOW)
    _store(db, ten_token_user, now - MINUTE + timedelta(seconds=5), count=3)

    # The newest 4 are counted: the three of now - 1 and one of now - 2 (read: 5).
    body = _activity(capped_client(4), ten_token_user)

    since = oldest_read + MICROSECOND
    assert datetime.fromisoformat(body["counted_since"]) == since
    assert body["counted_since"].endswith("+00:00")
    counts = _by_minute(body)
    assert counts.pop(now) == (0, {})
    assert counts.pop(now - MINUTE) == (3, {})
    # The minute counted_since falls in: its jobs from counted_since on.
    assert counts.pop(now - 2 * MINUTE) == (0, {TOO_LOW: 1})
    # Every minute that ended before counted_since: not counted, so null (never a wrong 0).
    assert list(counts.values()) == [(None, None)] * (ACTIVITY_MINUTES - 3)

    # With room for every job of the hour, everything is counted.
    every = _activity(capped_client(8), ten_token_user)
    assert every["counted_since"] is None
    assert _by_minute(every)[now - 3 * MINUTE] == (3, {})


def test_jobs_of_the_oldest_moment_read_are_left_out_together(
    capped_client: Any, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    """Jobs of one microsecond (a batch's) are counted all or none: the cap may have read
    only some of them, so none of that moment is counted."""
    now = _current_minute(db)
    batch_at = now - 4 * MINUTE + timedelta(seconds=30)
    _store(db, ten_token_user, batch_at, count=3, spacing_s=0)
    _store(db, ten_token_user, batch_at + timedelta(seconds=1), reason=TOO_LOW)

    body = _activity(capped_client(2), ten_token_user)

    assert datetime.fromisoformat(body["counted_since"]) == batch_at + MICROSECOND
    assert _by_minute(body)[now - 4 * MINUTE] == (0, {TOO_LOW: 1})
    assert _by_minute(body)[now - 5 * MINUTE] == (None, None)


def test_unknown_parameters_are_400_and_unknown_users_401(
    app_client: falcon.testing.TestClient, ten_token_user: UUID
) -> None:
    answer = app_client.simulate_get(
        ACTIVITY, params={"minutes": "5", "since": "x"}, headers=headers_for(ten_token_user)
    )
    body = assert_clear_error(answer, 400)
    assert sorted(body["errors"]) == ["minutes", "since"]
    assert_clear_error(app_client.simulate_get(ACTIVITY), 401)
    assert_clear_error(app_client.simulate_get(ACTIVITY, headers=headers_for(uuid4())), 401)
    assert_clear_error(app_client.simulate_get(ACTIVITY, headers=headers_for("nope")), 401)
    assert_clear_error(app_client.simulate_post(ACTIVITY, headers=headers_for(ten_token_user)), 405)


def test_a_user_without_jobs_or_config_gets_sixty_zeros(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    bare = user_with_config(db, {})
    body = _activity(app_client, bare)
    assert [(item["accepted"], item["rejected"]) for item in body["minutes"]] == [
        (0, {})
    ] * ACTIVITY_MINUTES


# --- the work of one read ---


def _jobs_read(db: psycopg.Connection, user_id: UUID, cap: int) -> list[dict[str, Any]]:
    """The plan nodes that read the jobs table, as EXPLAIN ANALYZE ran them."""
    nodes = plan_nodes(db, queries.JOB_ACTIVITY, activity_params(db, user_id, cap), analyze=True)
    return [node for node in nodes if node.get("Relation Name") == "jobs"]


def test_one_read_reads_at_most_the_cap_and_one_more_of_one_users_jobs(
    db: psycopg.Connection, ten_token_user: UUID
) -> None:
    """However many jobs the hour holds, and however many older ones there are, the count
    walks jobs_pkey within the user's key and the hour's ids, and stops after cap + 1."""
    quiet = user_with_config(db, {})
    neighbour = user_with_config(db, {})
    for who in (ten_token_user, neighbour):
        insert_jobs(db, who, 20_000, spacing_s=0.1)
    insert_jobs(db, quiet, 20_000, newest=datetime.now(UTC) - timedelta(hours=2))
    insert_jobs(db, quiet, 3, spacing_s=60)
    db.execute("VACUUM ANALYZE jobs")

    # jobs is partitioned (migration 0024): one read of each partition the hour's ids reach,
    # each walking jobs_pkey within the user's key and the hour; together the cap and one more.
    busy_reads = _jobs_read(db, ten_token_user, 500)
    assert {read["Node Type"] for read in busy_reads} == {"Index Scan"}
    assert {read["Index Name"] for read in busy_reads} == {"jobs_pkey"}
    assert all("user_id" in r["Index Cond"] and "job_id >=" in r["Index Cond"] for r in busy_reads)
    assert 501 <= sum(read["Actual Rows"] for read in busy_reads) <= 501 + len(busy_reads)
    # Older jobs are outside the index range read: none of them is walked past.
    quiet_reads = _jobs_read(db, quiet, 500)
    assert {read["Index Name"] for read in quiet_reads} == {"jobs_pkey"}
    assert sum(read["Actual Rows"] for read in quiet_reads) == 3
    assert sum(read.get("Rows Removed by Filter", 0) for read in quiet_reads) == 0
