"""GET /metrics's queue gauges: the jobs of every user by state and the age of the oldest
claimable job, read from the database at the scrape, and left out, the rest still served,
when the database does not answer.

In-process through the real app and a real database; tests/test_metrics.py checks them
through gunicorn's workers (one value, not one per worker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from devtools.ports import free_port
from janus import metrics
from janus.db import queue_depth
from janus.settings import Settings
from tests.support.app import post_json, serve_app
from tests.support.factories import user_with_config
from tests.support.queue import (
    OLDEST_DUE_S,
    OLDEST_QUEUED_S,
    claim,
    expire_lease,
    queue_in_every_state,
    queued_job,
    submit,
)
from tests.test_metrics import Samples, decision, parse, value

JOBS = "janus_queue_jobs"
OLDEST = "janus_queue_oldest_claimable_seconds"
UNREAD = "janus_queue_unread_total"


def scrape(client: falcon.testing.TestClient) -> Samples:
    """Every sample of GET /metrics, which must answer 200."""
    answer = client.simulate_get("/metrics")
    assert answer.status_code == 200, answer.text
    return parse(answer.text)


def queue_gauges(samples: Samples) -> dict[str, float]:
    """The queue gauges of a scrape, by state and `oldest`."""
    gauges = {
        dict(labels)["state"]: sample for (name, labels), sample in samples.items() if name == JOBS
    }
    if (OLDEST, ()) in samples:
        gauges["oldest"] = samples[OLDEST, ()]
    return gauges


def test_an_empty_queue_is_zero_jobs_in_each_state_and_no_claimable_job(
    app_client: falcon.testing.TestClient,
) -> None:
    assert queue_gauges(scrape(app_client)) == {
        "waiting": 0,
        "queued": 0,
        "running": 0,
        "oldest": 0,
    }


def test_the_gauges_count_every_users_jobs_by_state_and_the_oldest_claimable(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    scene = queue_in_every_state(app_client, db)

    samples = scrape(app_client)
    gauges = queue_gauges(samples)

    # Completed jobs are not in the queue; idle's waiting job whose run_at passed is the
    # oldest claimable job, older than busy's oldest queued one.
    assert {state: gauges[state] for state in ("waiting", "queued", "running")} == {
        "waiting": 2,
        "queued": 3,
        "running": 3,
    }
    assert OLDEST_DUE_S <= gauges["oldest"] < OLDEST_DUE_S + 60
    # No user, and no job, in any label.
    named = [key for key in samples if str(scene.busy) in str(key) or str(scene.idle) in str(key)]
    assert named == []
    assert {labels for name, labels in samples if name == JOBS} == {
        (("state", "waiting"),),
        (("state", "queued"),),
        (("state", "running"),),
    }

    # While its run_at is to come, the waiting job is not claimable: busy's oldest queued
    # job is the oldest one.
    db.execute(
        "UPDATE jobs SET run_at = now() + interval '1 hour' WHERE job_id = %s",
        [UUID(scene.oldest_due)],
    )
    assert OLDEST_QUEUED_S <= queue_gauges(scrape(app_client))["oldest"] < OLDEST_DUE_S


def test_a_scrape_with_the_jobs_table_locked_leaves_the_queue_gauges_out_after_a_second(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = scrape(app_client)
    with db.transaction():
        db.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        locked = scrape(app_client)
        waited = time.monotonic() - started
    after = scrape(app_client)

    # Bounded by the scrape's own statement_timeout, well before the pool's (5 s) or the
    # lock_timeout (2 s); the other metrics are all there.
    assert queue_depth.STATEMENT_TIMEOUT_MS / 1000 <= waited < 1.9
    assert queue_gauges(locked) == {}
    assert ("janus_unavailable_total", (("cause", "connection"),)) in locked
    unread = value(locked, UNREAD, cause="statement_timeout")
    assert unread == value(before, UNREAD, cause="statement_timeout") + 1
    assert "queue gauges left out of the scrape" in caplog.text
    # The next scrape reads them again.
    assert set(queue_gauges(after)) == {"waiting", "queued", "running", "oldest"}


@pytest.fixture
def client_without_database() -> Iterator[falcon.testing.TestClient]:
    """The real app, its pool opened as janus/wsgi.py opens it, on a port no Postgres
    listens on: the database down."""
    settings = Settings(database_url=f"postgresql://janus@127.0.0.1:{free_port()}/janus")
    with serve_app(settings, wait_for_database=False) as client:
        yield client


def test_a_scrape_with_the_database_down_serves_every_other_metric(
    client_without_database: falcon.testing.TestClient,
) -> None:
    unread_before = metrics.QUEUE_UNREAD.labels("pool_timeout")._value.get()

    started = time.monotonic()
    samples = scrape(client_without_database)
    waited = time.monotonic() - started

    # No connection within the scrape's 1 s: the gauges are left out, the rest served.
    assert queue_depth.CONNECTION_TIMEOUT_S <= waited < 1.9
    assert queue_gauges(samples) == {}
    assert value(samples, UNREAD, cause="pool_timeout") == unread_before + 1
    accepted = decision("system", "single", "accepted", "none")
    assert ("janus_decisions_total", tuple(sorted(accepted.items()))) in samples


def test_claims_count_the_leases_they_take_back_and_the_waiting_jobs_they_expire(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0.001}})
    before = scrape(app_client)
    submit(app_client, user, queued_job({"openai": 8}))
    [claimed] = claim(app_client, user, limit=1)
    waiting = post_json(
        app_client,
        "/system/jobs",
        user,
        {**queued_job({"openai": 8}), "when_limited": "wait"},
    ).json["job_id"]
    expire_lease(db, claimed["job_id"])
    db.execute(
        "UPDATE jobs SET expires_at = now() - interval '1 second' WHERE job_id = %s", [waiting]
    )

    claim(app_client, user, limit=10)

    after = scrape(app_client)
    for name in ("janus_jobs_lease_expired_total", "janus_jobs_expired_total"):
        assert value(after, name) - value(before, name) == 1, name
