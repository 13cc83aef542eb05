"""The server around the app, through real gunicorn: slow clients, gunicorn's own answers,
request ids on answers and log lines, and what an expected outcome logs (nothing alarming).

The slow-client scenario under load is in tests/faults (`make reliability`); here each
behaviour is shown once, on raw sockets.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import select
import socket
import time
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import psycopg
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.ports import free_port
from janus import logs
from tests.conftest import GunicornServer, StartGunicorn
from tests.support.answers import assert_clear_error
from tests.support.factories import create_user, jobs_of
from tests.support.raw_http import exchange, single_body, single_request

READ_TIMEOUT_S = 1


@pytest.fixture
def impatient_server(start_gunicorn: StartGunicorn) -> GunicornServer:
    """The service with a one-second read deadline."""
    return start_gunicorn(workers=1, env={"JANUS_READ_TIMEOUT_S": str(READ_TIMEOUT_S)})


def connect(server: GunicornServer) -> socket.socket:
    """A raw connection to the service."""
    address = urlsplit(server.url)
    assert address.hostname is not None and address.port is not None
    return socket.create_connection((address.hostname, address.port), timeout=10)


def read_answer(conn: socket.socket) -> bytes:
    """Everything the service sends until it closes the connection."""
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def status_and_body(received: bytes) -> tuple[int, dict[str, object]]:
    """The status code and JSON body of one answer."""
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


# --- Slow clients ---------------------------------------------------------------------------


@pytest.mark.parametrize("stalls_in", ["head", "body"])
def test_a_request_that_stalls_is_answered_408_and_never_decided(
    impatient_server: GunicornServer, db: psycopg.Connection, openai_user: UUID, stalls_in: str
) -> None:
    request = single_request(f"X-User-ID: {openai_user}")
    cut = request.index(b"\r\n\r\n") - 5 if stalls_in == "head" else len(request) - 5
    with connect(impatient_server) as conn:
        started = time.monotonic()
        conn.sendall(request[:cut])
        received = read_answer(conn)
        waited = time.monotonic() - started
        # The rest, sent after the answer, is never read as a request.
        with contextlib.suppress(OSError):
            conn.sendall(request[cut:])

    status, answer = status_and_body(received)
    assert status == 408, received
    assert answer["title"] == "408 Request Timeout"
    assert f"within {READ_TIMEOUT_S} s" in str(answer["description"])
    assert b"Connection: close" in received
    assert READ_TIMEOUT_S <= waited < READ_TIMEOUT_S + 3
    assert jobs_of(db, openai_user) == 0


def test_a_trickling_request_cannot_outlast_the_deadline(
    impatient_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    # One byte every 0.2 s keeps the connection busy; the deadline counts from the start.
    request = single_request(f"X-User-ID: {openai_user}")
    with connect(impatient_server) as conn:
        started = time.monotonic()
        received = b""
        for byte in request:
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            if select.select([conn], [], [], 0.2)[0]:
                break
        received = read_answer(conn)
        waited = time.monotonic() - started

    assert status_and_body(received)[0] == 408
    assert waited < READ_TIMEOUT_S + 3
    assert jobs_of(db, openai_user) == 0


def test_slow_clients_do_not_hold_up_the_others(
    impatient_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    # More stalled connections than the one worker has threads (16).
    request = single_request(f"X-User-ID: {openai_user}")
    stalled = [connect(impatient_server) for _ in range(40)]
    try:
        for conn in stalled:
            conn.sendall(request[:-5])
        started = time.monotonic()
        health = requests.get(f"{impatient_server.url}/health", timeout=5)
        job = requests.post(
            f"{impatient_server.url}/dashboard/jobs",
            data=single_body(),
            headers={"X-User-ID": str(openai_user), "Content-Type": "application/json"},
            timeout=5,
        )
        answered_in = time.monotonic() - started
        assert (health.status_code, job.status_code) == (200, 202)
        assert answered_in < 0.5
        assert {status_and_body(read_answer(conn))[0] for conn in stalled} == {408}
    finally:
        for conn in stalled:
            conn.close()
    assert jobs_of(db, openai_user) == 1


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    impatient_server: GunicornServer,
) -> None:
    with connect(impatient_server) as conn:
        started = time.monotonic()
        assert read_answer(conn) == b""
        assert READ_TIMEOUT_S <= time.monotonic() - started < READ_TIMEOUT_S + 3


# --- gunicorn's own answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"POST /dashboard/jobs HTTP/1.1\r\nHost: j\r\nContent-Length: -5\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: j\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: j\r\n\r\n", 414),
        (b"NOT-HTTP\r\n\r\n", 400),
    ],
    ids=["negative-content-length", "9000-byte-header", "5000-byte-path", "no-request-line"],
)
def test_requests_gunicorn_refuses_itself_get_the_json_error_shape(
    server_for_raw: GunicornServer, request_: bytes, status: int
) -> None:
    answer = exchange(server_for_raw, request_)

    assert_clear_error(answer, status)


@pytest.fixture
def server_for_raw(start_gunicorn: StartGunicorn) -> GunicornServer:
    """The service with one worker."""
    return start_gunicorn(workers=1)


# --- Health, authentication challenges, request ids -----------------------------------------


@pytest.mark.parametrize("path", ["/health", "/health/ready"])
def test_head_on_health_answers_like_get_without_a_body(
    server_for_raw: GunicornServer, path: str
) -> None:
    get = requests.get(f"{server_for_raw.url}{path}", timeout=5)
    head = requests.head(f"{server_for_raw.url}{path}", timeout=5)

    assert (head.status_code, get.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["Content-Type"] == get.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "user_id", [None, "not-a-uuid", str(uuid4())], ids=["missing", "malformed", "unknown"]
)
def test_every_401_says_how_to_authenticate(
    server_for_raw: GunicornServer, user_id: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if user_id is not None:
        headers["X-User-ID"] = user_id

    answer = requests.post(
        f"{server_for_raw.url}/dashboard/jobs", data=single_body(), headers=headers, timeout=5
    )

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'X-User-ID realm="janus"'


def test_a_401_for_the_service_token_challenges_for_a_bearer_token(
    start_gunicorn: StartGunicorn,
) -> None:
    server = start_gunicorn(workers=1, env={"JANUS_SERVICE_TOKEN": "s" * 32})

    answer = requests.get(f"{server.url}/dashboard/quotas", timeout=5)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_an_answer_echoes_a_well_formed_request_id_and_makes_one_otherwise(
    server_for_raw: GunicornServer,
) -> None:
    url = f"{server_for_raw.url}/health"
    echoed = requests.get(url, headers={"X-Request-ID": "client-42.a:b/c"}, timeout=5)
    made = requests.get(url, timeout=5)
    replaced = requests.get(url, headers={"X-Request-ID": "has space" + "x" * 200}, timeout=5)

    assert echoed.headers["X-Request-ID"] == "client-42.a:b/c"
    assert len(made.headers["X-Request-ID"]) == 32
    assert replaced.headers["X-Request-ID"] not in ("", "has space" + "x" * 200)
    assert len(replaced.headers["X-Request-ID"]) == 32


def test_error_responses_carry_the_request_id_too(
    server_for_raw: GunicornServer,
) -> None:
    answer = requests.post(
        f"{server_for_raw.url}/dashboard/jobs",
        data=b"{",
        headers={"Content-Type": "application/json", "X-Request-ID": "rid-1"},
        timeout=5,
    )
    assert answer.status_code == 401
    assert answer.headers["X-Request-ID"] == "rid-1"


# --- Logs ------------------------------------------------------------------------------------


def test_a_logged_line_names_its_request(start_gunicorn: StartGunicorn) -> None:
    # A database nobody listens on: the job route logs "database unavailable" and answers 503.
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    server = start_gunicorn(
        workers=1, env={"DATABASE_URL": unreachable, "JANUS_POOL_TIMEOUT_MS": "200"}
    )

    answer = requests.post(
        f"{server.url}/dashboard/jobs",
        data=single_body(),
        headers={
            "Content-Type": "application/json",
            "X-User-ID": str(uuid4()),
            "X-Request-ID": "trace-me-7",
        },
        timeout=10,
    )

    assert answer.status_code == 503
    lines = [line for line in server.log().splitlines() if "database unavailable" in line]
    assert lines and all("[trace-me-7] janus: database unavailable" in line for line in lines)


def test_the_request_log_tells_the_time_in_utc_to_the_millisecond() -> None:
    for _ in range(3):
        before = datetime.now(UTC)
        told = logs.request_log_time()
        after = datetime.now(UTC)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", told)
        assert (
            before.replace(microsecond=before.microsecond // 1000 * 1000)
            <= (datetime.fromisoformat(told))
            <= after
        )
        time.sleep(0.4)


@settings(max_examples=300, deadline=None)
@given(
    request_id=st.one_of(st.none(), st.text()),
    route=st.text(),
    status=st.integers(100, 599),
    duration_ms=st.floats(0, 10**6, allow_nan=False),
    user=st.one_of(st.none(), st.text()),
    key_id=st.one_of(st.none(), st.text()),
    jobs=st.one_of(st.none(), st.tuples(st.integers(0, 1000), st.integers(0, 1000))),
)
def test_a_request_log_line_is_what_json_dumps_writes(
    request_id: str | None,
    route: str,
    status: int,
    duration_ms: float,
    user: str | None,
    key_id: str | None,
    jobs: tuple[int, int] | None,
) -> None:
    written = io.StringIO()
    with mock.patch.object(logs, "_request_log", written):
        logs.log_request(
            request_id=request_id,
            method="POST",
            route=route,
            status=status,
            duration_ms=duration_ms,
            user=user,
            key_id=key_id,
            jobs=jobs,
        )
    line = json.loads(written.getvalue())
    fields = {
        "time": line["time"],
        "request_id": request_id,
        "method": "POST",
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "user": user,
        "key_id": key_id,
    }
    if jobs is not None:
        fields |= {"jobs_accepted": jobs[0], "jobs_rejected": jobs[1]}
    assert written.getvalue() == json.dumps(fields, separators=(",", ":")) + "\n"


def test_expected_refusals_log_no_error(
    server_for_raw: GunicornServer, db: psycopg.Connection
) -> None:
    # An unknown user (401) and a user without a config (403) are answers, not faults; under
    # pipelining, psycopg used to log them as "error ignored terminating <Pipeline ...>".
    without_config = create_user(db)
    session = requests.Session()
    for user_id in [uuid4(), without_config] * 25:
        answer = session.post(
            f"{server_for_raw.url}/dashboard/jobs",
            data=single_body(),
            headers={"Content-Type": "application/json", "X-User-ID": str(user_id)},
            timeout=5,
        )
        assert answer.status_code in (401, 403)

    log = server_for_raw.log()
    assert "error ignored" not in log and "[ERROR]" not in log and "[WARNING]" not in log, log
