"""API keys over real HTTP, on the service under gunicorn: each scope reaches exactly its
routes, a revoked or expired key is refused on its next request, a user with keys refuses its
X-User-ID alone, another user's key finds nothing of this user's, and no secret reaches a log
line, a metric or an error. Also the service's refusal to serve a public address without
keys, a token or JANUS_AUTH=user-id said on purpose."""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
import requests

from devtools.service import run_to_exit
from janus.cli import DEMO_CONFIG
from janus.db.keys import create_key
from janus.keys import SCOPES, Scope, new_key, parse_key, user_tag
from janus.routes import route_scopes, routes
from janus.settings import Settings, SettingsError
from tests.conftest import GunicornServer, StartGunicorn
from tests.support.app import SERVICE_TOKEN, serve_app
from tests.support.factories import user_with_config
from tests.support.secrets import logs_with_secrets
from tests.support.seed import SEED_BATCH, SEED_SINGLE

LIMITS = {"openai": {"capacity": 100, "refill_per_second": 0}}
JOB: dict[str, Any] = {
    "tenant_id": "t",
    "priority": 5,
    "dependencies": {"openai": 1},
    "batch_name": "b",
}
# A value for each path parameter of janus/routes.py.
PATH_VALUES = {"job_id": str(uuid4()), "version": "1", "key_id": "0" * 16}
_FIELD = re.compile(r"\{(\w+)(?::[^}]+)?\}")


def _key(db: psycopg.Connection, user_id: UUID, *scopes: Scope, **extra: Any) -> str:
    key, _ = create_key(db, user_id, "test", scopes or SCOPES, extra.get("expires_at"))
    return key.text


def _call(url: str, method: str, path: str, key: str | None = None, **headers: str) -> Any:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body: dict[str, Any] | None = {} if method in ("POST", "PUT") else None
    return requests.request(method, f"{url}{path}", json=body, headers=headers, timeout=10)


def _refusal(answer: requests.Response) -> str:
    description: str = answer.json()["description"]
    return description


def test_a_key_of_each_scope_reaches_exactly_its_routes(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    user = user_with_config(db, LIMITS)
    keys = {scope: _key(db, user, scope) for scope in SCOPES}
    table = route_scopes(routes(Settings(database_url="postgresql://x").max_batch_jobs))
    assert {scope for needed in table.values() for scope in needed} == set(SCOPES)

    for (template, method), needed in table.items():
        path = _FIELD.sub(lambda field: PATH_VALUES[field[1]], template)
        for scope, key in keys.items():
            answer = _call(gunicorn_server.url, method, path, key)
            if scope in needed:
                # Past the credential: whatever the route answers (a 403 of its own, such as
                # a paused user's, names no scope).
                assert answer.status_code != 401, (method, path, scope, answer.text)
                assert "lacks the scope" not in answer.text, (method, path, scope, answer.text)
            else:
                assert answer.status_code == 403, (method, path, scope, answer.text)
                names = " or ".join(one.value for one in needed)
                assert _refusal(answer) == f"this API key lacks the scope this route needs: {names}"


def test_a_revoked_key_and_an_expired_one_are_refused_on_their_next_request(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    url = gunicorn_server.url
    user = user_with_config(db, LIMITS)
    admin = _key(db, user, Scope.ADMIN)
    producer = _key(db, user, Scope.PRODUCE)
    expired = _key(db, user, Scope.PRODUCE, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (
        requests.post(f"{url}/system/jobs", json=JOB, headers=_bearer(producer)).status_code == 202
    )

    key_id = parse_key(producer).key_id  # type: ignore[union-attr]
    revoked = _call(url, "POST", f"/dashboard/keys/{key_id}/revoke", admin)

    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    again = requests.post(f"{url}/system/jobs", json=JOB, headers=_bearer(producer), timeout=10)
    assert again.status_code == 401
    assert _refusal(again) == "the API key was revoked"
    assert again.headers["WWW-Authenticate"] == 'Bearer realm="janus"'
    late = requests.post(f"{url}/system/jobs", json=JOB, headers=_bearer(expired), timeout=10)
    assert (late.status_code, _refusal(late)) == (401, "the API key has expired")
    # A secret one digit off is no key at all, as a key of no such id.
    wrong = producer[:-1] + ("0" if producer[-1] != "0" else "1")
    bad = requests.post(f"{url}/system/jobs", json=JOB, headers=_bearer(wrong), timeout=10)
    assert (bad.status_code, _refusal(bad)) == (401, "the API key is not valid")
    # Revoking it again changes nothing; a key the user does not have is 404.
    assert _call(url, "POST", f"/dashboard/keys/{key_id}/revoke", admin).status_code == 200
    assert _call(url, "POST", f"/dashboard/keys/{'f' * 16}/revoke", admin).status_code == 404


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_user_with_a_key_refuses_its_id_alone_even_once_every_key_is_revoked(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    url = gunicorn_server.url
    user = user_with_config(db, LIMITS)
    by_id = {"X-User-ID": str(user)}
    assert requests.post(f"{url}/system/jobs", json=JOB, headers=by_id).status_code == 202

    admin = _key(db, user, Scope.ADMIN, Scope.PRODUCE)

    alone = requests.post(f"{url}/system/jobs", json=JOB, headers=by_id, timeout=10)
    assert alone.status_code == 401
    assert _refusal(alone) == "this user has API keys: send one (Authorization: Bearer janus_...)"
    # With the key, X-User-ID may name the same user, and no other.
    same = requests.post(f"{url}/system/jobs", json=JOB, headers={**by_id, **_bearer(admin)})
    assert same.status_code == 202
    other = {"X-User-ID": str(uuid4()), **_bearer(admin)}
    mismatch = requests.post(f"{url}/system/jobs", json=JOB, headers=other, timeout=10)
    assert (mismatch.status_code, _refusal(mismatch)) == (
        401,
        "X-User-ID names another user than the API key's",
    )
    key_id = parse_key(admin).key_id  # type: ignore[union-attr]
    assert _call(url, "POST", f"/dashboard/keys/{key_id}/revoke", admin).status_code == 200
    after = requests.post(f"{url}/system/jobs", json=JOB, headers=by_id, timeout=10)
    assert after.status_code == 401


def test_another_users_key_finds_nothing_of_this_users(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    url = gunicorn_server.url
    owner = user_with_config(db, LIMITS)
    stranger = user_with_config(db, LIMITS)
    mine = _key(db, owner, *SCOPES)
    theirs = _key(db, stranger, *SCOPES)
    job_id = requests.post(f"{url}/system/jobs", json=JOB, headers=_bearer(mine)).json()["job_id"]

    assert _call(url, "GET", f"/dashboard/jobs/{job_id}", mine).status_code == 200
    seen = _call(url, "GET", f"/dashboard/jobs/{job_id}", theirs)
    assert seen.status_code == 404
    assert _call(url, "POST", f"/dashboard/jobs/{job_id}/cancel", theirs).status_code == 404
    assert _call(url, "GET", "/dashboard/jobs", theirs).json()["jobs"] == []
    mine_id = parse_key(mine).key_id  # type: ignore[union-attr]
    assert _call(url, "POST", f"/dashboard/keys/{mine_id}/revoke", theirs).status_code == 404


def test_keys_are_made_listed_and_revoked_over_http_and_no_secret_is_ever_written(
    gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    url = gunicorn_server.url
    user = user_with_config(db, LIMITS)
    admin = _key(db, user, Scope.ADMIN)

    made = requests.post(
        f"{url}/dashboard/keys",
        json={"name": "worker 1", "scopes": ["work", "read"], "expires_in_days": 30},
        headers=_bearer(admin),
        timeout=10,
    )

    assert made.status_code == 201, made.text
    new = made.json()
    assert set(new) == {
        "key_id", "name", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at",
        "key",
    }  # fmt: skip
    assert (new["name"], new["scopes"], new["revoked_at"]) == ("worker 1", ["work", "read"], None)
    credential = parse_key(new["key"])
    assert credential is not None
    assert (credential.user_id, credential.key_id) == (user, new["key_id"])
    claimed = requests.post(f"{url}/system/jobs/claim", json={}, headers=_bearer(new["key"]))
    assert claimed.status_code == 200
    listed = _call(url, "GET", "/dashboard/keys", admin).json()["keys"]
    assert [key["key_id"] for key in listed] == [new["key_id"], parse_key(admin).key_id]  # type: ignore[union-attr]
    assert all("key" not in key for key in listed)
    assert listed[0]["last_used_at"] is not None  # the claim used it
    bad = requests.post(
        f"{url}/dashboard/keys", json={"name": "", "scopes": ["root"]}, headers=_bearer(admin)
    )
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"name", "scopes"}

    # Everything the service wrote: its log, its metrics, its error bodies.
    secrets = [admin, new["key"]]
    written = [gunicorn_server.log(), requests.get(f"{url}/metrics", timeout=10).text, bad.text]
    for secret in secrets:
        secret_part = secret.rsplit("_", 1)[1]
        assert all(secret_part not in text for text in written)
    # The log names the user by its tag and the key by its id, never the user's id.
    assert str(user) not in gunicorn_server.log()
    assert f'"user":"{user_tag(user)}","key_id":"{new["key_id"]}"' in gunicorn_server.log()


def test_with_keys_required_the_seeds_examples_hold_with_a_key_and_not_without(
    start_gunicorn: StartGunicorn, db: psycopg.Connection
) -> None:
    server = start_gunicorn(env={"JANUS_AUTH": "keys"})
    url = server.url

    def demo_user_key() -> tuple[UUID, dict[str, str]]:
        """A user of `make run`'s demo config (docs/api.md's examples), and its key. Its
        buckets do not refill: on a loaded machine the three single jobs below may take the
        2.4 s in which openai's refill would pay for the third."""
        dependencies = {
            name: {**bucket, "refill_per_second": 0}
            for name, bucket in DEMO_CONFIG["dependencies"].items()
        }
        user = user_with_config(db, dependencies, min_priority=2, priority_reserve=0.2)
        return user, _bearer(_key(db, user, Scope.PRODUCE))

    user, key = demo_user_key()
    alone = requests.post(
        f"{url}/dashboard/jobs", json=SEED_SINGLE, headers={"X-User-ID": str(user)}
    )
    assert (alone.status_code, _refusal(alone)) == (
        401,
        "an API key is required (Authorization: Bearer janus_...)",
    )

    # The seed's single job: accepted twice, then rejected, each answer exactly the seed's.
    answers = [
        requests.post(f"{url}/dashboard/jobs", json=SEED_SINGLE, headers=key) for _ in range(3)
    ]
    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert [{k: v for k, v in answer.json().items() if k != "job_id"} for answer in answers] == [
        {"status": "Accepted", "reason": ""},
        {"status": "Accepted", "reason": ""},
        {"status": "Rejected", "reason": "dependency 'openai' rate limit exceeded"},
    ]
    # The seed's partial batch: one accepted, one rejected; its atomic batch then all refused.
    _, key = demo_user_key()
    partial = requests.post(f"{url}/system/jobs/batch", json=SEED_BATCH, headers=key)
    assert partial.status_code == 200
    assert [(one["status"], one["reason"]) for one in partial.json()["results"]] == [
        ("Accepted", ""),
        ("Rejected", "dependency 'stripe' cost 5 exceeds capacity 4"),
    ]
    _, key = demo_user_key()
    atomic = requests.post(f"{url}/system/jobs/batch/atomic", json=SEED_BATCH, headers=key)
    assert atomic.status_code == 207
    assert [(one["status"], one["reason"]) for one in atomic.json()] == [
        ("Rejected", "batch rejected atomically"),
        ("Rejected", "dependency 'stripe' cost 5 exceeds capacity 4"),
    ]


@pytest.mark.parametrize(
    ("env", "serves"),
    [
        ({}, False),
        ({"JANUS_AUTH": "keys"}, True),
        ({"JANUS_AUTH": "user-id"}, True),
        ({"JANUS_SERVICE_TOKEN": "t" * 32}, True),
    ],
    ids=["nothing", "keys", "user-id", "token"],
)
def test_a_public_address_needs_keys_a_token_or_user_id_said_on_purpose(
    env: dict[str, str], serves: bool
) -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://x", **env})
    settings.check_exposure("127.0.0.1")
    if serves:
        settings.check_exposure("0.0.0.0")
    else:
        with pytest.raises(SettingsError, match="JANUS_AUTH=keys"):
            settings.check_exposure("0.0.0.0")


def test_a_service_token_may_not_look_like_an_api_key() -> None:
    with pytest.raises(SettingsError, match="must not start with janus_"):
        Settings.from_env(
            {"DATABASE_URL": "postgresql://x", "JANUS_SERVICE_TOKEN": "janus_" + "x" * 20}
        )


def test_gunicorn_refuses_to_serve_a_public_address_without_keys(database_url: str) -> None:
    status, output = run_to_exit(
        {"DATABASE_URL": database_url, "JANUS_BIND_HOST": "0.0.0.0"}, timeout_s=30
    )

    assert status not in (0, None), output
    assert "refusing to serve 0.0.0.0" in output and "JANUS_AUTH=keys" in output


def test_the_runs_check_finds_a_secret_in_any_log() -> None:
    """tests/support/secrets.py, which searches every gunicorn log of the run at its end.
    Its files are kept outside the run's temporary directory, which that check searches."""
    with tempfile.TemporaryDirectory() as folder:
        _check_finds_a_secret(Path(folder))


def _check_finds_a_secret(tmp_path: Path) -> None:
    key = new_key(uuid4())
    (tmp_path / "clean.log").write_text(f"key {parse_key(key.text).key_id} used\n")  # type: ignore[union-attr]
    assert logs_with_secrets(tmp_path) == []
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "gunicorn-0.log").write_text(f"oops {key.text}\n")

    assert logs_with_secrets(tmp_path) == [str(tmp_path / "server" / "gunicorn-0.log")]


def test_a_key_stands_in_for_the_service_token_on_its_users_routes_only(
    db: psycopg.Connection, database_url: str
) -> None:
    user = user_with_config(db, LIMITS)
    key = _key(db, user, *SCOPES)
    with serve_app(Settings(database_url=database_url, service_token=SERVICE_TOKEN)) as client:
        jobs = client.simulate_get("/dashboard/jobs", headers=_bearer(key))
        metrics = client.simulate_get("/metrics", headers=_bearer(key))
        scraped = client.simulate_get("/metrics", headers=_bearer(SERVICE_TOKEN))

    assert jobs.status_code == 200
    assert metrics.status_code == 401 and metrics.json["description"].startswith(
        "a valid service token is required"
    )
    assert scraped.status_code == 200


def test_an_unknown_id_alone_is_answered_as_before_keys_a_bad_body_first(
    app_client: falcon.testing.TestClient,
) -> None:
    """The seed's order of refusals holds: a body is read before the user is looked up."""
    stranger = {"X-User-ID": str(uuid4())}

    bad = app_client.simulate_post("/system/jobs", json={"priority": "8"}, headers=stranger)
    good = app_client.simulate_post("/system/jobs", json=SEED_SINGLE, headers=stranger)

    assert bad.status_code == 400, bad.text
    assert (good.status_code, good.json["description"]) == (
        401,
        "X-User-ID does not name a Janus user",
    )
