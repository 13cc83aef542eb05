"""Job ids are time-ordered UUIDs (version 7 of RFC 9562), made by new_job_id() in Postgres.

They keep the jobs primary key (user_id, job_id) appending where random ids scattered its
inserts (bench/README.md, the soak). The tests read the layout straight from the bits: the
first 48 are the Unix time in milliseconds, then the version, 12 bits of the millisecond's
fraction, the variant, and random bits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from tests.support.app import PARTIAL_ROUTES, post_json
from tests.support.bodies import batch, job
from tests.support.factories import user_with_config

# One statement makes this many, in order, over several milliseconds.
MANY = 5000


def unix_ms(job_id: UUID) -> int:
    """The time a version-7 id carries: milliseconds since the Unix epoch."""
    return job_id.int >> 80


def at(job_id: UUID) -> datetime:
    """The same time as a datetime in UTC."""
    return datetime.fromtimestamp(unix_ms(job_id) / 1000, UTC)


def assert_version_7(job_id: UUID) -> None:
    """Version nibble 7 and variant bits 10: RFC 9562's UUIDv7."""
    assert job_id.version == 7, job_id
    assert job_id.variant == uuid.RFC_4122, job_id
    assert (job_id.int >> 62) & 0b11 == 0b10, job_id


def new_ids(db: psycopg.Connection, count: int) -> list[UUID]:
    """`count` ids from new_job_id(), in the order they were made."""
    rows = db.execute(
        "SELECT new_job_id() FROM generate_series(1, %s) AS n ORDER BY n", [count]
    ).fetchall()
    return [row[0] for row in rows]


def test_new_job_id_makes_distinct_version_7_uuids(db: psycopg.Connection) -> None:
    ids = new_ids(db, MANY)

    for job_id in ids:
        assert_version_7(job_id)
    assert len(set(ids)) == MANY


def value_of(db: psycopg.Connection, query: str) -> Any:
    """The one value of the one row `query` returns."""
    row = db.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_ids_made_later_sort_after_earlier_ones(db: psycopg.Connection) -> None:
    """Across milliseconds always; within one by the microsecond, so only ids made in the
    same microsecond may sort either way."""
    ids = new_ids(db, MANY)
    one_by_one = []
    for _ in range(3):
        one_by_one.append(value_of(db, "SELECT new_job_id()"))
        db.execute("SELECT pg_sleep(0.002)")

    times = [unix_ms(job_id) for job_id in ids]
    assert times == sorted(times)
    assert times[-1] > times[0], "one statement spans several milliseconds"
    in_order = sum(earlier < later for earlier, later in pairwise(ids))
    assert in_order >= 0.9 * (MANY - 1)
    assert one_by_one == sorted(one_by_one)
    # Postgres orders uuids byte by byte, as Python does.
    row = db.execute("SELECT array_agg(u ORDER BY u) FROM unnest(%s::uuid[]) AS u", [ids])
    assert row.fetchone() == (sorted(ids),)


def test_an_id_carries_the_time_it_was_made(db: psycopg.Connection) -> None:
    row = db.execute("SELECT clock_timestamp(), new_job_id(), clock_timestamp()").fetchone()
    assert row is not None
    before, job_id, after = row

    # Milliseconds are truncated: the id may read up to 1 ms before the clock.
    assert before - timedelta(milliseconds=1) < at(job_id) <= after
    assert abs(at(job_id) - datetime.now(UTC)) < timedelta(seconds=5)


def test_new_job_id_has_the_layout_of_postgres_18s_uuidv7(db: psycopg.Connection) -> None:
    """Where the server has uuidv7() (18 and later), ids of both sort together by time."""
    has_uuidv7 = db.execute("SELECT to_regprocedure('uuidv7()') IS NOT NULL").fetchone()
    if not has_uuidv7 or not has_uuidv7[0]:
        pytest.skip("this server has no uuidv7()")
    made = []
    for function in ("uuidv7", "new_job_id", "uuidv7", "new_job_id"):
        made.append(value_of(db, f"SELECT {function}()"))
        db.execute("SELECT pg_sleep(0.002)")

    assert made == sorted(made)
    for job_id in made:
        assert_version_7(job_id)


def test_admitted_jobs_get_time_ordered_ids(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Accepted and rejected alike, through the real route, as stored."""
    user_id = user_with_config(db, {"openai": {"capacity": 2, "refill_per_second": 0}})
    before = value_of(db, "SELECT clock_timestamp()")

    first = post_json(app_client, PARTIAL_ROUTES[0], user_id, batch(*[job(5, {"openai": 1})] * 3))
    second = post_json(app_client, PARTIAL_ROUTES[0], user_id, batch(job(5, {"openai": 1})))

    after = value_of(db, "SELECT clock_timestamp()")
    assert first.status_code == second.status_code == 200
    answers = [*first.json["results"], *second.json["results"]]
    assert [answer["status"] for answer in answers] == ["Accepted"] * 2 + ["Rejected"] * 2
    ids = [UUID(answer["job_id"]) for answer in answers]
    for job_id in ids:
        assert_version_7(job_id)
        assert before - timedelta(milliseconds=1) < at(job_id) <= after
    assert max(ids[:3]) < ids[3], "a later request's ids sort after an earlier one's"
    stored = db.execute("SELECT job_id FROM jobs WHERE user_id = %s", [user_id]).fetchall()
    assert sorted(row[0] for row in stored) == sorted(ids)


def test_the_first_id_of_a_moment_bounds_the_ids_made_before_and_after_it(
    db: psycopg.Connection,
) -> None:
    """first_job_id_at(t) sorts after every id made before t and before every id made at t or
    later, so a range of moments is a range of ids; job_decided_at() reads the moment back,
    to the microsecond."""
    row = db.execute(
        "SELECT array_agg(new_job_id() ORDER BY n), clock_timestamp()"
        " FROM generate_series(1, 1000) AS n"
    ).fetchone()
    assert row is not None
    before, moment = row
    after = new_ids(db, 1000)
    bound = value_of(db, f"SELECT first_job_id_at('{moment.isoformat()}')")
    assert max(before) < bound <= min(after)
    # Version 7, and nothing but zeros after the moment (Python reads no version without the
    # variant bits).
    assert (bound.int >> 76) & 0xF == 7 and bound.int & (2**64 - 1) == 0

    for job_id in (before[0], after[-1]):
        decided = value_of(db, f"SELECT job_decided_at('{job_id}')")
        assert at(job_id) <= decided < at(job_id) + timedelta(milliseconds=1)
    # Every microsecond of a millisecond, and more, comes back exactly.
    row = db.execute(
        "SELECT count(*) FROM generate_series(0, 2500) AS n,"
        " LATERAL (SELECT now() + n * interval '1 microsecond') AS m(t)"
        " WHERE job_decided_at(first_job_id_at(m.t)) <> m.t"
    ).fetchone()
    assert row == (0,)


def test_job_id_version_tells_time_ordered_ids_from_random_ones(db: psycopg.Connection) -> None:
    row = db.execute(
        "SELECT job_id_version(new_job_id()), job_id_version(gen_random_uuid())"
    ).fetchone()
    assert row == (7, 4)
