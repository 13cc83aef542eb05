"""Pacing: jobs that wait in their dependencies' line instead of being refused, and pay for
their tokens when a claim hands them out. In process over real Postgres; the same under load,
with many producers and workers, is the reliability scenario (tests/faults/).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from tests.support.answers import assert_clear_error
from tests.support.app import headers_for, post_json, put_config
from tests.support.factories import bucket_tokens, stored_bucket, stored_job, user_with_config
from tests.support.queue import claim, lease_call, queued_job

# A refill too slow to move a whole token in a test (a test gives tokens back by setting
# them), but not 0: a bucket that never refills cannot be waited for.
LIMITS = {"openai": {"capacity": 10, "refill_per_second": 0.0001}}
WAIT: dict[str, Any] = {"when_limited": "wait"}


@pytest.fixture
def user(db: psycopg.Connection) -> UUID:
    return user_with_config(db, LIMITS)


def send(
    client: falcon.testing.TestClient, user_id: UUID, cost: int, *, priority: int = 5, **extra: Any
) -> falcon.testing.Result:
    return post_json(
        client,
        "/system/jobs",
        user_id,
        {**queued_job({"openai": cost}, priority=priority), **extra},
    )


def batch_job(cost: int) -> dict[str, Any]:
    return {"tenant_id": "tenant-a", "priority": 5, "dependencies": {"openai": cost}}


def set_tokens(db: psycopg.Connection, user_id: UUID, tokens: int) -> None:
    """The openai bucket at `tokens` as of now, as if it had refilled."""
    db.execute(
        "UPDATE token_buckets SET tokens = %s, refilled_at = now() WHERE user_id = %s",
        [tokens, user_id],
    )


def tokens(db: psycopg.Connection, user_id: UUID) -> int:
    """The openai bucket's whole tokens now (the slow refill adds a sliver)."""
    return int(bucket_tokens(db, user_id, "openai"))


def line(db: psycopg.Connection, user_id: UUID) -> tuple[list[int], list[int]]:
    """The openai bucket's line: jobs and tokens by priority, 1 to 10."""
    row = stored_bucket(db, user_id, "openai", "line_jobs, line_tokens")
    return row["line_jobs"], [int(tokens) for tokens in row["line_tokens"]]


def at(priority: int, value: int) -> list[int]:
    """A line with `value` at `priority` only."""
    return [value if p == priority else 0 for p in range(1, 11)]


def test_a_job_limited_by_tokens_waits_in_line_and_pays_when_handed_out(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    first = send(app_client, user, 8, **WAIT)
    # Accepted at once: the seed's answer, to the letter.
    assert first.status_code == 202 and set(first.json) == {"job_id", "status", "reason"}

    waiting = send(app_client, user, 6, **WAIT)

    assert waiting.status_code == 202, waiting.text
    assert waiting.json["status"] == "Accepted" and waiting.json["reason"] == ""
    assert waiting.json["state"] == "waiting"
    # 4 tokens short at 0.0001 a second.
    starts_in = datetime.fromisoformat(waiting.json["estimated_start"]) - datetime.now(UTC)
    assert timedelta(seconds=39_000) < starts_in <= timedelta(seconds=40_000)
    job = waiting.json["job_id"]
    assert stored_job(db, job, "state")["state"] == "waiting"
    assert line(db, user) == (at(5, 1), at(5, 6))
    assert tokens(db, user) == 2  # nothing taken for the waiting job

    # The queued job goes; the waiting one cannot pay yet.
    [handed] = claim(app_client, user, limit=10)
    assert handed["job_id"] == first.json["job_id"]
    set_tokens(db, user, 7)
    [paid] = claim(app_client, user, limit=10)

    assert paid["job_id"] == job and paid["attempt"] == 1
    assert tokens(db, user) == 1
    assert line(db, user) == (at(5, 0), at(5, 0))
    assert stored_job(db, job, "state, in_line_at, expires_at") == {
        "state": "running",
        "in_line_at": None,
        "expires_at": None,
    }


def test_no_job_of_the_same_or_a_lower_priority_overtakes_a_waiting_one(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    send(app_client, user, 8, **WAIT)
    assert send(app_client, user, 6, **WAIT).json["state"] == "waiting"

    # Two tokens are left, but a job waits for them and more: the same priority is refused in
    # reject mode (with a Retry-After) and lines up behind it in wait mode; a higher priority
    # goes first.
    same = send(app_client, user, 1)
    lower = send(app_client, user, 1, priority=2, **WAIT)
    higher = send(app_client, user, 1, priority=9)

    assert (
        same.status_code == 429 and same.json["reason"] == "dependency 'openai' rate limit exceeded"
    )
    assert same.headers["Janus-Reason-Code"] == "rate_limit"
    assert lower.status_code == 202 and lower.json["state"] == "waiting"
    assert higher.status_code == 202 and "state" not in higher.json
    assert line(db, user)[0] == [0, 1, 0, 0, 1, 0, 0, 0, 0, 0]

    set_tokens(db, user, 7)
    # Highest priority first, then first in line (a queued job's place is its admission):
    # the priority-9 and the first priority-5 jobs were paid at admission.
    handed = [job["priority"] for job in claim(app_client, user, limit=10)]
    assert handed == [9, 5, 5, 2]
    assert tokens(db, user) == 0


def test_a_waiting_job_that_cannot_pay_holds_every_job_behind_it_on_its_dependency(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    set_tokens(db, user, 0)
    big = send(app_client, user, 8, **WAIT).json["job_id"]
    small = send(app_client, user, 1, **WAIT).json["job_id"]
    set_tokens(db, user, 5)

    # The small one would fit, but the big one is first in line.
    assert claim(app_client, user, limit=10) == []
    set_tokens(db, user, 9)
    assert [job["job_id"] for job in claim(app_client, user, limit=10)] == [big, small]


def test_a_filtered_claim_takes_no_token_an_earlier_waiting_job_is_first_in_line_for(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    set_tokens(db, user, 0)
    send(app_client, user, 6, tenant_id="tenant-a", **WAIT)
    mine = post_json(
        app_client,
        "/system/jobs",
        user,
        {**queued_job({"openai": 4}, tenant_id="tenant-b"), **WAIT},
    ).json["job_id"]
    set_tokens(db, user, 8)

    # Tenant-b's worker: its job fits only in tokens tenant-a's job waits for.
    assert claim(app_client, user, limit=10, tenant_id="tenant-b") == []
    set_tokens(db, user, 10)
    # Both fit now: tenant-a's 6 are set aside, and tenant-b's 4 are there.
    [handed] = claim(app_client, user, limit=10, tenant_id="tenant-b")
    assert handed["job_id"] == mine
    assert tokens(db, user) == 6


def test_a_waiting_job_not_handed_out_within_its_max_wait_expires(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    set_tokens(db, user, 0)
    job = send(app_client, user, 5, max_wait_seconds=30, **WAIT).json["job_id"]
    expires = stored_job(db, job, "expires_at - now() AS left")["left"]
    assert timedelta(seconds=28) < expires <= timedelta(seconds=30)
    db.execute("UPDATE jobs SET expires_at = now() - interval '1 second' WHERE job_id = %s", [job])

    assert claim(app_client, user, limit=10) == []

    row = stored_job(db, job, "state, error, finished_at IS NOT NULL AS finished")
    assert row == {
        "state": "expired",
        "error": "not handed out within its max wait",
        "finished": True,
    }
    assert line(db, user) == (at(5, 0), at(5, 0))
    # Out of the line: a new job is no longer kept behind it.
    set_tokens(db, user, 10)
    assert send(app_client, user, 5).status_code == 202


def test_a_job_with_a_run_at_waits_for_it_then_is_paced(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    answer = send(app_client, user, 5, run_at=later.isoformat())

    assert answer.status_code == 202 and answer.json["state"] == "waiting"
    assert datetime.fromisoformat(answer.json["estimated_start"]) == later
    job = answer.json["job_id"]
    # Not in line before its moment: it holds no one back, and takes nothing.
    assert line(db, user) == (at(5, 0), at(5, 0)) and tokens(db, user) == 10
    assert claim(app_client, user, limit=10) == []

    db.execute("UPDATE jobs SET run_at = now() - interval '1 second' WHERE job_id = %s", [job])
    [handed] = claim(app_client, user, limit=10)

    assert handed["job_id"] == job
    assert tokens(db, user) == 5


def test_the_history_and_the_record_show_when_a_waiting_job_should_start(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    def shown(job_id: str) -> tuple[str | None, str | None]:
        """(estimated_start in the history's item, in the job's record)."""
        page = app_client.simulate_get("/dashboard/jobs", headers=headers_for(user)).json
        [item] = [item for item in page["jobs"] if item["job_id"] == job_id]
        record = app_client.simulate_get(f"/dashboard/jobs/{job_id}", headers=headers_for(user))
        return item["estimated_start"], record.json["estimated_start"]

    def moment(text: str | None) -> datetime:
        assert text is not None
        return datetime.fromisoformat(text)

    queued = send(app_client, user, 8, **WAIT).json["job_id"]
    in_line = send(app_client, user, 6, **WAIT).json
    later = datetime.now(UTC) + timedelta(hours=1)
    scheduled = send(app_client, user, 1, run_at=later.isoformat()).json["job_id"]

    # What admission told, as it told it.
    told = moment(in_line["estimated_start"])
    assert [moment(at) for at in shown(in_line["job_id"])] == [told, told]
    assert [moment(at) for at in shown(scheduled)] == [later, later]
    assert shown(queued) == (None, None)

    # Handed out: no longer waiting. Failed with a Retry-After: its run_at.
    [handed] = claim(app_client, user, limit=1)
    assert handed["job_id"] == queued and shown(queued) == (None, None)
    failed = lease_call(
        app_client, user, handed, "fail", error="429", retry_after_seconds=600, retry=True
    )
    assert failed.json["state"] == "waiting", failed.text
    [item, record] = [moment(at) for at in shown(queued)]
    assert item == record == stored_job(db, queued, "run_at")["run_at"]

    # A claim puts it in line once due: nothing was estimated for it there.
    db.execute("UPDATE jobs SET run_at = now() WHERE job_id = %s", [queued])
    assert claim(app_client, user, limit=1) == []
    assert stored_job(db, queued, "in_line_at IS NOT NULL AS in_line")["in_line"]
    assert shown(queued) == (None, None)


def test_a_retried_job_pays_again_in_its_turn(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    first = send(app_client, user, 6).json["job_id"]
    [claimed] = claim(app_client, user, limit=1)
    assert lease_call(app_client, user, claimed, "fail", error="boom").json["state"] == "waiting"
    # 4 tokens left: the retry cannot pay its 6 again, and holds the line.
    assert claim(app_client, user, limit=10) == []
    assert line(db, user) == (at(5, 1), at(5, 6))
    assert send(app_client, user, 1).status_code == 429

    set_tokens(db, user, 10)
    [again] = claim(app_client, user, limit=10)

    assert again["job_id"] == first and again["attempt"] == 2
    assert tokens(db, user) == 4


def test_an_atomic_batch_in_wait_mode_is_stored_whole_or_refused_whole(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    jobs = [batch_job(6), batch_job(6)]
    stored = post_json(
        app_client, "/system/jobs/batch/atomic", user, {"batch_name": "b", "jobs": jobs, **WAIT}
    )
    assert stored.status_code == 202, stored.text
    assert ["state" in result for result in stored.json] == [False, True]

    too_big = [batch_job(6), batch_job(11)]
    refused = post_json(
        app_client, "/system/jobs/batch/atomic", user, {"batch_name": "b", "jobs": too_big, **WAIT}
    )
    assert refused.status_code == 207
    assert [result["status"] for result in refused.json] == ["Rejected", "Rejected"]
    assert line(db, user) == (at(5, 1), at(5, 6))


def test_the_config_sets_the_default_and_shadow_mode_never_waits(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(db, LIMITS, when_limited="wait", max_wait_seconds=120)
    send(app_client, user, 8)
    assert send(app_client, user, 8).json["state"] == "waiting"
    assert send(app_client, user, 1, when_limited="reject").status_code == 429

    shadow = user_with_config(db, LIMITS, when_limited="wait", mode="shadow")
    send(app_client, shadow, 8)
    answer = send(app_client, shadow, 8)
    assert answer.status_code == 202 and "state" not in answer.json


def test_a_quote_and_a_replay_tell_the_wait(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    send(app_client, user, 8)
    quote = post_json(app_client, "/system/jobs/quote", user, {**queued_job({"openai": 8}), **WAIT})
    assert quote.status_code == 200 and quote.json["status"] == 202
    [result] = quote.json["results"]
    assert result["status"] == "Accepted" and result["state"] == "waiting"

    body = {**queued_job({"openai": 8}), **WAIT}
    headers = {"Idempotency-Key": "k-1"}
    first = post_json(app_client, "/system/jobs", user, body, headers=headers)
    again = post_json(app_client, "/system/jobs", user, body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json and again.json["state"] == "waiting"


def test_a_bucket_that_never_refills_is_never_waited_for(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    send(app_client, user, 8, **WAIT)
    refused = send(app_client, user, 8, **WAIT)
    assert refused.status_code == 429 and "Retry-After" not in refused.headers


def test_a_cancelled_waiting_job_leaves_the_line(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, user: UUID
) -> None:
    send(app_client, user, 8)
    job = send(app_client, user, 8, **WAIT).json["job_id"]
    assert post_json(app_client, f"/dashboard/jobs/{job}/cancel", user, {}).status_code == 200
    assert line(db, user) == (at(5, 0), at(5, 0))
    assert send(app_client, user, 2).status_code == 202


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("when_limited", "later"),
        ("when_limited", None),
        ("max_wait_seconds", 0),
        ("max_wait_seconds", 604_801),
        ("max_wait_seconds", "60"),
        ("run_at", "2030-01-01T00:00:00"),  # no zone
        ("run_at", (datetime.now(UTC) + timedelta(days=31)).isoformat()),
    ],
)
def test_bad_pacing_fields_are_a_clear_400(
    app_client: falcon.testing.TestClient, user: UUID, field: str, value: Any
) -> None:
    answer = send(app_client, user, 1, **{field: value})
    body = assert_clear_error(answer, 400)
    assert field in body["errors"], body


def test_the_config_round_trips_its_pacing_fields(
    app_client: falcon.testing.TestClient, user: UUID
) -> None:
    config = put_config(
        app_client,
        user,
        {"dependencies": LIMITS, "when_limited": "wait", "max_wait_seconds": 600},
    )
    assert config["when_limited"] == "wait" and config["max_wait_seconds"] == 600
