"""The advisory locks atomic batches queue on (janus/db/jobs.py, queries.LOCK_BUCKETS_FOR_ATOMIC).

An atomic batch locks the buckets it names before its SERIALIZABLE transaction begins, and
releases them after it, whatever the outcome. These tests hold a bucket's lock from another
session to show who waits for it and what a wait does, and read pg_locks after every kind of
answer: a pooled connection never keeps an advisory lock for its next request. The many
concurrent batches of one hot bucket are in tests/test_concurrency.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest

from janus import metrics
from janus.db import queries
from janus.db.jobs import MAX_BUCKET_LOCKS
from janus.settings import Settings
from tests.support.app import ATOMIC_ROUTES, PARTIAL_ROUTES, SINGLE_ROUTES, post_json, serve_app
from tests.support.bodies import batch, job, single
from tests.support.factories import bucket_tokens, create_user, user_with_config

ATOMIC = ATOMIC_ROUTES[0]
# Short, so that a request that waits for a held lock answers 503 at once.
SHORT_LOCK_TIMEOUT_MS = 300
# Long, so that a request that waits is still waiting when the test acts.
LONG_LOCK_TIMEOUT_MS = 30_000


def advisory_locks(db: psycopg.Connection, *, but_mine: bool = False) -> int:
    """How many advisory locks any session of this test's database holds (`but_mine`: other
    than `db`'s)."""
    row = db.execute(
        """
        SELECT count(*) FROM pg_locks l
          JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND d.datname = current_database()
           AND (NOT %s OR l.pid <> pg_backend_pid())
        """,
        [but_mine],
    ).fetchone()
    assert row is not None
    return int(row[0])


def hold_bucket_locks(db: psycopg.Connection, user_id: UUID, *names: str) -> None:
    """Take, on `db`, the locks an atomic batch naming `names` would take."""
    db.execute(
        queries.LOCK_BUCKETS_FOR_ATOMIC, {"user_id": user_id, "dependency_names": list(names)}
    )


def release_all(db: psycopg.Connection) -> None:
    """Release every advisory lock `db` holds."""
    db.execute(queries.RELEASE_ADVISORY_LOCKS)


def lock_key(db: psycopg.Connection, user_id: UUID, name: str) -> int:
    """The key of `name`'s bucket lock, as lock_buckets_for_atomic computes it."""
    hold_bucket_locks(db, user_id, name)
    row = db.execute(
        """
        SELECT (l.classid::bigint << 32) | l.objid::bigint
          FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid()
        """
    ).fetchone()
    release_all(db)
    assert row is not None
    return int(row[0])


def waiting_for_advisory_lock(db: psycopg.Connection) -> bool:
    """Whether a session of the service waits for an advisory lock now."""
    row = db.execute(
        """
        SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'janus'
           AND wait_event_type = 'Lock' AND wait_event = 'advisory'
        """
    ).fetchone()
    return row is not None and row[0] > 0


def retried() -> float:
    """Transactions this process has run again after a conflict."""
    counted: float = sum(
        metrics.CONFLICT_RETRIES.labels(conflict)._value.get()
        for conflict in ("serialization_failure", "deadlock")
    )
    return counted


@pytest.fixture
def client(database_url: str) -> Iterator[falcon.testing.TestClient]:
    """The real app whose requests give up on a lock after SHORT_LOCK_TIMEOUT_MS."""
    settings = Settings(database_url=database_url, lock_timeout_ms=SHORT_LOCK_TIMEOUT_MS)
    with serve_app(settings) as test_client:
        yield test_client


def hot_user(db: psycopg.Connection, **config: Any) -> UUID:
    """A user with two buckets of 100 tokens that never refill."""
    buckets = {name: {"capacity": 100, "refill_per_second": 0} for name in ("a", "b")}
    return user_with_config(db, buckets, **config)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("accepted", 202),
        ("rejected atomically", 207),
        ("paused", 403),
        ("no active config", 403),
        ("unknown user", 401),
    ],
)
def test_no_advisory_lock_outlives_an_atomic_batch(
    client: falcon.testing.TestClient, db: psycopg.Connection, case: str, status: int
) -> None:
    """Accepted or refused, and refused by the database before any decision too."""
    user_id = {
        "accepted": lambda: hot_user(db),
        "rejected atomically": lambda: hot_user(db),
        "paused": lambda: hot_user(db, paused=True),
        "no active config": lambda: create_user(db),
        "unknown user": lambda: uuid4(),
    }[case]()
    costs = {"rejected atomically": 101}.get(case, 1)
    body = batch(job(5, {"a": costs, "b": 1}), job(5, {"b": 2}))

    # Twice: the pool's two connections may each serve one.
    answers = [post_json(client, ATOMIC, user_id, body) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [status] * 2
    assert advisory_locks(db) == 0


def test_an_atomic_batch_that_times_out_on_a_bucket_lock_is_a_503_and_keeps_no_lock(
    client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    """Like a row lock's: lock_timeout, then 503 with Retry-After, and nothing taken.

    Another session holds the lock that sorts last, so the batch has taken the other one when
    it gives up: that one must be released too.
    """
    user_id = hot_user(db)
    last = max(("a", "b"), key=lambda name: lock_key(db, user_id, name))
    hold_bucket_locks(db, user_id, last)
    timed_out = metrics.UNAVAILABLE.labels("lock_timeout")._value.get()

    answer = post_json(client, ATOMIC, user_id, batch(job(5, {"a": 1, "b": 1})))

    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) >= 1
    assert metrics.UNAVAILABLE.labels("lock_timeout")._value.get() == timed_out + 1
    assert advisory_locks(db, but_mine=True) == 0
    release_all(db)
    assert bucket_tokens(db, user_id, "a") == bucket_tokens(db, user_id, "b") == 100
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (SINGLE_ROUTES[0], single(5, {"a": 1})),
        (PARTIAL_ROUTES[0], batch(job(5, {"a": 1}), job(5, {"a": 2}))),
        ("/dashboard/jobs/quote", {**batch(job(5, {"a": 1})), "atomic": True}),
        ("/dashboard/jobs/quote", {**batch(job(5, {"a": 1})), "atomic": False}),
    ],
    ids=["single", "partial", "atomic quote", "partial quote"],
)
def test_only_atomic_batches_wait_for_the_bucket_locks(
    client: falcon.testing.TestClient, db: psycopg.Connection, path: str, body: dict[str, Any]
) -> None:
    """With the bucket's lock held elsewhere, the others are decided at once."""
    user_id = hot_user(db)
    hold_bucket_locks(db, user_id, "a")

    answer = post_json(client, path, user_id, body)
    atomic = post_json(client, ATOMIC, user_id, batch(job(5, {"a": 1})))

    assert answer.status_code in (200, 202), answer.json
    assert atomic.status_code == 503
    release_all(db)
    assert advisory_locks(db) == 0


@pytest.mark.parametrize(
    ("buckets", "status"), [(MAX_BUCKET_LOCKS, 503), (MAX_BUCKET_LOCKS + 1, 202)]
)
def test_a_batch_naming_more_buckets_than_it_may_lock_takes_no_lock(
    client: falcon.testing.TestClient, db: psycopg.Connection, buckets: int, status: int
) -> None:
    """Up to MAX_BUCKET_LOCKS buckets, a batch waits for the lock held on one of them; beyond,
    it takes none and is decided at once, so that one request cannot fill Postgres's lock
    table."""
    names = [f"d{n:03}" for n in range(buckets)]
    user_id = user_with_config(
        db, {name: {"capacity": 9, "refill_per_second": 0} for name in names}
    )
    hold_bucket_locks(db, user_id, names[0])
    # A job names 32 dependencies at most: the buckets are spread over jobs of up to 20.
    jobs = [job(5, dict.fromkeys(names[k : k + 20], 1)) for k in range(0, buckets, 20)]

    answer = post_json(client, ATOMIC, user_id, batch(*jobs))

    assert answer.status_code == status, answer.json
    assert advisory_locks(db, but_mine=True) == 0


def test_an_atomic_batch_takes_its_snapshot_once_it_holds_its_locks(
    database_url: str, db: psycopg.Connection
) -> None:
    """A single job commits a debit while an atomic batch waits for the bucket's lock: the
    batch then sees that debit, and takes its own without a serialization failure.

    Were the snapshot taken before the wait, the batch would fail at the bucket's row and be
    retried (the counter would move).
    """
    user_id = hot_user(db)
    hold_bucket_locks(db, user_id, "a")
    settings = Settings(database_url=database_url, lock_timeout_ms=LONG_LOCK_TIMEOUT_MS)
    retried_before = retried()
    with serve_app(settings) as client:
        answers: list[falcon.testing.Result] = []
        waiting = threading.Thread(
            target=lambda: answers.append(
                post_json(client, ATOMIC, user_id, batch(job(5, {"a": 10}), job(5, {"b": 1})))
            )
        )
        waiting.start()
        deadline = time.monotonic() + 10
        while not waiting_for_advisory_lock(db):
            assert time.monotonic() < deadline, "the atomic batch never waited for its lock"
            time.sleep(0.01)
        assert post_json(client, SINGLE_ROUTES[0], user_id, single(5, {"a": 7})).status_code == 202
        release_all(db)
        waiting.join(timeout=10)

    assert [answer.status_code for answer in answers] == [202]
    assert retried() == retried_before
    assert bucket_tokens(db, user_id, "a") == 100 - 7 - 10
    assert advisory_locks(db) == 0
