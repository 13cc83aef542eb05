"""Pause over HTTP: POST /dashboard/pause|resume, the pause history, and how a pause outlives
config versions (a config that leaves `paused` out keeps it, a rollback leaves it alone)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import requests

from tests.conftest import GunicornServer
from tests.support.answers import assert_clear_error
from tests.support.app import CONFIG, JOB_ROUTES, SERVICE_TOKEN, headers_for, post_json, put_config
from tests.support.bodies import batch, job, single
from tests.support.factories import activate_config, create_user, user_with_config

PAUSE = "/dashboard/pause"
RESUME = "/dashboard/resume"
HISTORY = "/dashboard/pause/history"
OPENAI = {"openai": {"capacity": 100, "refill_per_second": 0}}


def _post(client: falcon.testing.TestClient, path: str, user_id: UUID) -> falcon.testing.Result:
    return client.simulate_post(path, headers=headers_for(user_id))


def _admits(client: falcon.testing.TestClient, user_id: UUID) -> int:
    """The status the single-job route answers one small job with."""
    result = post_json(client, "/system/jobs", user_id, single(5, {"openai": 1}))
    return result.status_code


def _history(client: falcon.testing.TestClient, user_id: UUID, **params: Any) -> Any:
    result = client.simulate_get(HISTORY, params=params, headers=headers_for(user_id))
    assert result.status_code == 200, result.text
    return result.json


def _changes(client: falcon.testing.TestClient, user_id: UUID) -> list[tuple[bool, Any]]:
    """(paused, config_version) of every change, newest first."""
    listed = _history(client, user_id, limit="100")["changes"]
    return [(one["paused"], one["config_version"]) for one in listed]


def test_pause_refuses_every_job_route_with_403_and_resume_admits_again(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, OPENAI)
    paused = _post(app_client, PAUSE, user_id)
    assert paused.status_code == 200, paused.text
    assert paused.json["paused"] is True and paused.json["since"]
    for path in JOB_ROUTES:
        body = single(5, {"openai": 1}) if path.endswith("/jobs") else batch(job(5, {"openai": 1}))
        refused = post_json(app_client, path, user_id, body)
        assert assert_clear_error(refused, 403)["description"] == "service paused", path
    got = app_client.simulate_get(CONFIG, headers=headers_for(user_id))
    assert got.json["paused"] is True

    resumed = _post(app_client, RESUME, user_id)
    assert resumed.status_code == 200
    assert resumed.json["paused"] is False and resumed.json["since"] >= paused.json["since"]
    assert _admits(app_client, user_id) == 202
    assert _changes(app_client, user_id) == [(False, None), (True, None)]


def test_pausing_twice_is_one_change_and_keeps_its_time(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, OPENAI)
    first = _post(app_client, PAUSE, user_id).json
    again = _post(app_client, PAUSE, user_id).json
    assert again == first
    assert _changes(app_client, user_id) == [(True, None)]
    # Resuming a user that is not paused changes nothing either.
    other = user_with_config(db, OPENAI)
    assert _post(app_client, RESUME, other).json == {"paused": False, "since": None}
    assert _changes(app_client, other) == []


def test_a_config_that_leaves_paused_out_keeps_the_pause(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, OPENAI)
    _post(app_client, PAUSE, user_id)
    put = put_config(app_client, user_id, {"dependencies": OPENAI})
    assert put["paused"] is True and put["version"] == 2
    assert _admits(app_client, user_id) == 403
    # The version says what it was written with: nothing about pausing.
    listed = app_client.simulate_get(f"{CONFIG}/versions", headers=headers_for(user_id))
    assert "paused" not in listed.json["versions"][0]["config"]

    # One that sets it sets it, and the history says which version did.
    assert (
        put_config(app_client, user_id, {"paused": False, "dependencies": OPENAI})["paused"]
        is False
    )
    assert _admits(app_client, user_id) == 202
    assert (
        put_config(app_client, user_id, {"paused": True, "dependencies": OPENAI})["paused"] is True
    )
    assert _admits(app_client, user_id) == 403
    assert _changes(app_client, user_id) == [(True, 4), (False, 3), (True, None)]


def test_a_rollback_leaves_the_pause_alone(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    put_config(app_client, user_id, {"paused": False, "dependencies": OPENAI})
    put_config(app_client, user_id, {"dependencies": OPENAI})
    _post(app_client, PAUSE, user_id)
    rolled_back = _post(app_client, f"{CONFIG}/versions/1/activate", user_id)
    assert rolled_back.status_code == 200
    assert rolled_back.json["version"] == 1 and rolled_back.json["paused"] is True
    assert _admits(app_client, user_id) == 403


def test_a_user_without_a_config_can_be_paused_before_its_first_config(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    assert _post(app_client, PAUSE, user_id).json["paused"] is True
    assert put_config(app_client, user_id, {"dependencies": OPENAI})["paused"] is True
    assert _admits(app_client, user_id) == 403


def test_the_history_is_paginated_newest_first(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, OPENAI)
    for _ in range(3):
        _post(app_client, PAUSE, user_id)
        _post(app_client, RESUME, user_id)
    seen: list[bool] = []
    page = _history(app_client, user_id, limit="4")
    while True:
        seen += [one["paused"] for one in page["changes"]]
        if page["next"] is None:
            break
        page = _history(app_client, user_id, limit="4", cursor=page["next"])
    assert seen == [False, True] * 3


def test_bad_history_parameters_and_unknown_users_get_clear_4xx(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, OPENAI)
    for params in ({"limit": "0"}, {"limit": "-1"}, {"limit": "101"}, {"cursor": "x"}, {"a": "1"}):
        result = app_client.simulate_get(HISTORY, params=params, headers=headers_for(user_id))
        assert_clear_error(result, 400)
    for path in (PAUSE, RESUME):
        assert_clear_error(_post(app_client, path, uuid4()), 401)
        assert_clear_error(app_client.simulate_post(path), 401)
        assert_clear_error(app_client.simulate_get(path, headers=headers_for(user_id)), 405)
    assert_clear_error(app_client.simulate_get(HISTORY, headers=headers_for(uuid4())), 401)


def test_the_service_token_guards_pause_and_resume(
    token_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    user_id = user_with_config(db, OPENAI)
    assert_clear_error(_post(token_client, PAUSE, user_id), 401)
    authorized = headers_for(user_id, Authorization=f"Bearer {SERVICE_TOKEN}")
    assert token_client.simulate_post(PAUSE, headers=authorized).json["paused"] is True


def test_factories_config_without_paused_keeps_the_pause(db: psycopg.Connection) -> None:
    """activate_config() itself: NULL keeps the state, and only changes are recorded."""
    user_id = user_with_config(db, OPENAI, paused=True)
    activate_config(db, user_id, OPENAI, paused=None)
    activate_config(db, user_id, OPENAI, paused=True)
    rows = db.execute(
        "SELECT paused, config_version FROM pause_changes WHERE user_id = %s ORDER BY change_id",
        [user_id],
    ).fetchall()
    assert rows == [(True, 1)]
    assert db.execute("SELECT paused FROM users WHERE user_id = %s", [user_id]).fetchone() == (
        True,
    )


def test_pause_resume_and_rollback_over_real_http(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    user_id = create_user(db)
    headers = headers_for(user_id)
    url = gunicorn_server.url
    for capacity in (10, 20):
        body = {"dependencies": {"openai": {"capacity": capacity, "refill_per_second": 0}}}
        assert requests.put(f"{url}{CONFIG}", json=body, headers=headers, timeout=10).ok
    paused = requests.post(f"{url}{PAUSE}", headers=headers, timeout=10)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    job_body = single(5, {"openai": 1})
    refused = requests.post(f"{url}/dashboard/jobs", json=job_body, headers=headers, timeout=10)
    assert refused.status_code == 403 and refused.json()["description"] == "service paused"
    rolled = requests.post(f"{url}{CONFIG}/versions/1/activate", headers=headers, timeout=10)
    assert rolled.status_code == 200 and rolled.headers["ETag"] == '"1"'
    got = requests.get(f"{url}{CONFIG}", headers=headers, timeout=10).json()
    assert got["version"] == 1 and got["paused"] is True
    assert got["dependencies"]["openai"]["capacity"] == 10
    assert requests.post(f"{url}{RESUME}", headers=headers, timeout=10).json()["paused"] is False
    accepted = requests.post(f"{url}/dashboard/jobs", json=job_body, headers=headers, timeout=10)
    assert accepted.status_code == 202
    history = requests.get(f"{url}{HISTORY}", headers=headers, timeout=10).json()
    assert [one["paused"] for one in history["changes"]] == [False, True]
