"""The queue, in-process over real Postgres: claims, leases, completions, failures, retries.

Settlement of real costs has its own module (test_settlement.py); the queue under gunicorn
and many workers is test_queue_http.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest

from janus.cli import main as janus_cli
from tests.support.answers import assert_clear_error
from tests.support.app import headers_for, post_json
from tests.support.factories import activate_config, create_user, stored_bucket, user_with_config
from tests.support.queue import (
    CLAIM,
    COMPLETE_MANY,
    claim,
    expire_lease,
    job_row,
    lease_call,
    lease_route,
    queued_job,
    submit,
)

OPENAI = {"openai": {"capacity": 1000, "refill_per_second": 0}}
CLAIMED_KEYS = [
    "job_id",
    "batch_name",
    "tenant_id",
    "priority",
    "dependencies",
    "attempt",
    "lease_token",
    "lease_expires_at",
    "payload",
]


@pytest.fixture
def worker_user(db: psycopg.Connection) -> UUID:
    """A user with a large openai bucket that never refills, and the default max_attempts 3."""
    return user_with_config(db, OPENAI)


# --- states and claims ---


def test_an_accepted_job_is_queued_and_a_rejected_one_has_no_state(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    accepted = submit(app_client, worker_user, queued_job({"openai": 1}))
    rejected = post_json(app_client, "/system/jobs", worker_user, queued_job({"openai": 5000}))
    assert rejected.status_code == 429
    assert job_row(db, accepted)["state"] == "queued"
    assert job_row(db, rejected.json["job_id"])["state"] is None
    # Only the accepted job can be claimed.
    assert [job["job_id"] for job in claim(app_client, worker_user, limit=10)] == [accepted]


def test_a_claim_answers_highest_priority_first_then_oldest_with_every_field(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    low = submit(app_client, worker_user, queued_job({"openai": 1}, priority=2))
    high_old = submit(app_client, worker_user, queued_job({"openai": 2}, priority=9))
    high_new = submit(app_client, worker_user, queued_job(priority=9, tenant_id="tenant-b"))
    before = datetime.now().astimezone()

    jobs = claim(app_client, worker_user, limit=2, lease_seconds=30)

    assert [job["job_id"] for job in jobs] == [high_old, high_new]
    first = jobs[0]
    assert list(first) == CLAIMED_KEYS
    assert first["batch_name"] == "batch-a" and first["tenant_id"] == "tenant-a"
    assert (first["priority"], first["dependencies"], first["attempt"]) == (9, {"openai": 2}, 1)
    assert first["payload"] == {}
    assert str(UUID(first["lease_token"])) == first["lease_token"]
    expires = datetime.fromisoformat(first["lease_expires_at"])
    assert timedelta(seconds=29) < expires - before < timedelta(seconds=35)
    assert job_row(db, high_old)["state"] == "running"
    # The rest, then nothing: an empty queue answers at once with an empty list.
    assert [job["job_id"] for job in claim(app_client, worker_user, limit=100)] == [low]
    assert claim(app_client, worker_user) == []


def test_a_claimed_payload_is_the_exact_text_the_producer_sent(
    app_client: falcon.testing.TestClient, worker_user: UUID
) -> None:
    payload = '{"price": 1.10, "big": 1e400, "id": 123456789012345678901234567890, "s": "\\u00e9"}'
    body = (
        '{"batch_name": "b", "tenant_id": "t", "priority": 5, "dependencies": {}, '
        f'"payload": {payload}}}'
    )
    answer = app_client.simulate_post(
        "/system/jobs",
        body=body,
        headers=headers_for(worker_user, **{"Content-Type": "application/json"}),
    )
    assert answer.status_code == 202, answer.text

    claimed = post_json(app_client, CLAIM, worker_user, {})
    assert claimed.status_code == 200
    assert claimed.headers["content-type"].startswith("application/json")
    assert f'"payload": {payload}}}]}}' in claimed.text
    assert json.loads(claimed.text)["jobs"][0]["payload"]["s"] == "é"


def test_a_claim_can_be_narrowed_by_tenant_batch_and_dependencies(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(
        db,
        {
            "openai": {"capacity": 100, "refill_per_second": 0},
            "stripe": {"capacity": 100, "refill_per_second": 0},
        },
    )
    both = submit(app_client, user, queued_job({"openai": 1, "stripe": 1}))
    openai = submit(app_client, user, queued_job({"openai": 1}, tenant_id="tenant-b"))
    none = submit(app_client, user, queued_job(batch_name="batch-b"))

    assert [j["job_id"] for j in claim(app_client, user, limit=9, tenant_id="tenant-b")] == [openai]
    assert [j["job_id"] for j in claim(app_client, user, limit=9, batch_name="batch-b")] == [none]
    # Only jobs that call none but the named dependencies.
    assert claim(app_client, user, limit=9, dependencies=["stripe"]) == []
    assert [
        j["job_id"] for j in claim(app_client, user, limit=9, dependencies=["openai", "stripe"])
    ] == [both]


def test_a_user_claims_only_its_own_jobs_and_cannot_touch_anothers(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    other = user_with_config(db, OPENAI)
    mine = submit(app_client, worker_user, queued_job())
    assert claim(app_client, other, limit=10) == []
    [job] = claim(app_client, worker_user)
    assert job["job_id"] == mine
    for call, body in [("heartbeat", {}), ("complete", {}), ("fail", {"error": "x"})]:
        answer = lease_call(app_client, other, job, call, **body)
        assert_clear_error(answer, 404)
    assert job_row(db, mine)["state"] == "running"


# --- leases ---


def test_a_heartbeat_extends_the_lease_under_its_token_only(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    submit(app_client, worker_user, queued_job())
    [job] = claim(app_client, worker_user, lease_seconds=10)
    beat = lease_call(app_client, worker_user, job, "heartbeat", lease_seconds=600)
    assert beat.status_code == 200, beat.text
    assert list(beat.json) == ["job_id", "lease_expires_at"]
    assert datetime.fromisoformat(beat.json["lease_expires_at"]) > datetime.fromisoformat(
        job["lease_expires_at"]
    ) + timedelta(seconds=500)

    wrong = lease_call(app_client, worker_user, job, "heartbeat", lease_token=str(uuid4()))
    assert "lease" in assert_clear_error(wrong, 409)["description"]
    unknown = post_json(
        app_client, lease_route(uuid4(), "heartbeat"), worker_user, {"lease_token": str(uuid4())}
    )
    assert_clear_error(unknown, 404)


def test_complete_stores_the_result_as_sent_and_ends_the_lease(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    job_id = submit(app_client, worker_user, queued_job())
    [job] = claim(app_client, worker_user)
    body = f'{{"lease_token": "{job["lease_token"]}", "result": {{"score": 0.10, "n": 1e400}}}}'
    done = app_client.simulate_post(
        lease_route(job_id, "complete"),
        body=body,
        headers=headers_for(worker_user, **{"Content-Type": "application/json"}),
    )
    assert done.status_code == 200, done.text
    assert done.json == {"job_id": job_id, "state": "completed", "attempt": 1}
    row = job_row(db, job_id)
    assert (row["state"], row["result"], row["lease_token"]) == (
        "completed",
        '{"score": 0.10, "n": 1e400}',
        None,
    )
    assert row["finished_at"] is not None
    # The lease has ended: every further call on it is stale.
    for call, extra in [("complete", {}), ("heartbeat", {}), ("fail", {"error": "late"})]:
        assert_clear_error(lease_call(app_client, worker_user, job, call, **extra), 409)
    assert job_row(db, job_id)["state"] == "completed"


def test_a_failed_job_is_retried_until_max_attempts_then_failed(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    job_id = submit(app_client, worker_user, queued_job())
    for attempt, state in [(1, "waiting"), (2, "waiting"), (3, "failed")]:
        [job] = claim(app_client, worker_user)
        assert job["attempt"] == attempt
        failed = lease_call(app_client, worker_user, job, "fail", error=f"boom {attempt}")
        assert failed.status_code == 200, failed.text
        assert failed.json == {"job_id": job_id, "state": state, "attempt": attempt}
    row = job_row(db, job_id)
    assert (row["state"], row["attempts"], row["error"]) == ("failed", 3, "boom 3")
    assert claim(app_client, worker_user) == []


def test_a_failure_without_retry_fails_the_job_at_once(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    job_id = submit(app_client, worker_user, queued_job())
    [job] = claim(app_client, worker_user)
    failed = lease_call(app_client, worker_user, job, "fail", error="bad input", retry=False)
    assert failed.json == {"job_id": job_id, "state": "failed", "attempt": 1}
    assert claim(app_client, worker_user) == []


def test_max_attempts_comes_from_the_users_config(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = create_user(db)
    db.execute(
        "SELECT activate_config(%s, false, 1::smallint, 0::numeric, 'reject', '{}'::json, 1, 7)",
        [user],
    )
    submit(app_client, user, queued_job())
    [job] = claim(app_client, user)
    assert lease_call(app_client, user, job, "fail", error="once").json["state"] == "failed"


def test_an_expired_lease_is_claimed_again_with_its_attempt_raised_and_fences_the_first_worker(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    job_id = submit(app_client, worker_user, queued_job({"openai": 3}))
    [first] = claim(app_client, worker_user)
    expire_lease(db, job_id)

    # The first worker's lease is over even before anyone claims the job again.
    assert_clear_error(lease_call(app_client, worker_user, first, "heartbeat"), 409)
    [second] = claim(app_client, worker_user)
    assert (second["job_id"], second["attempt"]) == (job_id, 2)
    assert second["lease_token"] != first["lease_token"]

    late = lease_call(app_client, worker_user, first, "complete", actual_costs={"openai": 0})
    assert_clear_error(late, 409)
    row = job_row(db, job_id)
    assert (row["state"], row["actual_costs"]) == ("running", None)
    done = lease_call(app_client, worker_user, second, "complete")
    assert done.json == {"job_id": job_id, "state": "completed", "attempt": 2}


def test_an_expired_lease_on_the_last_attempt_fails_the_job(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    job_id = submit(app_client, worker_user, queued_job())
    for _ in range(3):
        [_claimed] = claim(app_client, worker_user)
        expire_lease(db, job_id)
    assert claim(app_client, worker_user) == []
    row = job_row(db, job_id)
    assert (row["state"], row["attempts"], row["error"]) == ("failed", 3, "lease expired")


def test_many_completions_in_one_request_each_get_their_own_outcome(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, worker_user: UUID
) -> None:
    ids = [submit(app_client, worker_user, queued_job({"openai": 2})) for _ in range(3)]
    jobs = claim(app_client, worker_user, limit=3)
    items = [
        {"job_id": jobs[0]["job_id"], "lease_token": jobs[0]["lease_token"], "result": {"k": 1}},
        {"job_id": jobs[1]["job_id"], "lease_token": str(uuid4())},
        {"job_id": str(uuid4()), "lease_token": jobs[2]["lease_token"]},
        {
            "job_id": jobs[2]["job_id"],
            "lease_token": jobs[2]["lease_token"],
            "actual_costs": {"openai": 1},
        },
        # The same job twice: the second finds its lease already ended.
        {"job_id": jobs[0]["job_id"], "lease_token": jobs[0]["lease_token"]},
    ]
    answer = post_json(app_client, COMPLETE_MANY, worker_user, {"jobs": items})
    assert answer.status_code == 200, answer.text
    assert answer.json == {
        "results": [
            {"job_id": items[0]["job_id"], "outcome": "completed"},
            {"job_id": items[1]["job_id"], "outcome": "stale_lease"},
            {"job_id": items[2]["job_id"], "outcome": "not_found"},
            {"job_id": items[3]["job_id"], "outcome": "completed"},
            {"job_id": items[4]["job_id"], "outcome": "stale_lease"},
        ]
    }
    states = {job_id: job_row(db, job_id)["state"] for job_id in ids}
    assert sorted(states.values()) == ["completed", "completed", "running"]
    assert job_row(db, jobs[0]["job_id"])["result"] == '{"k": 1}'
    assert job_row(db, jobs[2]["job_id"])["actual_costs"] == {"openai": 1}


def test_upstream_throttled_reported_by_complete_and_fail_slows_an_adaptive_bucket(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    adaptive = {"decrease": 0.5, "floor": 0.1, "recovery_per_minute": 0.01}
    user = user_with_config(
        db,
        {
            "openai": {"capacity": 1000, "refill_per_second": 10, "adaptive": adaptive},
            "stripe": {"capacity": 1000, "refill_per_second": 10},
        },
    )

    def effective(dependency: str) -> Decimal:
        row = stored_bucket(db, user, dependency, "effective_refill_per_second")
        return Decimal(row["effective_refill_per_second"])

    rates = []
    for call, extra in [("complete", {}), ("fail", {"error": "429 from openai"})]:
        submit(app_client, user, queued_job({"openai": 1, "stripe": 1}))
        [job] = claim(app_client, user)
        answer = lease_call(
            app_client,
            user,
            job,
            call,
            upstream_throttled=["openai", "stripe", "unknown"],
            **extra,
        )
        assert answer.status_code == 200, answer.text
        rates.append(effective("openai"))

    # Halved at each report; between the two it recovers 0.01 x 10 tokens/s per minute.
    assert rates[0] == Decimal(5)
    assert Decimal("2.5") < rates[1] < Decimal("2.51")
    # Not adaptive, and not a bucket: unchanged, ignored.
    assert effective("stripe") == Decimal(10)


# --- bad input ---

GOOD_TOKEN = "2dad64a8-3f87-4d6e-9b4c-1cfa5917fd4b"
NAMES_33 = [f"dep{i}" for i in range(33)]


def _lease(extra: dict[str, Any]) -> dict[str, Any]:
    return {"lease_token": GOOD_TOKEN, **extra}


BAD_BODIES: list[tuple[str, Any]] = [
    (CLAIM, {"limit": 0}),
    (CLAIM, {"limit": 101}),
    (CLAIM, {"limit": "5"}),
    (CLAIM, {"lease_seconds": 0}),
    (CLAIM, {"lease_seconds": 3601}),
    (CLAIM, {"tenant_id": ""}),
    (CLAIM, {"dependencies": "openai"}),
    (CLAIM, {"dependencies": NAMES_33}),
    (CLAIM, {"surprise": 1}),
    (CLAIM, []),
    ("heartbeat", {}),
    ("heartbeat", {"lease_token": "not-a-uuid"}),
    ("heartbeat", _lease({"lease_seconds": 3601})),
    ("heartbeat", _lease({"surprise": True})),
    ("complete", _lease({"result": [1, 2]})),
    ("complete", _lease({"result": "text"})),
    ("complete", _lease({"actual_costs": {"openai": -1}})),
    ("complete", _lease({"actual_costs": {"openai": 1.5}})),
    ("complete", _lease({"actual_costs": {"": 1}})),
    ("complete", _lease({"upstream_throttled": NAMES_33})),
    ("complete", _lease({"upstream_throttled": [""]})),
    ("complete", _lease({"error": "only fail has it"})),
    ("fail", _lease({})),
    ("fail", _lease({"error": ""})),
    ("fail", _lease({"error": "x", "retry": "false"})),
    ("fail", _lease({"error": "x", "result": {}})),
    (COMPLETE_MANY, {"jobs": []}),
    (COMPLETE_MANY, {"jobs": [{"lease_token": GOOD_TOKEN}]}),
    (COMPLETE_MANY, {"jobs": [{"job_id": "nope", "lease_token": GOOD_TOKEN}]}),
    (COMPLETE_MANY, {"jobs": [_lease({"job_id": GOOD_TOKEN, "retry": False})]}),
    (COMPLETE_MANY, {"results": []}),
]


@pytest.mark.parametrize(("route", "body"), BAD_BODIES)
def test_every_queue_route_answers_bad_input_with_a_clear_400(
    app_client: falcon.testing.TestClient, worker_user: UUID, route: str, body: Any
) -> None:
    path = route if route.startswith("/") else lease_route(uuid4(), route)
    assert_clear_error(post_json(app_client, path, worker_user, body), 400)


@pytest.mark.parametrize("call", ["heartbeat", "complete", "fail"])
@pytest.mark.parametrize("job_id", ["nope", "12345", "2dad64a8-3f87-4d6e-9b4c-1cfa5917fd4"])
def test_a_malformed_job_id_in_the_path_is_404(
    app_client: falcon.testing.TestClient, worker_user: UUID, call: str, job_id: str
) -> None:
    body = {"lease_token": GOOD_TOKEN, "error": "x"} if call == "fail" else _lease({})
    assert_clear_error(post_json(app_client, lease_route(job_id, call), worker_user, body), 404)


@pytest.mark.parametrize("path", [CLAIM, COMPLETE_MANY, lease_route(GOOD_TOKEN, "heartbeat")])
def test_the_queue_routes_need_a_known_user(
    app_client: falcon.testing.TestClient, path: str
) -> None:
    missing = app_client.simulate_post(path, json={})
    assert_clear_error(missing, 401)
    body = {"jobs": [_lease({"job_id": GOOD_TOKEN})]} if path == COMPLETE_MANY else _lease({})
    unknown = post_json(app_client, path, uuid4(), body if path != CLAIM else {})
    assert_clear_error(unknown, 401)


def test_the_queue_routes_answer_only_post(
    app_client: falcon.testing.TestClient, worker_user: UUID
) -> None:
    answer = app_client.simulate_get(CLAIM, headers=headers_for(worker_user))
    assert_clear_error(answer, 405)


# --- retention ---


def test_prune_deletes_finished_jobs_past_their_users_retention_and_keeps_the_queue(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    short = create_user(db)
    db.execute(
        "SELECT activate_config(%s, false, 1::smallint, 0::numeric, 'reject', '{}'::json, 3, 2)",
        [short],
    )
    default = user_with_config(db, {})
    for user in (short, default):
        for _ in range(4):
            submit(app_client, user, queued_job())
        done, failed, _running = claim(app_client, user, limit=3)
        lease_call(app_client, user, done, "complete")
        lease_call(app_client, user, failed, "fail", error="no", retry=False)
    # Finished three days ago: past short's 2 days, within the default 7.
    db.execute(
        "UPDATE jobs SET finished_at = finished_at - interval '3 days', "
        "created_at = created_at - interval '3 days' WHERE finished_at IS NOT NULL"
    )
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert janus_cli(["prune"]) == 0

    assert capsys.readouterr().out.splitlines()[2] == (
        "pruned 2 completed, failed or cancelled jobs past their config's retention_days"
    )
    states = {
        user: sorted(s for (s,) in db.execute("SELECT state FROM jobs WHERE user_id = %s", [user]))
        for user in (short, default)
    }
    assert states == {
        short: ["queued", "running"],
        default: ["completed", "failed", "queued", "running"],
    }


def test_a_config_sets_max_attempts_and_retention_days(
    db: psycopg.Connection,
) -> None:
    user = create_user(db)
    activate_config(db, user, {})
    row = db.execute(
        "SELECT max_attempts, retention_days FROM configs WHERE user_id = %s AND is_active",
        [user],
    ).fetchone()
    assert row == (3, 7)


# --- janus jobs ---


def test_janus_jobs_lists_a_users_jobs_with_state_and_attempts(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    worker_user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queued = submit(app_client, worker_user, queued_job(tenant_id="tenant\nb"))
    rejected = post_json(app_client, "/system/jobs", worker_user, queued_job({"openai": 5000}))
    running = submit(app_client, worker_user, queued_job(priority=9))
    [job] = claim(app_client, worker_user)
    assert job["job_id"] == running
    monkeypatch.setenv("DATABASE_URL", database_url)
    capsys.readouterr()

    assert janus_cli(["jobs", str(worker_user)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "job_id", "created_at", "tenant", "batch", "priority", "state", "attempts", "until"
    ]  # fmt: skip
    by_id = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(by_id) == {queued, rejected.json["job_id"], running}
    # created_at and until are two words each (date, time).
    assert by_id[running][5:8] == ["9", "running", "1"] and len(by_id[running]) == 10
    assert by_id[rejected.json["job_id"]][6:9] == ["rejected", "0", "-"]
    assert '"tenant\\nb"' in next(line for line in lines if line.startswith(queued))

    assert janus_cli(["jobs", str(worker_user), "--state", "queued"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [queued]
    assert janus_cli(["jobs", str(uuid4())]) == 1
    assert "unknown user" in capsys.readouterr().err
    assert janus_cli(["jobs", str(worker_user), "--state", "done"]) == 2
