"""A user holds at most its share of a worker's connections (janus/db/pool.py's UserShare):
beyond it, its requests wait for one of its own and are then refused with 429, while another
user's are served from the rest. Over real HTTP, one gunicorn worker of two connections (a
user's share is one)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
import requests

from janus.admission import UserBusy
from janus.db.pool import UserShare
from janus.settings import Settings
from tests.conftest import StartGunicorn
from tests.support.app import headers_for, serve_app
from tests.support.factories import user_with_config

LIMITS = {"openai": {"capacity": 1000, "refill_per_second": 0}}
JOB: dict[str, Any] = {
    "batch_name": "b",
    "tenant_id": "t",
    "priority": 5,
    "dependencies": {"openai": 1},
}


def test_a_user_past_its_share_waits_for_its_own_then_gets_429_and_others_are_served(
    start_gunicorn: StartGunicorn, db: psycopg.Connection, database_url: str
) -> None:
    # The hog's job waits on its bucket's row for as long as the test holds it.
    server = start_gunicorn(
        workers=1, env={"JANUS_POOL_TIMEOUT_MS": "1000", "JANUS_LOCK_TIMEOUT_MS": "20000"}
    )
    hog = user_with_config(db, LIMITS)
    other = user_with_config(db, LIMITS)

    def post(user: UUID) -> requests.Response:
        return requests.post(
            f"{server.url}/system/jobs", json=JOB, headers={"X-User-ID": str(user)}, timeout=30
        )

    # The hog's bucket row is locked elsewhere: its atomic batch (held to its share, as its
    # reads are) holds its one connection, waiting.
    with psycopg.connect(database_url) as locker, ThreadPoolExecutor(4) as pool:
        locker.execute(
            "SELECT 1 FROM token_buckets WHERE user_id = %s FOR UPDATE", [hog]
        ).fetchall()
        stuck = pool.submit(
            requests.post,
            f"{server.url}/system/jobs/batch/atomic",
            json={
                "batch_name": "b",
                "jobs": [{"tenant_id": "t", "priority": 5, "dependencies": {"openai": 1}}],
            },
            headers={"X-User-ID": str(hog)},
            timeout=30,
        )
        time.sleep(0.5)
        started = time.monotonic()
        read = pool.submit(
            requests.get,
            f"{server.url}/dashboard/quotas",
            headers={"X-User-ID": str(hog)},
            timeout=30,
        )
        served = post(other)
        served_in = time.monotonic() - started

        refused = read.result()
        locker.rollback()
        assert stuck.result().status_code == 202, stuck.result().text

    assert served.status_code == 202, served.text
    # Not held up by the hog: well within the second the hog's read waited for its share.
    assert served_in < 0.9
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["description"] == (
        "too many requests of this user at once: each worker gives a user at most 1 of its 2"
        " database connections; retry shortly"
    )


def test_a_share_counts_each_users_connections_apart() -> None:
    share = UserShare(per_user=2)
    a, b = uuid4(), uuid4()
    assert share.take(a, 0) and share.take(a, 0)
    assert not share.take(a, 0.05)
    assert share.take(b, 0)

    freed = threading.Timer(0.1, share.give_back, [a])
    freed.start()
    assert share.take(a, 5)  # waited for its own to come back
    freed.join()


def test_user_busy_says_the_share_and_the_pool() -> None:
    with pytest.raises(UserBusy, match="at most 3 of its 6 database connections"):
        raise UserBusy(3, 6)


def test_a_history_page_gives_up_at_its_own_timeout_well_before_the_admission_paths(
    database_url: str, db: psycopg.Connection, open_user: UUID
) -> None:
    settings = Settings(database_url=database_url, history_statement_timeout_ms=200)
    with serve_app(settings) as client, psycopg.connect(database_url) as locker:
        # The page's statement waits on the table (lock_timeout 2 s, statement_timeout 5 s):
        # only the page's own timeout ends it.
        locker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        page = client.simulate_get("/dashboard/jobs", headers=headers_for(open_user))
        took = time.monotonic() - started
        locker.rollback()

        assert page.status_code == 503, page.text
        assert page.headers["Retry-After"]
        assert took < 1.5
        assert (
            client.simulate_get("/dashboard/jobs", headers=headers_for(open_user)).status_code
            == 200
        )


def test_a_users_reads_run_one_at_a_time_and_one_kept_waiting_gets_429(
    database_url: str, db: psycopg.Connection, open_user: UUID
) -> None:
    other = user_with_config(db, LIMITS)
    settings = Settings(database_url=database_url, history_statement_timeout_ms=400)
    with serve_app(settings) as client, psycopg.connect(database_url) as reader:
        # A read of the user under way elsewhere: it holds the user's read lock.
        reader.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('janus reads ' || %s::text, 0))",
            [open_user],
        )
        for path in ("/dashboard/jobs", "/dashboard/activity"):
            waited = client.simulate_get(path, headers=headers_for(open_user))
            assert waited.status_code == 429, waited.text
            assert waited.headers["Retry-After"] == "1"
            assert waited.json["description"].startswith("too many reads of this user at once")
        # Another user's reads have a lock of their own.
        assert client.simulate_get("/dashboard/jobs", headers=headers_for(other)).status_code == 200
        reader.rollback()
        assert (
            client.simulate_get("/dashboard/jobs", headers=headers_for(open_user)).status_code
            == 200
        )
