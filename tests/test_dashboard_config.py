"""The config over HTTP: GET/PUT /dashboard/config, its versions, rollback, If-Match."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import requests

from janus.settings import Settings
from tests.conftest import StartGunicorn
from tests.support.answers import assert_clear_error
from tests.support.app import CONFIG, SERVICE_TOKEN, headers_for, serve_app
from tests.support.factories import bucket_tokens, create_user, user_with_config

VERSIONS = "/dashboard/config/versions"


def _config(capacity: int = 100, **extra: Any) -> dict[str, Any]:
    return {"dependencies": {"openai": {"capacity": capacity, "refill_per_second": 0}}, **extra}


def _put(
    client: falcon.testing.TestClient, user_id: UUID, body: Any, **headers: str
) -> falcon.testing.Result:
    return client.simulate_put(CONFIG, json=body, headers=headers_for(user_id, **headers))


def _versions(db: psycopg.Connection, user_id: UUID) -> list[int]:
    rows = db.execute("SELECT version FROM configs WHERE user_id = %s ORDER BY 1", [user_id])
    return [row[0] for row in rows]


def test_get_answers_the_active_config_with_its_version_and_etag(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    result = app_client.simulate_get(CONFIG, headers=headers_for(user_id))
    assert result.status_code == 200, result.text
    assert result.headers["etag"] == '"1"'
    body = result.json
    assert body["version"] == 1 and body["activated_at"]
    assert body["dependencies"] == {"openai": {"capacity": 10, "refill_per_second": 1}}
    assert set(body) >= {"paused", "min_priority", "priority_reserve", "unknown_dependencies"}


def test_get_without_a_config_is_404(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    body = assert_clear_error(app_client.simulate_get(CONFIG, headers=headers_for(user_id)), 404)
    assert "no active config" in body["description"]


def test_unauthenticated_and_unknown_users_are_401(app_client: falcon.testing.TestClient) -> None:
    assert_clear_error(app_client.simulate_get(CONFIG), 401)
    assert_clear_error(app_client.simulate_get(CONFIG, headers=headers_for(uuid4())), 401)
    assert_clear_error(_put(app_client, uuid4(), _config()), 401)


def test_put_stores_and_activates_a_new_version(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    first = _put(app_client, user_id, _config(100))
    assert first.status_code == 200, first.text
    assert first.json["version"] == 1 and first.headers["etag"] == '"1"'
    second = _put(app_client, user_id, _config(50), **{"If-Match": '"1"'})
    assert second.status_code == 200, second.text
    assert second.json["version"] == 2 and second.headers["etag"] == '"2"'
    assert second.json["dependencies"]["openai"]["capacity"] == 50
    # Unquoted If-Match is accepted too.
    third = _put(app_client, user_id, _config(60), **{"If-Match": "2"})
    assert third.status_code == 200, third.text
    got = app_client.simulate_get(CONFIG, headers=headers_for(user_id))
    assert got.json["version"] == 3 and got.headers["etag"] == '"3"'


def test_a_priority_reserve_just_below_1_is_stored_as_sent(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    # Found by schemathesis: sent to Postgres as a float8, 0.9999999999999999 became 1 and
    # broke the configs table's CHECK (priority_reserve < 1): a 500 for a valid config.
    user_id = create_user(db)
    put = _put(app_client, user_id, _config(priority_reserve=0.9999999999999999))
    assert put.status_code == 200, put.text
    assert put.json["priority_reserve"] == 0.9999999999999999
    row = db.execute("SELECT priority_reserve::text FROM configs WHERE user_id = %s", [user_id])
    assert row.fetchone() == ("0.9999999999999999",)


def test_an_invalid_config_is_400_naming_the_field_and_stores_nothing(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    body = assert_clear_error(_put(app_client, user_id, _config(min_priority=11)), 400)
    assert "min_priority" in body["errors"]
    body = assert_clear_error(_put(app_client, user_id, {**_config(), "bogus": 1}), 400)
    assert "bogus" in body["errors"]
    duplicate = '{"dependencies": {}, "dependencies": {}}'
    result = app_client.simulate_put(CONFIG, body=duplicate, headers=headers_for(user_id))
    assert_clear_error(result, 400)
    nan = '{"dependencies": {"openai": {"capacity": 1, "refill_per_second": NaN}}}'
    result = app_client.simulate_put(CONFIG, body=nan, headers=headers_for(user_id))
    assert_clear_error(result, 400)
    for bad in ("W/x", '"1', "0", '"1", "2"'):
        assert_clear_error(_put(app_client, user_id, _config(), **{"If-Match": bad}), 400)
    assert _versions(db, user_id) == [1]


def test_a_stale_if_match_is_412_and_stores_nothing(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    assert _put(app_client, user_id, _config()).status_code == 200
    body = assert_clear_error(_put(app_client, user_id, _config(), **{"If-Match": '"1"'}), 412)
    assert '"2"' in body["description"]
    assert _versions(db, user_id) == [1, 2]
    # With no config at all, any If-Match is stale.
    fresh = create_user(db)
    assert_clear_error(_put(app_client, fresh, _config(), **{"If-Match": "1"}), 412)
    assert_clear_error(_put(app_client, fresh, _config(), **{"If-Match": "*"}), 412)
    assert _versions(db, fresh) == []
    # "*" matches whatever version is active.
    assert _put(app_client, user_id, _config(), **{"If-Match": "*"}).status_code == 200
    assert _versions(db, user_id) == [1, 2, 3]


def _race_two_puts(
    db: psycopg.Connection, database_url: str, user_id: UUID, put: Callable[[int], int]
) -> list[int]:
    """Run `put(capacity)` twice at once, both waiting on the user's row lock; their statuses.

    The lock is held until both PUTs are inside their transactions, waiting on it, so both
    read If-Match against the same state before either may go on.
    """
    results: list[int] = []
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT 1 FROM users WHERE user_id = %s FOR UPDATE", [user_id])
        threads = [threading.Thread(target=lambda c=c: results.append(put(c))) for c in (20, 30)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            assert row is not None
            if row[0] == 2:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the two PUTs never both waited on the user's lock")
        blocker.rollback()
        for thread in threads:
            thread.join(10)
    return sorted(results)


def test_two_concurrent_puts_with_the_same_if_match_one_wins(
    db: psycopg.Connection, database_url: str
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    # A lock_timeout longer than the test's wait, so a slow machine cannot turn a wait into 503.
    settings = Settings(database_url=database_url, lock_timeout_ms=30_000)
    with serve_app(settings) as app_client:

        def put(capacity: int) -> int:
            headers = {"If-Match": '"1"'}
            return _put(app_client, user_id, _config(capacity), **headers).status_code

        assert _race_two_puts(db, database_url, user_id, put) == [200, 412]
    assert _versions(db, user_id) == [1, 2]


def test_two_concurrent_puts_over_real_http_one_wins(
    db: psycopg.Connection, database_url: str, start_gunicorn: StartGunicorn
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    server = start_gunicorn(env={"JANUS_LOCK_TIMEOUT_MS": "30000"})

    def put(capacity: int) -> int:
        headers = headers_for(user_id, **{"If-Match": '"1"'})
        url = f"{server.url}{CONFIG}"
        return requests.put(url, json=_config(capacity), headers=headers, timeout=30).status_code

    assert _race_two_puts(db, database_url, user_id, put) == [200, 412]
    assert _versions(db, user_id) == [1, 2]
    listed = requests.get(f"{server.url}{VERSIONS}", headers=headers_for(user_id), timeout=10)
    assert [one["version"] for one in listed.json()["versions"]] == [2, 1]
    bad = requests.get(f"{server.url}{VERSIONS}?limit=-1", headers=headers_for(user_id), timeout=10)
    assert_clear_error(bad, 400)


def test_versions_are_paginated_newest_first(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    for capacity in (1, 2, 3, 4, 5):
        assert _put(app_client, user_id, _config(capacity)).status_code == 200
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2"} if cursor is None else {"limit": "2", "cursor": cursor}
        result = app_client.simulate_get(VERSIONS, params=params, headers=headers_for(user_id))
        assert result.status_code == 200, result.text
        for item in result.json["versions"]:
            assert set(item) == {"version", "activated_at", "created_at", "is_active", "config"}
            assert item["is_active"] == (item["version"] == 5)
            assert item["config"]["dependencies"]["openai"]["capacity"] == item["version"]
            seen.append(item["version"])
        cursor = result.json["next"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]


def test_bad_page_parameters_are_400(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    for params in (
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "101"},
        {"cursor": "abc"},
        {"x": "1"},
    ):
        result = app_client.simulate_get(VERSIONS, params=params, headers=headers_for(user_id))
        assert_clear_error(result, 400)
    empty = app_client.simulate_get(VERSIONS, headers=headers_for(user_id))
    assert empty.status_code == 200 and empty.json == {"versions": [], "next": None}


def test_rollback_activates_the_old_version_itself_and_buckets_follow_the_contract(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    v1 = {"dependencies": {"openai": {"capacity": 100, "refill_per_second": 0}}}
    v2 = {
        "dependencies": {
            "openai": {"capacity": 10, "refill_per_second": 0},
            "search": {"capacity": 5, "refill_per_second": 0},
        }
    }
    v3 = {"dependencies": {"search": {"capacity": 7, "refill_per_second": 0}}}
    for body in (v1, v2, v3):
        assert _put(app_client, user_id, body).status_code == 200
    assert bucket_tokens(db, user_id, "search") == 5  # kept, clamped from nothing to 5
    path = f"{VERSIONS}/1/activate"
    result = app_client.simulate_post(path, headers=headers_for(user_id))
    assert result.status_code == 200, result.text
    assert result.json["version"] == 1 and result.headers["etag"] == '"1"'
    assert result.json["dependencies"] == v1["dependencies"]
    got = app_client.simulate_get(CONFIG, headers=headers_for(user_id))
    assert got.json["version"] == 1 and got.headers["etag"] == '"1"'
    assert got.json["dependencies"] == v1["dependencies"]
    assert got.json["activated_at"] == result.json["activated_at"]
    # No version was added, and the history says which one is active.
    assert _versions(db, user_id) == [1, 2, 3]
    listed = app_client.simulate_get(VERSIONS, headers=headers_for(user_id)).json["versions"]
    assert [(one["version"], one["is_active"]) for one in listed] == [
        (3, False),
        (2, False),
        (1, True),
    ]
    # openai was dropped by v3, so it comes back new and full; search is dropped.
    assert bucket_tokens(db, user_id, "openai") == 100
    row = db.execute(
        "SELECT count(*) FROM token_buckets WHERE user_id = %s AND dependency = 'search'",
        [user_id],
    ).fetchone()
    assert row == (0,)


def test_rollback_clamps_kept_tokens_to_the_capacity(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    search = {"dependencies": {"search": {"capacity": 5, "refill_per_second": 0}}}
    for body in (_config(30), search, _config(100)):
        assert _put(app_client, user_id, body).status_code == 200
    assert bucket_tokens(db, user_id, "openai") == 100  # new in v3, so full
    result = app_client.simulate_post(f"{VERSIONS}/1/activate", headers=headers_for(user_id))
    assert result.status_code == 200
    assert bucket_tokens(db, user_id, "openai") == 30  # kept, clamped to v1's capacity


def test_activating_an_unknown_version_is_404(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    result = app_client.simulate_post(f"{VERSIONS}/9/activate", headers=headers_for(user_id))
    assert_clear_error(result, 404)
    result = app_client.simulate_post(f"{VERSIONS}/0/activate", headers=headers_for(user_id))
    assert_clear_error(result, 404)
    # Found by schemathesis: a version past Postgres's integer (8393374043) was a 500.
    for version in (2**31, 8393374043, 10**30):
        result = app_client.simulate_post(
            f"{VERSIONS}/{version}/activate", headers=headers_for(user_id)
        )
        assert_clear_error(result, 404)
    other = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    assert _put(app_client, other, _config()).status_code == 200
    # Another user's version 2 is not this user's.
    result = app_client.simulate_post(f"{VERSIONS}/2/activate", headers=headers_for(user_id))
    assert_clear_error(result, 404)
    assert _versions(db, user_id) == [1]


def test_the_service_token_guards_the_config_routes(
    token_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    for path, method in ((CONFIG, "GET"), (CONFIG, "PUT"), (VERSIONS, "GET")):
        result = token_client.simulate_request(method, path, headers=headers_for(user_id))
        assert_clear_error(result, 401)
    authorized = headers_for(user_id, Authorization=f"Bearer {SERVICE_TOKEN}")
    assert token_client.simulate_get(CONFIG, headers=authorized).status_code == 200


def test_other_statuses_of_the_config_routes(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 1}})
    as_text = headers_for(user_id, **{"Content-Type": "text/plain"})
    assert_clear_error(app_client.simulate_put(CONFIG, body="{}", headers=as_text), 415)
    assert_clear_error(app_client.simulate_delete(CONFIG, headers=headers_for(user_id)), 405)
    assert_clear_error(app_client.simulate_get(VERSIONS, headers=headers_for(uuid4())), 401)
    path = f"{VERSIONS}/1/activate"
    assert_clear_error(app_client.simulate_post(path, headers=headers_for(uuid4())), 401)
    assert _versions(db, user_id) == [1]
