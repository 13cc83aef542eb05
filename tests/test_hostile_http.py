"""Hostile input through real gunicorn: the bytes on the wire, framing and header handling.

tests/test_hostile.py covers bodies and headers in depth in-process; this module sends what only
a real server sees: invalid UTF-8, Content-Length that lies, chunked framing, header names with
underscores (gunicorn.conf.py drops them), repeated and oversized headers, 1 MiB + 1 bodies.
Requests go out over raw sockets, so nothing between the test and gunicorn tidies them up.
Errors gunicorn answers itself (a malformed request line or header) have the same JSON error
shape as every error the app answers (janus/worker.py). A 5xx is never acceptable, nor is a
traceback in gunicorn's log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from janus.keys import user_tag
from tests.conftest import GunicornServer, StartGunicorn
from tests.support.answers import JSON, MIB, Answer, assert_clear_error, assert_decisions
from tests.support.app import JOB_ROUTES, SINGLE_ROUTES
from tests.support.bodies import body_with, valid_body_for
from tests.support.factories import activate_config, jobs_of, user_with_config
from tests.support.hostile import examples, hostile_json, storable_text, to_json, valid_jobs
from tests.support.raw_http import (
    SOCKET_TIMEOUT_S,
    assert_no_traceback,
    assert_refused,
    chunked,
    exchange,
    length,
    request_bytes,
    single_body,
    single_request,
)
from tests.support.request_log import request_log_lines

# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture
def start_gunicorn(start_gunicorn: StartGunicorn) -> Iterator[StartGunicorn]:
    """conftest's start_gunicorn; after the test, every request log line of every server it
    started must be one well-formed JSON object (tests/support/request_log.py)."""
    servers: list[GunicornServer] = []

    def start(**options: Any) -> GunicornServer:
        server = start_gunicorn(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        request_log_lines(server.log())


@pytest.fixture
def two_worker_server(start_gunicorn: StartGunicorn) -> GunicornServer:
    """The service under gunicorn with two workers, on this test's database."""
    return start_gunicorn(workers=2)


@pytest.fixture
def small_buckets_user(db: psycopg.Connection) -> UUID:
    """A user whose buckets run out: many jobs are turned away, some for priority or names."""
    return user_with_config(
        db,
        {
            "openai": {"capacity": 50, "refill_per_second": 1},
            "search": {"capacity": 1_000_000, "refill_per_second": 1000},
            "stripe": {"capacity": 5, "refill_per_second": 0},
        },
        min_priority=2,
        priority_reserve=0.2,
    )


# --- Bodies ----------------------------------------------------------------------------------

INVALID_UTF8 = {
    "0xff in a value": b'{"batch_name": "\xff", "tenant_id": "t", "priority": 5}',
    "0xff in a key": b'{"batch_name\xff": "b", "tenant_id": "t", "priority": 5}',
    "overlong /": b'{"batch_name": "\xc0\xaf", "tenant_id": "t", "priority": 5}',
    "encoded surrogate": b'{"batch_name": "b", "tenant_id": "\xed\xa0\x80", "priority": 5}',
    "cut sequence": b'{"batch_name": "b", "tenant_id": "\xe2\x82", "priority": 5}',
    "latin-1": b'{"batch_name": "caf\xe9", "tenant_id": "t", "priority": 5}',
    "in the payload": b'{"batch_name": "b", "tenant_id": "t", "priority": 5, '
    b'"payload": {"k": "\xfe"}}',
    "CESU-8 pair": b'{"batch_name": "\xed\xa0\xbd\xed\xb8\x80", "tenant_id": "t", "priority": 5}',
    "a lone byte": b"\x80",
}


def as_batch(body: bytes) -> bytes:
    """A single-job body of INVALID_UTF8 turned into a batch of that one job."""
    if not body.startswith(b'{"batch_name'):
        return body
    head, _, job = body.partition(b', "tenant_id"')
    return head + b', "jobs": [{"tenant_id"' + job[:-1] + b"}]}"


def test_invalid_utf8_bodies_are_a_clear_400_on_every_route(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    for path in JOB_ROUTES:
        for name, single in INVALID_UTF8.items():
            body = single if path in SINGLE_ROUTES else as_batch(single)
            for framing, headers, framed in (
                ("length", [length(body)], body),
                ("chunked", ["Transfer-Encoding: chunked"], chunked(body)),
            ):
                with subtests.test(path=path, body=name, framing=framing):
                    request = request_bytes(path, [f"X-User-ID: {open_user}", *headers], framed)

                    assert_clear_error(exchange(two_worker_server, request), 400)
    assert jobs_of(db, open_user) == 0
    assert_no_traceback(two_worker_server)


def test_a_body_cut_short_of_its_content_length_is_a_clear_400(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    # The client promised more bytes than it sent, then closed its side: the request is
    # incomplete, even when the bytes that did arrive happen to be valid JSON.
    for path in JOB_ROUTES:
        body = json.dumps(body_with(path)).encode()
        with subtests.test(path=path):
            request = request_bytes(
                path, [f"X-User-ID: {open_user}", f"Content-Length: {len(body) + 10}"], body
            )

            assert_clear_error(exchange(two_worker_server, request), 400)
    assert jobs_of(db, open_user) == 0
    assert_no_traceback(two_worker_server)


def test_a_content_length_shorter_than_the_body_is_what_is_read(
    two_worker_server: GunicornServer, db: psycopg.Connection, open_user: UUID
) -> None:
    body = single_body()
    headers = [f"X-User-ID: {open_user}"]

    cut_inside = exchange(
        two_worker_server,
        request_bytes("/dashboard/jobs", [*headers, f"Content-Length: {len(body) - 5}"], body),
    )
    extra_after = exchange(
        two_worker_server,
        request_bytes("/system/jobs", [*headers, length(body)], body + b'GARBAGE {"priority": 0}'),
    )

    assert_clear_error(cut_inside, 400)
    assert_decisions("/system/jobs", extra_after, 1)
    assert jobs_of(db, open_user) == 1
    assert_no_traceback(two_worker_server)


BAD_LENGTHS = {
    "negative": ["Content-Length: -1"],
    "not a number": ["Content-Length: twelve"],
    "hexadecimal": ["Content-Length: 0x10"],
    "two values": ["Content-Length: 10", "Content-Length: 11"],
    "a list": ["Content-Length: 10, 11"],
    "with chunked": ["Content-Length: 10", "Transfer-Encoding: chunked"],
    "unknown coding": ["Transfer-Encoding: gzip"],
    "huge": ["Content-Length: 99999999999999999999999"],
}


def test_content_lengths_that_make_no_sense_are_refused(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    body = single_body()
    for name, headers in BAD_LENGTHS.items():
        with subtests.test(length=name):
            answer = exchange(
                two_worker_server,
                request_bytes("/dashboard/jobs", [f"X-User-ID: {open_user}", *headers], body),
            )

            assert_refused(answer)
    assert jobs_of(db, open_user) == 0
    assert_no_traceback(two_worker_server)


def test_well_formed_chunked_bodies_are_read(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    body = single_body()
    variants = {
        "one byte chunks": chunked(body, size=1),
        "one chunk": chunked(body, size=len(body)),
        "extension and trailer": b"%x;name=value\r\n" % len(body)
        + body
        + b"\r\n0\r\nX-Trailer: t\r\n\r\n",
        "upper-case hex": b"%X\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
    }
    for name, framed in variants.items():
        with subtests.test(chunks=name):
            request = request_bytes(
                "/dashboard/jobs", [f"X-User-ID: {open_user}", "Transfer-Encoding: chunked"], framed
            )

            assert_decisions("/dashboard/jobs", exchange(two_worker_server, request), 1)
    assert jobs_of(db, open_user) == len(variants)
    assert_no_traceback(two_worker_server)


MALFORMED_CHUNKS = {
    "size is not hex": b"zz\r\n{}\r\n0\r\n\r\n",
    "size too large": b"ffffffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    "no terminator after data": b"2\r\n{}XX0\r\n\r\n",
    "data shorter than size": b"40\r\n{}\r\n0\r\n\r\n",
    "cut before the last chunk": b'5\r\n{"a":\r\n',
    "no chunks at all": b"",
}


def test_malformed_chunked_bodies_are_a_clear_400_not_a_500(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    for name, framed in MALFORMED_CHUNKS.items():
        with subtests.test(chunks=name):
            request = request_bytes(
                "/dashboard/jobs", [f"X-User-ID: {open_user}", "Transfer-Encoding: chunked"], framed
            )

            assert_refused(exchange(two_worker_server, request), 400)
    assert jobs_of(db, open_user) == 0
    assert_no_traceback(two_worker_server)


def test_bodies_over_1_mib_are_413_on_every_route(
    two_worker_server: GunicornServer, open_user: UUID, subtests: pytest.Subtests
) -> None:
    junk = b"\xff[" * (MIB // 2) + b"x"
    assert len(junk) == MIB + 1
    headers = {"X-User-ID": str(open_user), "Content-Type": JSON}
    for path in JOB_ROUTES:
        for framing, data in (("length", junk), ("chunked", iter([junk[:MIB], junk[MIB:]]))):
            with subtests.test(path=path, framing=framing):
                response = requests.post(
                    two_worker_server.url + path,
                    data=data,
                    headers=headers,
                    timeout=SOCKET_TIMEOUT_S,
                )

                assert_clear_error(Answer.of(response), 413)
    assert_no_traceback(two_worker_server)


# --- Headers ---------------------------------------------------------------------------------


def test_x_user_id_values_of_every_shape_are_a_clear_401(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    other = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    shapes: dict[str, list[bytes | str]] = {
        "missing": [],
        "empty": [b"X-User-ID:"],
        "spaces": [b"X-User-ID:     "],
        "not a uuid": ["X-User-ID: me"],
        "0xff bytes": [b"X-User-ID: \xff\xfe"],
        "utf-8 before the uuid": [b"X-User-ID: \xc3\xa9" + str(open_user).encode()],
        "latin-1": [b"X-User-ID: caf\xe9"],
        "fullwidth digits in utf-8": ["X-User-ID: \uff10".encode() + str(open_user)[1:].encode()],
        "8000 characters": ["X-User-ID: " + "a" * 8000],
        "uuid and more": [f"X-User-ID: {open_user} {open_user}"],
        "unknown uuid": [f"X-User-ID: {uuid4()}"],
        "repeated": [f"X-User-ID: {open_user}", f"X-User-ID: {open_user}"],
        "two users": [f"X-User-ID: {open_user}", f"X-User-ID: {other}"],
        "empty, then a user": ["X-User-ID: ", f"X-User-ID: {open_user}"],
    }
    for name, headers in shapes.items():
        with subtests.test(shape=name):
            answer = exchange(two_worker_server, single_request(*headers))

            assert_clear_error(answer, 401)
    assert (jobs_of(db, open_user), jobs_of(db, other)) == (0, 0)
    assert_no_traceback(two_worker_server)


def test_header_values_gunicorn_cannot_accept_are_refused(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    shapes: dict[str, bytes | str] = {
        "NUL": b"X-User-ID: a\x00b",
        "control character": b"X-User-ID: \x01",
        "bare CR": b"X-User-ID: a\rb",
        "longer than a header may be": "X-User-ID: " + "a" * 9000,
        "space before the colon": f"X-User-ID : {open_user}",
        "folded": f"X-User-ID: x\r\n {open_user}",
    }
    for name, header in shapes.items():
        with subtests.test(shape=name):
            answer = exchange(two_worker_server, single_request(header))

            assert_refused(answer)
    assert jobs_of(db, open_user) == 0
    assert_no_traceback(two_worker_server)


def test_x_user_id_with_spaces_around_it_names_the_user(
    two_worker_server: GunicornServer, db: psycopg.Connection, open_user: UUID
) -> None:
    # Whitespace around a field value is not part of it (RFC 9110, 5.5).
    answer = exchange(
        two_worker_server,
        single_request(f"X-User-ID: \t {open_user} \t"),
    )

    assert_decisions("/dashboard/jobs", answer, 1)
    assert jobs_of(db, open_user) == 1


def test_header_names_with_underscores_are_ignored(
    two_worker_server: GunicornServer,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    # X_User_ID and X-User-ID would both reach the app as HTTP_X_USER_ID; gunicorn.conf.py has
    # gunicorn drop the ambiguous spelling, so only a real X-User-ID names the user.
    unknown = uuid4()
    spellings = {
        "underscores": [f"X_User_ID: {open_user}"],
        "upper case underscores": [f"X_USER_ID: {open_user}"],
        "one underscore": [f"X-User_ID: {open_user}"],
        "underscores beside an unknown user": [f"X_User_ID: {open_user}", f"X-User-ID: {unknown}"],
        "unknown user beside underscores": [f"X-User-ID: {unknown}", f"X_User_ID: {open_user}"],
        "underscores beside a malformed id": [f"X_User_ID: {open_user}", "X-User-ID: me"],
    }
    for name, headers in spellings.items():
        with subtests.test(spelling=name):
            answer = exchange(two_worker_server, single_request(*headers))

            assert_clear_error(answer, 401)
    assert jobs_of(db, open_user) == 0

    lower_case = exchange(
        two_worker_server,
        single_request(f"x-user-id: {open_user}"),
    )

    assert_decisions("/dashboard/jobs", lower_case, 1)
    assert jobs_of(db, open_user) == 1
    assert_no_traceback(two_worker_server)


NON_CANONICAL_ON_THE_WIRE = {
    "braces": b"{00ad64a8-3f87-4d6e-9b4c-1cfa5917fd4b}",
    "no hyphens": b"00ad64a83f874d6e9b4c1cfa5917fd4b",
    "plus sign": b"+0ad64a83f874d6e9b4c1cfa5917fd4b",
    "no-break space byte": b"\xa00ad64a83f874d6e9b4c1cfa5917fd4b",
}


def test_non_canonical_uuid_spellings_on_the_wire_are_a_clear_401(
    two_worker_server: GunicornServer, db: psycopg.Connection, subtests: pytest.Subtests
) -> None:
    known = UUID("00ad64a8-3f87-4d6e-9b4c-1cfa5917fd4b")
    db.execute("INSERT INTO users (user_id, name) VALUES (%s, 'zero')", [known])
    activate_config(db, known, {"openai": {"capacity": 100, "refill_per_second": 0}})
    for name, spelling in NON_CANONICAL_ON_THE_WIRE.items():
        with subtests.test(spelling=name):
            answer = exchange(
                two_worker_server,
                single_request(b"X-User-ID: " + spelling),
            )

            assert_clear_error(answer, 401)
    assert jobs_of(db, known) == 0


# --- Properties over the wire ------------------------------------------------------------------

header_bytes = st.binary(max_size=60).filter(lambda raw: b"\r" not in raw and b"\n" not in raw)
framings = st.sampled_from(["length", "chunked", "none"])


@examples(60)
@given(
    path=st.sampled_from([*JOB_ROUTES, "/health", "/health/ready", "/nowhere"]),
    user_header=st.one_of(st.none(), st.just("known"), header_bytes),
    content_type=st.one_of(st.none(), st.just(JSON.encode()), header_bytes),
    body=st.one_of(
        st.binary(max_size=200), hostile_json.map(lambda value: to_json(value).encode())
    ),
    framing=framings,
)
def test_hostile_requests_over_http_never_get_a_5xx(
    two_worker_server: GunicornServer,
    open_user: UUID,
    path: str,
    user_header: bytes | str | None,
    content_type: bytes | None,
    body: bytes,
    framing: str,
) -> None:
    headers: list[bytes | str] = []
    if user_header == "known":
        headers.append(f"X-User-ID: {open_user}")
    elif isinstance(user_header, bytes):
        headers.append(b"X-User-ID: " + user_header)
    if content_type is not None:
        headers.append(b"Content-Type: " + content_type)
    if framing == "length":
        headers.append(length(body))
    elif framing == "chunked":
        headers.append("Transfer-Encoding: chunked")
        body = chunked(body)
    else:
        body = b""

    answer = exchange(two_worker_server, request_bytes(path, headers, body))

    assert answer.status < 500, (answer.status, answer.text[:2000])
    if answer.status >= 400:
        assert_refused(answer)
    else:
        assert answer.headers["content-type"].startswith(JSON)
        assert b"Traceback" not in answer.content
    assert_no_traceback(two_worker_server)


@examples(40)
@given(
    path=st.sampled_from(JOB_ROUTES),
    jobs=st.lists(valid_jobs, min_size=1, max_size=5),
    batch_name=storable_text(1, 255),
)
def test_valid_shaped_random_jobs_over_http_get_only_decisions(
    gunicorn_server: GunicornServer,
    small_buckets_user: UUID,
    path: str,
    jobs: list[dict[str, Any]],
    batch_name: str,
) -> None:
    if path in SINGLE_ROUTES:
        jobs = jobs[:1]
    body = valid_body_for(path, jobs, batch_name)

    response = requests.post(
        gunicorn_server.url + path,
        data=json.dumps(body),
        headers={"X-User-ID": str(small_buckets_user), "Content-Type": JSON},
        timeout=SOCKET_TIMEOUT_S,
    )

    assert_decisions(path, Answer.of(response), len(jobs))
    assert_no_traceback(gunicorn_server)


# --- The request log -------------------------------------------------------------------------

TOKEN = "token-" + "k" * 26
SECRET_MARK = "do-not-log-me"


def test_the_request_log_holds_neither_payload_nor_token_nor_header_values(
    start_gunicorn: StartGunicorn,
    db: psycopg.Connection,
    open_user: UUID,
    subtests: pytest.Subtests,
) -> None:
    server = start_gunicorn(workers=2, env={"JANUS_SERVICE_TOKEN": TOKEN})
    payload = {
        "batch_name": SECRET_MARK,
        "tenant_id": SECRET_MARK,
        "priority": 5,
        "dependencies": {SECRET_MARK: 1},
        "payload": {SECRET_MARK: SECRET_MARK},
    }
    body = json.dumps(payload).encode()
    marked = [
        f"X-Anything: {SECRET_MARK}",
        f"Idempotency-Key: {SECRET_MARK}",
        f"User-Agent: {SECRET_MARK}",
        f"Cookie: s={SECRET_MARK}",
    ]
    user = f"X-User-ID: {open_user}"
    bearer = f"Authorization: Bearer {TOKEN}"
    requests_sent = {
        "decided": request_bytes("/dashboard/jobs", [user, bearer, *marked, length(body)], body),
        "wrong token": request_bytes(
            "/dashboard/jobs", [user, f"Authorization: Bearer {SECRET_MARK}", length(body)], body
        ),
        "no user": request_bytes("/system/jobs", [bearer, *marked, length(body)], body),
        "bad body": request_bytes(
            "/system/jobs/batch", [user, bearer, length(body[:-1])], body[:-1]
        ),
        "marked path": request_bytes(f"/{SECRET_MARK}?{SECRET_MARK}=1", [bearer], method="GET"),
        "marked request id": request_bytes(
            "/health", [f"X-Request-ID: {SECRET_MARK} x"], method="GET"
        ),
    }
    # Start-up's own /health checks are logged too.
    logged_before = len(request_log_lines(server.log()))
    for name, request in requests_sent.items():
        with subtests.test(request=name):
            exchange(server, request)

    lines = [text for text in server.log().splitlines() if text.startswith("{")]
    assert len(request_log_lines(server.log())) - logged_before == len(requests_sent)
    for text in lines:
        assert SECRET_MARK not in text and TOKEN not in text, text
        # The user by its tag, never by its id: for a user without keys, the id is a secret.
        assert str(open_user) not in text, text
        assert f'"user":"{user_tag(open_user)}"' in text or '"user":null' in text
    decided = [line for line in request_log_lines(server.log()) if "jobs_accepted" in line]
    assert [(line["route"], line["status"], line["jobs_accepted"]) for line in decided] == [
        ("/dashboard/jobs", 202, 1)
    ]
    assert TOKEN not in server.log()
