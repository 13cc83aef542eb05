"""Idempotency-Key: a repeat of an accepted request is answered from memory and takes nothing."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest
import requests

from janus.cli import main as janus_cli
from janus.db import maintenance
from tests.support.app import post_json
from tests.support.bodies import batch, job, single
from tests.support.factories import (
    activate_config,
    bucket_tokens,
    create_user,
    jobs_of,
    user_with_config,
)

SINGLE = "/system/jobs"
PARTIAL = "/system/jobs/batch"
ATOMIC = "/system/jobs/batch/atomic"


def post(
    client: falcon.testing.TestClient, path: str, user: UUID, body: Any, key: str | None
) -> falcon.testing.Result:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return post_json(client, path, user, body, headers)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (SINGLE, single(dependencies={"openai": 3}), 202),
        (PARTIAL, batch(job(dependencies={"openai": 3}), job(dependencies={"openai": 9})), 200),
        (ATOMIC, batch(job(dependencies={"openai": 3}), job(dependencies={"openai": 4})), 202),
    ],
)
def test_a_repeated_accepted_request_returns_the_first_answer_and_takes_nothing(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    ten_token_user: UUID,
    path: str,
    body: dict[str, Any],
    status: int,
) -> None:
    first = post(app_client, path, ten_token_user, body, "key-1")
    assert first.status_code == status
    assert "Idempotent-Replayed" not in first.headers
    tokens, jobs = bucket_tokens(db, ten_token_user, "openai"), jobs_of(db, ten_token_user)

    again = post(app_client, path, ten_token_user, body, "key-1")

    assert again.status_code == status
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert bucket_tokens(db, ten_token_user, "openai") == tokens
    assert jobs_of(db, ten_token_user) == jobs


def test_the_same_key_with_a_different_body_or_route_is_422(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    body = single(dependencies={"openai": 1})
    assert post(app_client, SINGLE, ten_token_user, body, "key-1").status_code == 202
    tokens = bucket_tokens(db, ten_token_user, "openai")

    different_body = post(app_client, SINGLE, ten_token_user, {**body, "priority": 6}, "key-1")
    different_route = post(app_client, "/dashboard/jobs", ten_token_user, body, "key-1")

    for response in (different_body, different_route):
        assert response.status_code == 422
        assert response.json["description"] == (
            "this Idempotency-Key was already used for a different request"
        )
    assert bucket_tokens(db, ten_token_user, "openai") == tokens


def test_keys_are_scoped_to_their_user(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    other = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    body = single(dependencies={"openai": 1})

    mine = post(app_client, SINGLE, ten_token_user, body, "shared-key")
    theirs = post(app_client, SINGLE, other, body, "shared-key")

    assert mine.status_code == theirs.status_code == 202
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json["job_id"] != theirs.json["job_id"]


def test_a_rejection_is_not_remembered(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    body = single(dependencies={"openai": 10})
    assert (
        post(
            app_client, SINGLE, ten_token_user, single(dependencies={"openai": 5}), None
        ).status_code
        == 202
    )
    rejected = post(app_client, SINGLE, ten_token_user, body, "retry-me")
    assert rejected.status_code == 429
    # The operator raises the budget; the retry with the same key is decided anew.
    activate_config(db, ten_token_user, {"openai": {"capacity": 20, "refill_per_second": 0}})
    db.execute("UPDATE token_buckets SET tokens = capacity WHERE user_id = %s", [ten_token_user])

    retried = post(app_client, SINGLE, ten_token_user, body, "retry-me")

    assert retried.status_code == 202
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json["job_id"] != rejected.json["job_id"]


def test_a_rejected_atomic_batch_is_not_remembered(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    body = batch(job(dependencies={"openai": 6}), job(dependencies={"openai": 6}))
    assert post(app_client, ATOMIC, ten_token_user, body, "atomic-key").status_code == 207
    activate_config(db, ten_token_user, {"openai": {"capacity": 12, "refill_per_second": 0}})
    db.execute("UPDATE token_buckets SET tokens = capacity WHERE user_id = %s", [ten_token_user])

    assert post(app_client, ATOMIC, ten_token_user, body, "atomic-key").status_code == 202


def test_a_duplicate_while_the_first_is_being_decided_is_409(
    app_client: falcon.testing.TestClient,
    database_url: str,
    db: psycopg.Connection,
    ten_token_user: UUID,
) -> None:
    # Another session holds the key's lock, as the first request does while it is decided.
    with psycopg.connect(database_url) as first_request:
        first_request.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s || '/' || %s, 0))",
            [str(ten_token_user), "busy-key"],
        )
        duplicate = post(
            app_client, SINGLE, ten_token_user, single(dependencies={"openai": 1}), "busy-key"
        )
        assert duplicate.status_code == 409
        assert "still being decided" in duplicate.json["description"]
    assert jobs_of(db, ten_token_user) == 0
    # Once the first is done, the key is free again.
    assert (
        post(
            app_client, SINGLE, ten_token_user, single(dependencies={"openai": 1}), "busy-key"
        ).status_code
        == 202
    )


def test_the_primary_key_not_the_lock_guarantees_one_decision_per_key(
    database_url: str, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    """A writer whose snapshot predates the remembered key fails with 40001, then replays."""
    call = """
        SELECT job_id, replayed
          FROM admit_jobs_once(%s, 'system', 'b', %s::text[], %s::smallint[], %s::jsonb[],
                               %s::json[], true, %s, %s)
    """
    request_hash = hashlib.sha256(b"same request").digest()
    args = [ten_token_user, ["t"], [5], ['{"openai": 1}'], ["{}"], "raced-key", request_hash]
    with psycopg.connect(database_url) as late:
        late.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        late.execute("SELECT 1")  # its snapshot is taken now, before the first commits
        first = db.execute(call, args).fetchone()
        assert first is not None
        with pytest.raises(psycopg.errors.SerializationFailure):
            late.execute(call, args)
    replay = db.execute(call, args).fetchone()
    assert replay == (first[0], True)
    assert jobs_of(db, ten_token_user) == 1


def test_expired_keys_are_decided_anew_and_pruned(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    ten_token_user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = single(dependencies={"openai": 1})
    first = post(app_client, SINGLE, ten_token_user, body, "old-key")
    post(app_client, SINGLE, ten_token_user, body, "fresh-key")
    db.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
        " WHERE idempotency_key = 'old-key'"
    )

    again = post(app_client, SINGLE, ten_token_user, body, "old-key")
    assert again.status_code == 202
    assert again.json["job_id"] != first.json["job_id"]
    assert "Idempotent-Replayed" not in again.headers

    db.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
        " WHERE idempotency_key = 'old-key'"
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert janus_cli(["prune"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "pruned 1 expired idempotency keys and 0 beyond each user's newest 100000"
    )
    keys = db.execute("SELECT idempotency_key FROM idempotency_keys").fetchall()
    assert keys == [("fresh-key",)]


def plant_keys(db: psycopg.Connection, user: UUID, count: int) -> list[str]:
    """Remember `count` keys for `user`, key-0 the newest; key-2n and key-2n+1 share a moment
    (a group of requests decided together), which the key itself then orders. Newest first."""
    db.execute(
        "INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, decisions,"
        "                              created_at, expires_at)"
        " SELECT %(user)s, 'key-' || n, '\\x00', '[]', t.at, t.at + interval '24 hours'"
        "   FROM generate_series(0, %(count)s - 1) AS n,"
        "        LATERAL (SELECT now() - make_interval(secs => n / 2)) AS t(at)",
        {"user": user, "count": count},
    )
    # By moment, then of two keys of one moment the greater first: key-1 before key-0.
    return [f"key-{n}" for n in sorted(range(count), key=lambda n: (n // 2, -n))]


def keys_of(db: psycopg.Connection, user: UUID) -> set[str]:
    rows = db.execute("SELECT idempotency_key FROM idempotency_keys WHERE user_id = %s", [user])
    return {key for (key,) in rows}


def test_prune_keeps_each_users_newest_keys_however_recent(
    db: psycopg.Connection, database_url: str
) -> None:
    busy, other, few = create_user(db), create_user(db), create_user(db)
    busy_keys, other_keys, few_keys = (
        plant_keys(db, busy, 12),
        plant_keys(db, other, 6),
        plant_keys(db, few, 3),
    )

    with psycopg.connect(database_url, autocommit=True) as conn:
        assert maintenance.prune_idempotency_keys_beyond(conn, 3, chunk=2) == 9 + 3
        assert maintenance.prune_idempotency_keys_beyond(conn, 3, chunk=2) == 0

    assert keys_of(db, busy) == set(busy_keys[:3])
    assert keys_of(db, other) == set(other_keys[:3])
    assert keys_of(db, few) == set(few_keys)


def test_a_retry_whose_key_was_pruned_is_decided_anew(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    ten_token_user: UUID,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = single(dependencies={"openai": 1})
    first = post(app_client, SINGLE, ten_token_user, body, "older-key")
    post(app_client, SINGLE, ten_token_user, body, "newer-key")
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert janus_cli(["prune", "--keep-idempotency-keys", "1"]) == 0

    assert capsys.readouterr().out.splitlines()[0] == (
        "pruned 0 expired idempotency keys and 1 beyond each user's newest 1"
    )
    again = post(app_client, SINGLE, ten_token_user, body, "older-key")
    assert again.status_code == 202
    assert again.json["job_id"] != first.json["job_id"]
    assert "Idempotent-Replayed" not in again.headers
    assert (
        post(app_client, SINGLE, ten_token_user, body, "newer-key").headers["Idempotent-Replayed"]
        == "true"
    )


@pytest.mark.parametrize("key", ["x" * 256, "tab\there"])
def test_a_malformed_key_is_400(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, ten_token_user: UUID, key: str
) -> None:
    response = post(app_client, SINGLE, ten_token_user, single(dependencies={"openai": 1}), key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json["description"]
    assert jobs_of(db, ten_token_user) == 0


@pytest.mark.concurrency
def test_concurrent_duplicates_make_one_decision(
    gunicorn_server: Any, db: psycopg.Connection, ten_token_user: UUID
) -> None:
    body = single(dependencies={"openai": 1})
    headers = {"X-User-ID": str(ten_token_user), "Idempotency-Key": "storm"}

    def send(_: int) -> requests.Response:
        return requests.post(f"{gunicorn_server.url}{SINGLE}", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(send, range(48)))

    statuses = {response.status_code for response in responses}
    assert statuses <= {202, 409}
    accepted_ids = {response.json()["job_id"] for response in responses if response.ok}
    assert len(accepted_ids) == 1
    assert jobs_of(db, ten_token_user) == 1
    assert bucket_tokens(db, ten_token_user, "openai") == 9


def test_expired_keys_are_pruned_per_user_in_chunks_and_live_ones_stay(
    db: psycopg.Connection, database_url: str
) -> None:
    """Each user's expired keys go in chunks of their own (no statement spans two users):
    with a chunk of 2, three expired keys of one user and one of another all go."""
    users = [create_user(db, name) for name in ("keys-a", "keys-b")]
    for user_id, expired, live in ((users[0], 3, 1), (users[1], 1, 2)):
        for n in range(expired + live):
            db.execute(
                "INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash,"
                " decisions, expires_at) VALUES (%s, %s, 'h', '[]',"
                " now() + CASE WHEN %s THEN interval '-1 second' ELSE interval '1 hour' END)",
                [user_id, f"key-{n}", n < expired],
            )
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert maintenance.prune_idempotency_keys(conn, chunk=2) == 4
    left = db.execute(
        "SELECT user_id, count(*) FROM idempotency_keys WHERE user_id = ANY(%s) GROUP BY 1",
        [users],
    ).fetchall()
    assert dict(left) == {users[0]: 1, users[1]: 2}
