"""Isolation and secrets: the service token, one user's quota and jobs, and what never leaks.

The service token and the secrets are checked through real gunicorn, started as the Procfile
starts it, whose whole output (GunicornServer.log()) is searched; the properties over many
requests run in-process. There are no routes that read jobs or quotas back, so "reading"
another user's data could only happen through a decision: every job id a user is answered
with must be that user's own.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from devtools.ports import free_port
from devtools.service import run_to_exit
from tests.conftest import GunicornServer, StartGunicorn
from tests.support.answers import JSON, MIB, Answer, assert_clear_error, assert_decisions
from tests.support.app import (
    ATOMIC_ROUTES,
    JOB_ROUTES,
    PARTIAL_ROUTES,
    SERVICE_TOKEN,
    SINGLE_ROUTES,
)
from tests.support.bodies import body_with
from tests.support.factories import (
    OPEN_CAPACITY,
    bucket_tokens,
    create_user,
    jobs_of,
    user_with_config,
)
from tests.support.hostile import examples, valid_jobs
from tests.support.raw_http import exchange, length, request_bytes

HTTP_TIMEOUT_S = 15
# The shortest token the settings accept, so the boundary is exercised too.
assert len(SERVICE_TOKEN) == 16
# The job routes, and a route read with GET.
READ_ROUTE = "/dashboard/quotas"
GUARDED_ROUTES = [*JOB_ROUTES, READ_ROUTE]


def bearer(token: str = SERVICE_TOKEN) -> str:
    """The Authorization header value for `token`."""
    return f"Bearer {token}"


def wrong_authorizations(token: str) -> dict[str, str | None]:
    """Authorization values that must not pass for `token`, by what is wrong with them."""
    return {
        "missing": None,
        "empty": "",
        "another token": bearer(secrets.token_hex(16)),
        "basic": "Basic " + base64.b64encode(f"janus:{token}".encode()).decode(),
        "the token in another case": bearer(token.swapcase()),
        "a character more": bearer(token + "0"),
        "a character less": bearer(token[:-1]),
        "no scheme": token,
        "no space": f"Bearer{token}",
        "another scheme": f"Token {token}",
        "twice": f"{bearer(token)}, {bearer(token)}",
        "scheme only": "Bearer",
    }


def assert_challenge(answer: Answer) -> None:
    """A 401 asking for the bearer token, in the one error shape."""
    assert_clear_error(answer, 401)
    assert answer.headers.get("www-authenticate", "").split(" ")[0] == "Bearer", answer.headers


# --- The service token, through gunicorn ------------------------------------------------------


def http(
    server: GunicornServer,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str | None] | None = None,
) -> Answer:
    """One request to `server`; a header whose value is None is left out."""
    sent = {name: value for name, value in (headers or {}).items() if value is not None}
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    if data is not None:
        sent.setdefault("Content-Type", JSON)
    response = requests.request(
        method, server.url + path, data=data, headers=sent, timeout=HTTP_TIMEOUT_S
    )
    return Answer.of(response)


def test_the_service_token_guards_every_route_but_the_health_checks(
    start_gunicorn: StartGunicorn,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    server = start_gunicorn(workers=2, env={"JANUS_SERVICE_TOKEN": SERVICE_TOKEN})
    for name, authorization in wrong_authorizations(SERVICE_TOKEN).items():
        for path in GUARDED_ROUTES:
            with subtests.test(authorization=name, path=path):
                method = "GET" if path == READ_ROUTE else "POST"
                body = None if method == "GET" else body_with(path)
                headers = {"Authorization": authorization, "X-User-ID": str(open_user)}

                assert_challenge(http(server, method, path, body=body, headers=headers))
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert bucket_tokens(db, open_user, "openai") == OPEN_CAPACITY

    # A platform's health checks send no secret: liveness and readiness are open.
    for path in ("/health", "/health/ready"):
        for authorization in [bearer(), None, "Basic x", bearer(SERVICE_TOKEN.swapcase())]:
            health = http(server, "GET", path, headers={"Authorization": authorization})
            assert (health.status, health.json()) == (200, {"status": "ok"}), path

    right = {"Authorization": bearer()}
    for path in JOB_ROUTES:
        with subtests.test(authorization="right", path=path):
            as_user = {**right, "X-User-ID": str(open_user)}
            decided = http(server, "POST", path, body=body_with(path), headers=as_user)
            invalid = http(server, "POST", path, body={"batch_name": 1}, headers=as_user)
            unknown = http(
                server,
                "POST",
                path,
                body=body_with(path),
                headers={**right, "X-User-ID": str(uuid4())},
            )
            anonymous = http(server, "POST", path, body=body_with(path), headers=right)

            assert_decisions(path, decided, 1 if path in SINGLE_ROUTES else 3)
            assert_clear_error(invalid, 400)
            assert_clear_error(unknown, 401)
            assert_clear_error(anonymous, 401)
    assert "Traceback" not in server.log()


def test_a_repeated_authorization_header_is_refused(
    start_gunicorn: StartGunicorn, db: psycopg.Connection, open_user: UUID
) -> None:
    server = start_gunicorn(workers=1, env={"JANUS_SERVICE_TOKEN": SERVICE_TOKEN})
    body = json.dumps(body_with(SINGLE_ROUTES[0])).encode()
    headers = [f"Authorization: {bearer()}"] * 2 + [f"X-User-ID: {open_user}", length(body)]

    answer = exchange(server, request_bytes(SINGLE_ROUTES[0], headers, body))

    assert_challenge(answer)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def run_gunicorn_to_exit(env: dict[str, str], timeout: float = 30) -> tuple[int | None, str]:
    """Run gunicorn as the Procfile does: its exit status (None: stopped at `timeout`), output.

    One worker; of this process's environment, no JANUS_ variable: only `env`'s settings count.
    """
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("JANUS_")}
    return run_to_exit(env, timeout_s=timeout, workers=1, base_env=base_env)


BAD_TOKENS = {
    "15 characters": "0123456789abcde",
    "not ascii": "jänus-service-token-1234",
    "a control character": "janus-service-token\x07",
    "a no-break space": "janus-service\xa0token",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_gunicorn_refuses_to_start_with_a_bad_service_token(name: str) -> None:
    token = BAD_TOKENS[name]

    status, output = run_gunicorn_to_exit(
        {"DATABASE_URL": "postgresql://janus@127.0.0.1:1/janus", "JANUS_SERVICE_TOKEN": token}
    )

    assert status not in (None, 0), output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("janus: ") and "JANUS_SERVICE_TOKEN" in lines[0], output
    assert token not in output
    assert "Traceback" not in output


# --- The service token, in-process -------------------------------------------------------------


def _near_misses(correct: str) -> st.SearchStrategy[str]:
    latin1 = st.characters(max_codepoint=255)
    return st.one_of(
        st.integers(0, len(correct) - 1).map(
            lambda at: correct[:at] + correct[at].swapcase() + correct[at + 1 :]
        ),
        st.integers(0, len(correct) - 1).map(lambda at: correct[:at] + correct[at + 1 :]),
        st.tuples(st.integers(0, len(correct)), latin1).map(
            lambda item: correct[: item[0]] + item[1] + correct[item[0] :]
        ),
        st.text(latin1, min_size=1, max_size=5).map(lambda tail: correct + tail),
        st.text(latin1, min_size=1, max_size=5).map(lambda head: head + correct),
    )


authorizations = st.one_of(
    _near_misses(bearer()),
    st.text(st.characters(max_codepoint=255), max_size=60),
    st.text(max_size=60),
)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(
    token_client: falcon.testing.TestClient, open_user: UUID, scheme: str
) -> None:
    headers = {"Authorization": f"{scheme} {SERVICE_TOKEN}", "X-User-ID": str(open_user)}
    assert token_client.simulate_get(READ_ROUTE, headers=headers).status_code == 200


@examples(200)
@given(path=st.sampled_from(GUARDED_ROUTES), authorization=authorizations)
def test_every_authorization_but_the_exact_token_is_401(
    token_client: falcon.testing.TestClient, open_user: UUID, path: str, authorization: str
) -> None:
    # Falcon's test client trims whitespace around a header value, as servers trim spaces and tabs.
    # The scheme is case-insensitive (RFC 9110), so a near miss in "Bearer" alone is no miss.
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials == SERVICE_TOKEN:
        return
    headers = {"Authorization": authorization, "X-User-ID": str(open_user)}

    if path == READ_ROUTE:
        result = token_client.simulate_get(path, headers=headers)
    else:
        result = token_client.simulate_post(path, json=body_with(path), headers=headers)

    assert_challenge(Answer.of(result))


# --- One user never touches another -----------------------------------------------------------

SHARED_CONFIG = {
    "openai": {"capacity": 1_000_000_000, "refill_per_second": 0},
    "stripe": {"capacity": 1_000_000_000, "refill_per_second": 0},
}


@dataclass(frozen=True)
class Footprint:
    """Everything of a user's that a request could change."""

    tokens: tuple[float, ...]
    jobs: int

    @classmethod
    def of(cls, db: psycopg.Connection, user_id: UUID) -> Footprint:
        """The user's bucket levels and job count now."""
        tokens = tuple(bucket_tokens(db, user_id, name) for name in sorted(SHARED_CONFIG))
        return cls(tokens, jobs_of(db, user_id))


@pytest.fixture
def two_users(db: psycopg.Connection) -> tuple[UUID, UUID]:
    """Two users with the same config: the same dependency names, the same buckets."""
    return user_with_config(db, SHARED_CONFIG), user_with_config(db, SHARED_CONFIG)


shared_dependencies = st.dictionaries(
    st.sampled_from([*SHARED_CONFIG, "unknown"]), st.integers(1, 1000), max_size=3
)
# A body field naming the other user, or a header that might be taken for the user.
IMPERSONATIONS = ["none", "body user_id", "body X-User-ID", "X-User", "X-Forwarded-User"]


@examples(80)
@given(
    actor=st.integers(0, 1),
    path=st.sampled_from(JOB_ROUTES),
    jobs=st.lists(valid_jobs, min_size=1, max_size=4),
    dependencies=st.lists(shared_dependencies, min_size=4, max_size=4),
    impersonation=st.sampled_from(IMPERSONATIONS),
)
def test_one_users_requests_never_touch_another_users_buckets_or_jobs(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    two_users: tuple[UUID, UUID],
    actor: int,
    path: str,
    jobs: list[dict[str, Any]],
    dependencies: list[dict[str, int]],
    impersonation: str,
) -> None:
    me, other = two_users[actor], two_users[1 - actor]
    if path in SINGLE_ROUTES:
        jobs = jobs[:1]
    jobs = [{**job, "dependencies": deps} for job, deps in zip(jobs, dependencies, strict=False)]
    body: dict[str, Any] = (
        {"batch_name": "b", **jobs[0]}
        if path in SINGLE_ROUTES
        else {"batch_name": "b", "jobs": jobs}
    )
    headers = {"X-User-ID": str(me)}
    if impersonation == "body user_id":
        body["user_id"] = str(other)
    elif impersonation == "body X-User-ID":
        body["X-User-ID"] = str(other)
    elif impersonation != "none":
        headers[impersonation] = str(other)
    before = Footprint.of(db, other)

    result = app_client.simulate_post(path, json=body, headers=headers)

    assert Footprint.of(db, other) == before
    if impersonation.startswith("body"):
        assert_clear_error(result, 400)
        return
    decisions = assert_decisions(path, result, len(jobs))
    job_ids = [UUID(decision["job_id"]) for decision in decisions]
    owners = db.execute(
        "SELECT DISTINCT user_id FROM jobs WHERE job_id = ANY(%s)", [job_ids]
    ).fetchall()
    stored_nothing = path in ATOMIC_ROUTES and result.status_code == 207
    assert owners == ([] if stored_nothing else [(me,)])


@dataclass(frozen=True)
class Call:
    """One request of the concurrent burst."""

    user_id: UUID
    path: str
    body: dict[str, Any]


def _calls_for(user_id: UUID) -> list[Call]:
    """40 single jobs, 10 partial batches of 3 and 10 atomic batches of 2; each job costs 1."""

    def job(n: int) -> dict[str, Any]:
        return {"tenant_id": f"t{n}", "priority": 1 + n % 10, "dependencies": {"openai": 1}}

    calls = [Call(user_id, SINGLE_ROUTES[n % 2], {"batch_name": "s", **job(n)}) for n in range(40)]
    calls += [
        Call(user_id, PARTIAL_ROUTES[n % 2], {"batch_name": "p", "jobs": [job(n)] * 3})
        for n in range(10)
    ]
    calls += [
        Call(user_id, ATOMIC_ROUTES[n % 2], {"batch_name": "a", "jobs": [job(n)] * 2})
        for n in range(10)
    ]
    return calls


def _send_all(server: GunicornServer, calls: Sequence[Call]) -> list[tuple[Call, Answer]]:
    local = threading.local()

    def send(call: Call) -> tuple[Call, Answer]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(
            server.url + call.path,
            json=call.body,
            headers={"X-User-ID": str(call.user_id)},
            timeout=HTTP_TIMEOUT_S * 2,
        )
        return call, Answer.of(response)

    with ThreadPoolExecutor(max_workers=24) as pool:
        return list(pool.map(send, calls))


def test_concurrent_traffic_of_two_users_with_the_same_dependencies_never_crosses(
    start_gunicorn: StartGunicorn, db: psycopg.Connection
) -> None:
    # Refill 0 and a reserve of 0: each user's demand exceeds its own capacity, so each must end
    # with exactly its own capacity spent, however the other user's requests interleave.
    capacities = {"a": 30, "b": 50}
    users = {
        name: user_with_config(
            db, {"openai": {"capacity": capacity, "refill_per_second": 0}}, priority_reserve=0
        )
        for name, capacity in capacities.items()
    }
    calls = [call for user_id in users.values() for call in _calls_for(user_id)]
    random.Random(15514733).shuffle(calls)
    server = start_gunicorn(workers=4)

    answers = _send_all(server, calls)

    for name, user_id in users.items():
        mine = [(call, answer) for call, answer in answers if call.user_id == user_id]
        answered_ids: set[UUID] = set()
        accepted = 0
        for call, answer in mine:
            jobs = len(call.body.get("jobs", [None]))
            decisions = assert_decisions(call.path, answer, jobs)
            accepted += sum(decision["status"] == "Accepted" for decision in decisions)
            if not (call.path in ATOMIC_ROUTES and answer.status == 207):
                answered_ids |= {UUID(decision["job_id"]) for decision in decisions}
        stored = db.execute(
            "SELECT job_id, status FROM jobs WHERE user_id = %s", [user_id]
        ).fetchall()
        assert {job_id for job_id, _ in stored} == answered_ids, name
        assert accepted == capacities[name], name
        assert sum(status == "Accepted" for _, status in stored) == capacities[name], name
        assert bucket_tokens(db, user_id, "openai") == 0, name
    assert "Traceback" not in server.log()


# --- Secrets never leak -----------------------------------------------------------------------


def with_password(url: str, password: str) -> tuple[str, str]:
    """`url` with a password, and the password: its own if it has one, else `password`.

    The test server trusts local connections, so a password it did not ask for is ignored.
    """
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    userinfo = f"{parts.username or 'postgres'}:{password}"
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}")), password


def marked_bodies(marker: str) -> dict[str, tuple[bytes, str, int]]:
    """Bodies that carry `marker` in the payload and are refused: {name: (body, type, status)}."""
    head = '{"batch_name": "b", "tenant_id": "t", "priority": 5, "payload": '

    def body(payload: str, **extra: str) -> bytes:
        fields = "".join(f', "{key}": {value}' for key, value in extra.items())
        return (head + payload + fields + "}").encode("utf-8", "surrogatepass")

    return {
        "cut short": (body(f'{{"secret": "{marker}"')[:-1], JSON, 400),
        "NaN beside it": (body(f'{{"secret": "{marker}", "n": NaN}}'), JSON, 400),
        "duplicate key": (body(f'{{"secret": "{marker}", "secret": "{marker}"}}'), JSON, 400),
        # Raw, not as escapes: escaped, both are valid JSON and a payload keeps them.
        "raw NUL": (body(f'{{"secret": "{marker}\x00"}}'), JSON, 400),
        "raw lone surrogate": (body(f'{{"secret": "{marker}\ud800"}}'), JSON, 400),
        "invalid UTF-8": (
            body(f'{{"secret": "{marker}"}}').replace(marker.encode(), marker.encode() + b"\xff"),
            JSON,
            400,
        ),
        "payload over 64 KiB": (body(json.dumps({"secret": marker * 5000})), JSON, 400),
        "too deep": (body("[" * 100 + json.dumps(marker) + "]" * 100), JSON, 400),
        "unknown field": (body("{}", colour=json.dumps(marker)), JSON, 400),
        "priority": (
            body("{}").replace(b'"priority": 5', f'"priority": "{marker}"'.encode()),
            JSON,
            400,
        ),
        "not JSON": (marker.encode(), "text/plain", 415),
        "over 1 MiB": ((marker * (MIB // len(marker) + 1)).encode(), JSON, 413),
    }


def test_no_body_or_log_line_holds_a_payload_value_the_token_or_the_password(
    start_gunicorn: StartGunicorn, database_url: str, db: psycopg.Connection
) -> None:
    marker = f"payload-secret-{secrets.token_hex(8)}"
    token = secrets.token_hex(24)
    wrong_token = secrets.token_hex(24)
    url, password = with_password(database_url, f"pw-secret-{secrets.token_hex(8)}")
    dead_url, _ = with_password(
        urlunsplit(urlsplit(database_url)._replace(netloc=f"127.0.0.1:{free_port()}")), password
    )
    user = user_with_config(db, {"openai": {"capacity": 100, "refill_per_second": 0}})
    paused = user_with_config(
        db, {"openai": {"capacity": 100, "refill_per_second": 0}}, paused=True
    )
    no_config = create_user(db)
    server = start_gunicorn(
        workers=2,
        env={
            "DATABASE_URL": url,
            "JANUS_SERVICE_TOKEN": token,
            "JANUS_LOCK_TIMEOUT_MS": "200",
            "JANUS_LOG_LEVEL": "debug",
        },
    )
    answers: list[tuple[str, Answer]] = []

    def send(
        name: str, user_id: UUID | str, body: bytes, content_type: str = JSON, **kw: Any
    ) -> Answer:
        headers = {
            "Authorization": kw.get("authorization", bearer(token)),
            "X-User-ID": str(user_id),
            "Content-Type": content_type,
        }
        response = requests.post(
            server.url + kw.get("path", "/dashboard/jobs"),
            data=body,
            headers=headers,
            timeout=HTTP_TIMEOUT_S,
        )
        answer = Answer.of(response)
        answers.append((name, answer))
        return answer

    for name, (body, content_type, status) in marked_bodies(marker).items():
        assert send(name, user, body, content_type).status == status, name
    valid = json.dumps(body_with(SINGLE_ROUTES[0], payload={"secret": marker})).encode()
    atomic = json.dumps(
        body_with(ATOMIC_ROUTES[0], payload={"secret": marker}, dependencies={"nope": 1})
    ).encode()
    assert send("unknown user", uuid4(), valid).status == 401
    assert send("marker as the user", marker, valid).status == 401
    assert send("no config", no_config, valid).status == 403
    assert send("paused", paused, valid).status == 403
    assert send("wrong token", user, valid, authorization=bearer(wrong_token)).status == 401
    assert send("accepted", user, valid).status == 202
    assert send("atomic rejection", user, atomic, path=ATOMIC_ROUTES[0]).status == 207
    with psycopg.connect(database_url) as locker:
        locker.execute("SELECT 1 FROM token_buckets WHERE user_id = %s FOR UPDATE", [user])
        assert send("lock timeout", user, valid).status == 503
        locker.rollback()

    dead = start_gunicorn(
        workers=1,
        env={
            "DATABASE_URL": dead_url,
            "JANUS_SERVICE_TOKEN": token,
            "JANUS_POOL_TIMEOUT_MS": "300",
        },
    )
    for path in ("/health/ready", "/dashboard/jobs"):
        response = requests.request(
            "GET" if path == "/health/ready" else "POST",
            dead.url + path,
            data=None if path == "/health/ready" else valid,
            headers={"Authorization": bearer(token), "X-User-ID": str(user), "Content-Type": JSON},
            timeout=HTTP_TIMEOUT_S,
        )
        answer = Answer.of(response)
        answers.append((f"dead database {path}", answer))
        assert answer.status == 503 and "retry-after" in answer.headers
    time.sleep(1)  # let the pool's background connection attempts fail and be logged

    secrets_by_name = {
        "payload marker": marker,
        "service token": token,
        "wrong token": wrong_token,
        "password": password,
    }
    for name, answer in answers:
        shown = answer.content.decode("utf-8", "replace") + json.dumps(dict(answer.headers))
        for secret_name, secret in secrets_by_name.items():
            assert secret not in shown, (name, secret_name, shown[:2000])
    for log in (server.log(), dead.log()):
        assert "Booting worker" in log  # the log is really gunicorn's output
        assert "Traceback" not in log, log[-5000:]
        for secret_name, secret in secrets_by_name.items():
            leaking = [line for line in log.splitlines() if secret in line]
            assert not leaking, (secret_name, leaking[:5])


@pytest.mark.parametrize(
    "password", ["pw%zz-secret-", "pw secret-"], ids=["bad percent escape", "space"]
)
def test_a_database_url_libpq_cannot_parse_never_shows_its_password(
    database_url: str, password: str
) -> None:
    # Operators paste passwords with % or spaces unencoded; libpq's parse error quotes them.
    password += secrets.token_hex(6)
    parts = urlsplit(database_url)
    url = urlunsplit(
        parts._replace(
            netloc=f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port}"
        )
    )

    # Long enough for a worker to boot and its pool to try to connect several times.
    status, output = run_gunicorn_to_exit({"DATABASE_URL": url}, timeout=4)

    assert password not in output, output[-3000:]
    secret_part = password.split("-", 1)[1]
    assert secret_part not in output, output[-3000:]
    if status is not None:
        assert len(output.strip().splitlines()) == 1 and "Traceback" not in output, output


def test_an_error_never_echoes_a_number_from_the_payload(
    app_client: falcon.testing.TestClient, open_user: UUID
) -> None:
    card = "4111111111111111"
    text = (
        '{"batch_name": "b", "tenant_id": "t", "priority": 5, "payload": {"card": CARD, "x": NaN}}'
    )
    text = text.replace("CARD", card)

    result = app_client.simulate_post(
        SINGLE_ROUTES[0],
        body=text.encode(),
        headers={"X-User-ID": str(open_user), "Content-Type": JSON},
    )

    assert_clear_error(result, 400)
    assert card not in result.text
