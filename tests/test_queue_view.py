"""GET /dashboard/queue: the user's jobs by state and by dependency, the ages of the oldest
waiting and queued jobs, and how long each bucket takes to cover what waits; in process over
real Postgres, the bounds of one read on a connection, and once through gunicorn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
import requests

from janus.db.queue_view import user_queue
from janus.queue_view import ENDED_WINDOW_SECONDS
from tests.conftest import StartGunicorn
from tests.support.answers import assert_clear_error
from tests.support.app import headers_for
from tests.support.factories import user_with_config
from tests.support.fixtures import QUEUE_LIMITS
from tests.support.queue import claim, lease_call, queued_job, submit

QUEUE = "/dashboard/queue"
STATES = ["waiting", "queued", "running", "completed", "failed", "cancelled", "expired"]
ANSWER_KEYS = [
    "states", "ended_since", "oldest_waiting_seconds", "oldest_queued_seconds", "dependencies",
    "drain_seconds", "truncated",
]  # fmt: skip
DEPENDENCY_KEYS = [
    "dependency", "waiting", "queued", "running", "waiting_tokens", "queued_tokens",
    "running_tokens", "tokens", "effective_refill_per_second", "drain_seconds",
]  # fmt: skip


@pytest.fixture
def user(queue_user: UUID) -> UUID:
    """openai never refills; search refills a token a second; anything else has no bucket."""
    return queue_user


def _queue(client: falcon.testing.TestClient, user_id: UUID) -> dict[str, Any]:
    answer = client.simulate_get(QUEUE, headers=headers_for(user_id))
    assert answer.status_code == 200, answer.text
    assert list(answer.json) == ANSWER_KEYS
    queue: dict[str, Any] = answer.json
    return queue


def _by_name(queue: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {one["dependency"]: one for one in queue["dependencies"]}


def test_the_queue_counts_each_state_and_what_each_dependency_waits_for(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    # Claimed first (priority 9): one completes, one fails to wait, one stays running.
    first = [submit(app_client, user, queued_job({"openai": 10}, priority=9)) for _ in range(3)]
    [done, waits, runs] = claim(app_client, user, limit=3)
    assert {done["job_id"], waits["job_id"], runs["job_id"]} == set(first)
    assert lease_call(app_client, user, done, "complete").status_code == 200
    failed = lease_call(app_client, user, waits, "fail", error="429", retry_after_seconds=600)
    assert failed.json["state"] == "waiting"
    # Queued: two openai jobs, one that also calls search and one with no bucket at all.
    submit(app_client, user, queued_job({"openai": 20, "search": 300}))
    submit(app_client, user, queued_job({"openai": 20, "elsewhere": 7}))
    cancelled = submit(app_client, user, queued_job({"search": 1}))
    answer = app_client.simulate_post(
        f"/dashboard/jobs/{cancelled}/cancel", headers=headers_for(user)
    )
    assert answer.status_code == 200, answer.text

    queue = _queue(app_client, user)

    assert queue["states"] == {
        "waiting": 1, "queued": 2, "running": 1, "completed": 1, "failed": 0, "cancelled": 1,
        "expired": 0,
    }  # fmt: skip
    assert queue["truncated"] is False
    assert 0 <= queue["oldest_queued_seconds"] <= queue["oldest_waiting_seconds"] < 60
    since = datetime.fromisoformat(queue["ended_since"])
    window = datetime.now(UTC) - timedelta(seconds=ENDED_WINDOW_SECONDS)
    assert abs(since - window) < timedelta(minutes=1)
    by_name = _by_name(queue)
    assert list(by_name) == ["elsewhere", "openai", "search"]
    assert all(list(one) == DEPENDENCY_KEYS for one in queue["dependencies"])
    # openai: 3 x 10 then 2 x 20 taken of 100 leaves 30. The queued jobs paid when they were
    # admitted; the 10 the waiting retry will pay when it is handed out again are there.
    assert by_name["openai"] == {
        "dependency": "openai", "waiting": 1, "queued": 2, "running": 1,
        "waiting_tokens": 10, "queued_tokens": 40, "running_tokens": 10, "tokens": 30,
        "effective_refill_per_second": 0, "drain_seconds": 0,
    }  # fmt: skip
    # search: 300 taken of 1,000 (the cancelled job's token came back), refilling since;
    # its 700 tokens cover the 300 queued.
    search = by_name["search"]
    assert (search["queued"], search["queued_tokens"], search["drain_seconds"]) == (1, 300, 0)
    assert 700 <= search["tokens"] <= 710 and search["effective_refill_per_second"] == 1
    # No bucket: no tokens, no drain, and nothing the overall drain waits for.
    assert by_name["elsewhere"]["tokens"] is None
    assert by_name["elsewhere"]["drain_seconds"] == 0  # nothing waits for it
    assert queue["drain_seconds"] == 0


def test_a_refilling_bucket_drains_what_it_lacks_at_its_rate(
    app_client: falcon.testing.TestClient, user: UUID
) -> None:
    for _ in range(3):
        submit(app_client, user, queued_job({"search": 300}))
    for _ in range(3):
        submit(app_client, user, {**queued_job({"search": 300}), "when_limited": "wait"})

    queue = _queue(app_client, user)

    search = _by_name(queue)["search"]
    # 100 tokens left, and what refilled since: the bucket lacks about 800 of the 900 the
    # waiting jobs will pay when they are handed out.
    lacking = search["waiting_tokens"] - Decimal(str(search["tokens"]))
    assert search["waiting_tokens"] == 900 and 790 < lacking <= 800
    # Seconds at 1 token a second, rounded up to milliseconds (the tokens shown are cut to
    # millionths: the drain is of the tokens before that cut).
    drain = Decimal(str(search["drain_seconds"]))
    assert lacking - Decimal("0.000001") <= drain < lacking + Decimal("0.001")
    assert queue["drain_seconds"] == search["drain_seconds"]
    assert _by_name(queue)["openai"]["drain_seconds"] == 0


def test_a_user_without_jobs_sees_every_bucket_with_nothing_to_drain(
    app_client: falcon.testing.TestClient, user: UUID, db: psycopg.Connection
) -> None:
    queue = _queue(app_client, user)

    assert queue["states"] == dict.fromkeys(STATES, 0)
    assert (queue["oldest_waiting_seconds"], queue["oldest_queued_seconds"]) == (None, None)
    assert [one["dependency"] for one in queue["dependencies"]] == ["openai", "search"]
    assert all(one["drain_seconds"] == 0 for one in queue["dependencies"])
    assert queue["drain_seconds"] == 0
    # Without a config there are no buckets either.
    nothing = user_with_config(db, {})
    assert _queue(app_client, nothing)["dependencies"] == []


def test_a_user_sees_only_its_own_queue(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    neighbour = user_with_config(db, QUEUE_LIMITS, unknown_dependencies="allow")
    for _ in range(4):
        submit(app_client, neighbour, queued_job({"openai": 5, "theirs": 1}))
    claim(app_client, neighbour, limit=2)
    submit(app_client, user, queued_job({"openai": 1}))

    mine = _queue(app_client, user)
    theirs = _queue(app_client, neighbour)

    assert (mine["states"]["queued"], mine["states"]["running"]) == (1, 0)
    assert "theirs" not in _by_name(mine) and _by_name(mine)["openai"]["tokens"] == 99
    assert (theirs["states"]["queued"], theirs["states"]["running"]) == (2, 2)
    assert _by_name(theirs)["openai"]["tokens"] == 80


def test_ended_jobs_count_only_within_the_window(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    for _ in range(2):
        submit(app_client, user, queued_job({"openai": 1}))
    for job in claim(app_client, user, limit=2):
        assert lease_call(app_client, user, job, "fail", error="no", retry=False).status_code == 200
    db.execute(
        "UPDATE jobs SET finished_at = now() - make_interval(secs => %s + 60)"
        " WHERE job_id = (SELECT job_id FROM jobs WHERE user_id = %s ORDER BY job_id LIMIT 1)",
        [ENDED_WINDOW_SECONDS, user],
    )

    assert _queue(app_client, user)["states"]["failed"] == 1


def test_one_read_reads_a_bounded_number_of_jobs_of_each_state(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    """With at most 2 jobs read per state, the counts by state stay exact, the costs by
    dependency are those of the 2 next in line, and the ended jobs are the 2 newest."""
    for priority in (9, 9, 9, 1, 2, 3):
        submit(app_client, user, queued_job({"openai": priority}, priority=priority))
    for job in claim(app_client, user, limit=3):
        assert lease_call(app_client, user, job, "complete").status_code == 200
    finished = db.execute(
        "SELECT finished_at FROM jobs WHERE user_id = %s AND state = 'completed'"
        " ORDER BY finished_at",
        [user],
    ).fetchall()

    with db.transaction():
        queue = user_queue(db, user, max_jobs=2)

    assert (queue.states.queued, queue.states.completed) == (3, 2)
    assert queue.truncated
    [openai, _] = queue.dependencies
    # The two next in line: priority 3 and 2, not 1.
    assert (openai.queued, openai.queued_tokens) == (2, 5)
    # The oldest of the three was read, not counted: the count starts right after it.
    assert queue.ended_since == finished[0][0] + timedelta(microseconds=1)
    with db.transaction():
        assert not user_queue(db, user, max_jobs=3).truncated


def test_unauthenticated_unknown_users_and_other_paths_are_refused(
    app_client: falcon.testing.TestClient, user: UUID
) -> None:
    assert_clear_error(app_client.simulate_get(QUEUE), 401)
    assert_clear_error(app_client.simulate_get(QUEUE, headers=headers_for(uuid4())), 401)
    assert_clear_error(app_client.simulate_get(QUEUE, headers=headers_for("nope")), 401)
    assert_clear_error(
        app_client.simulate_get(QUEUE, params={"limit": "2"}, headers=headers_for(user)), 400
    )
    assert_clear_error(app_client.simulate_post(QUEUE, headers=headers_for(user)), 405)
    assert_clear_error(app_client.simulate_get(f"{QUEUE}/openai", headers=headers_for(user)), 404)


def test_the_queue_over_real_http(start_gunicorn: StartGunicorn, db: psycopg.Connection) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    stranger = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    server = start_gunicorn(workers=2)
    session = requests.Session()
    session.headers["X-User-ID"] = str(user_id)
    for _ in range(3):
        answer = session.post(f"{server.url}/dashboard/jobs", json=queued_job({"openai": 4}))
    assert answer.status_code == 429  # the third: 8 of 10 tokens taken

    mine = session.get(f"{server.url}{QUEUE}")
    theirs = requests.get(f"{server.url}{QUEUE}", headers=headers_for(stranger), timeout=10)

    assert mine.status_code == 200, mine.text
    assert mine.json()["states"]["queued"] == 2
    [openai] = mine.json()["dependencies"]
    # Nothing waits: the queued jobs paid when they were admitted.
    assert (openai["queued_tokens"], openai["tokens"], openai["drain_seconds"]) == (8, 2, 0)
    assert theirs.status_code == 200 and theirs.json()["states"]["queued"] == 0
    assert requests.get(f"{server.url}{QUEUE}", timeout=10).status_code == 401
