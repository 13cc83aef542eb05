"""Hostile input, property-based: whatever a client sends, the answer is a clear 4xx or a decision.

Every test drives the real app in-process (Falcon's test client over a real pool on a real
Postgres), so hypothesis can try many examples quickly; tests/test_hostile_http.py sends a
representative part through gunicorn, where HTTP framing and header handling are the server's.
A clear 4xx is the one error shape, `{"title", "description"[, "errors"]}`, as JSON, with no
stack trace. Bodies are sent as a valid user with an active config unless a test says
otherwise, so that validation, not authentication, answers them.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from janus.dashboard import FILES as DASHBOARD_FILES
from tests.support.answers import DECISION_KEYS, JSON, MIB, assert_clear_error, assert_decisions
from tests.support.app import JOB_ROUTES, SINGLE_ROUTES
from tests.support.bodies import body_with, plain_job, valid_body_for
from tests.support.factories import activate_config, create_user, stored_job, user_with_config
from tests.support.hostile import (
    BAD_VALUES,
    CANONICAL_UUID,
    FIELDS,
    OVERLONG_INTEGER_TOKENS,
    UNSTORABLE_CHARACTERS,
    Pairs,
    Raw,
    bury,
    configs,
    encoded,
    examples,
    header_values,
    hostile_json,
    huge_integers,
    is_json_media_type,
    is_json_number,
    media_types,
    nested,
    non_finite_numbers,
    not_uuids,
    other_headers,
    post,
    routes,
    storable_text,
    to_json,
    valid_jobs,
)
from tests.support.seed import SEED_BATCH_NAME

# --- Bodies that are not job bodies at all ---------------------------------------------------


@examples(300)
@given(path=routes, raw=st.binary(max_size=300), content_type=st.sampled_from([JSON, None]))
def test_any_bytes_as_the_body_are_a_clear_400(
    app_client: falcon.testing.TestClient,
    open_user: UUID,
    path: str,
    raw: bytes,
    content_type: str | None,
) -> None:
    result = post(app_client, path, raw, open_user, content_type=content_type)

    assert_clear_error(result, 400)


@examples(500)
@given(path=routes, value=hostile_json, escape_everything=st.booleans())
def test_any_json_that_is_not_a_job_body_is_a_clear_400(
    app_client: falcon.testing.TestClient,
    open_user: UUID,
    path: str,
    value: Any,
    escape_everything: bool,
) -> None:
    result = post(app_client, path, encoded(value, escape_everything), open_user)

    assert_clear_error(result, 400)


# --- One bad value in an otherwise valid body -------------------------------------------------


@examples(1500)
@given(
    path=routes,
    slot=st.sampled_from(sorted(BAD_VALUES)),
    job_index=st.integers(0, 2),
    escape_everything=st.booleans(),
    data=st.data(),
)
def test_one_bad_value_in_any_field_is_a_clear_400(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    open_user: UUID,
    path: str,
    slot: str,
    job_index: int,
    escape_everything: bool,
    data: st.DataObject,
) -> None:
    fields = data.draw(BAD_VALUES[slot], label="fields")
    if slot == "jobs" and path not in SINGLE_ROUTES:
        body = {"batch_name": SEED_BATCH_NAME, **fields}
    else:
        body = body_with(path, job_index, **fields)
    jobs_before = db.execute("SELECT count(*) FROM jobs").fetchone()

    result = post(app_client, path, encoded(body, escape_everything), open_user)

    assert_clear_error(result, 400)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == jobs_before


@examples(200)
@given(
    path=routes,
    slot=st.sampled_from(["batch_name", "tenant_id", "dependency name"]),
    bad=st.sampled_from(UNSTORABLE_CHARACTERS),
    around=st.tuples(storable_text(max_size=5), storable_text(max_size=5)),
    escape_everything=st.booleans(),
)
def test_nul_or_a_lone_surrogate_in_a_name_is_a_clear_400(
    app_client: falcon.testing.TestClient,
    open_user: UUID,
    path: str,
    slot: str,
    bad: str,
    around: tuple[str, str],
    escape_everything: bool,
) -> None:
    text = around[0] + bad + around[1]
    by_slot: dict[str, dict[str, Any]] = {
        "batch_name": {"batch_name": text},
        "tenant_id": {"tenant_id": text},
        "dependency name": {"dependencies": {text: 1}},
    }
    fields = by_slot[slot]

    result = post(
        app_client, path, encoded(body_with(path, **fields), escape_everything), open_user
    )

    assert_clear_error(result, 400)


@examples(200)
@given(
    path=routes,
    in_key=st.booleans(),
    bad=st.sampled_from(UNSTORABLE_CHARACTERS),
    around=st.tuples(storable_text(max_size=5), storable_text(max_size=5)),
    escape_everything=st.booleans(),
)
def test_nul_or_a_lone_surrogate_in_a_payload_is_kept_escaped_or_refused_raw(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    open_user: UUID,
    path: str,
    in_key: bool,
    bad: str,
    around: tuple[str, str],
    escape_everything: bool,
) -> None:
    text = around[0] + bad + around[1]
    payload = {"outer": [{text: 1}]} if in_key else {"outer": [{"k": text}]}
    body = body_with(path, payload=payload)

    result = post(app_client, path, encoded(body, escape_everything), open_user)

    if not escape_everything and bad != "\x00":
        # Written raw, a lone surrogate has no UTF-8 encoding: the body is not JSON text.
        # (JSON writers escape NUL, a control character, in any case.)
        assert_clear_error(result, 400)
        return
    # As \u escapes they are valid JSON, and the payload's json column keeps them as sent.
    decisions = assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)
    stored = stored_job(db, decisions[0]["job_id"], "payload::text AS payload")["payload"]
    assert stored == to_json(payload, ascii_only=escape_everything)
    assert json.loads(stored) == payload


@examples(150)
@given(
    path=routes,
    where=st.sampled_from(["top", "job", "dependencies", "payload"]),
    depth=st.integers(0, 5),
    same_value=st.booleans(),
)
def test_a_duplicate_key_anywhere_is_a_clear_400(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    open_user: UUID,
    path: str,
    where: str,
    depth: int,
    same_value: bool,
) -> None:
    def twice(key: str, value: Any, **others: Any) -> Pairs:
        second = value if same_value else [value]
        return Pairs(((key, value), *others.items(), (key, second)))

    payload: Any = {"k": "v"}
    dependencies: Any = {"openai": 1}
    if where == "payload":
        payload = bury(twice("k", "v"), [(True, "inner")] * depth)
    elif where == "dependencies":
        dependencies = twice("openai", 1, stripe=1)
    fields = plain_job(dependencies=dependencies, payload=payload)
    job: dict[str, Any] | Pairs = fields
    if where == "job":
        job = twice("priority", 5, **{k: v for k, v in fields.items() if k != "priority"})
    if path in SINGLE_ROUTES:
        job_items = job.items if isinstance(job, Pairs) else tuple(job.items())
        body: Any = Pairs((("batch_name", "b"), *job_items))
    else:
        body = {"batch_name": "b", "jobs": [plain_job(), job]}
    if where == "top":
        items = body.items if isinstance(body, Pairs) else tuple(body.items())
        body = Pairs((*items, ("batch_name", "b" if same_value else "c")))
    jobs_before = db.execute("SELECT count(*) FROM jobs").fetchone()

    result = post(app_client, path, body, open_user)

    assert_clear_error(result, 400)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == jobs_before


# --- Depth and size -----------------------------------------------------------------------


@examples(200)
@given(
    path=routes,
    slot=st.sampled_from([*sorted(FIELDS - {"jobs"}), "body", "cost", "payload value"]),
    depth=st.one_of(st.integers(1, 100), st.integers(100, 5000), st.just(120_000)),
    objects=st.booleans(),
)
def test_nesting_of_any_depth_anywhere_is_a_clear_400_or_stored(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    open_user: UUID,
    path: str,
    slot: str,
    depth: int,
    objects: bool,
) -> None:
    # A string at the bottom: with 1 at depth 1, {"a": 1} is a valid `dependencies` value
    # (dependency "a", cost 1), which open_user admits.
    deep = nested(depth, '"x"', objects=objects)
    payload: Any = None
    if slot == "body":
        body: Any = deep
    elif slot == "cost":
        body = body_with(path, dependencies={"openai": deep})
    elif slot == "payload value":
        payload = {"k": deep}
        body = body_with(path, payload=payload)
    else:
        deep_in_slot: dict[str, Any] = {slot: deep}
        body = body_with(path, **deep_in_slot)
        if slot == "payload" and objects:
            payload = deep
    text = to_json(body)
    assert len(text) <= MIB

    result = post(app_client, path, text, open_user)

    if payload is None:
        assert_clear_error(result, 400)
    elif depth <= 30 or result.status_code != 400:
        # A payload of any reasonable depth is stored as sent; a very deep one may be refused.
        decisions = assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)
        assert {decision["status"] for decision in decisions} == {"Accepted"}
        stored = stored_job(db, decisions[0]["job_id"], "payload")["payload"]
        assert stored == json.loads(to_json(payload))
    else:
        assert_clear_error(result, 400)


@examples(20)
@given(
    path=routes,
    extra=st.integers(1, 64 * 1024),
    filler=st.sampled_from([b" ", b"x", b"\xff", b"[", b'{"a":1}']),
    content_type=st.sampled_from([JSON, None]),
)
def test_a_body_over_1_mib_is_413_whatever_it_holds(
    app_client: falcon.testing.TestClient,
    open_user: UUID,
    path: str,
    extra: int,
    filler: bytes,
    content_type: str | None,
) -> None:
    size = MIB + extra
    raw = (filler * (size // len(filler) + 1))[:size]

    result = post(app_client, path, raw, open_user, content_type=content_type)

    assert_clear_error(result, 413)


# --- Numbers ----------------------------------------------------------------------------------


@examples(400)
@given(
    path=routes,
    slot=st.sampled_from(["priority", "cost", "payload"]),
    number=st.one_of(
        huge_integers,
        st.integers(),
        non_finite_numbers,
        st.sampled_from(OVERLONG_INTEGER_TOKENS).map(Raw),
        st.floats(),
    ),
)
def test_huge_and_non_finite_numbers_are_a_clear_400_or_stored_exactly(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    open_user: UUID,
    path: str,
    slot: str,
    number: Any,
) -> None:
    payload = {"n": number, "deeper": [{"n": number}]}
    if slot == "priority":
        body = body_with(path, priority=number)
    elif slot == "cost":
        body = body_with(path, dependencies={"openai": number})
    else:
        body = body_with(path, payload=payload)

    result = post(app_client, path, body, open_user)

    in_range = {"priority": range(1, 11), "cost": range(1, 1_000_001)}
    jobs = 1 if path in SINGLE_ROUTES else 3
    if slot in in_range:
        if type(number) is int and number in in_range[slot]:
            assert_decisions(path, result, jobs)
        else:
            assert_clear_error(result, 400)
    elif not is_json_number(number):
        assert_clear_error(result, 400)
    else:
        # Any JSON number, 1e999 and 10,000 digits included, is stored as it was written.
        decisions = assert_decisions(path, result, jobs)
        assert {decision["status"] for decision in decisions} == {"Accepted"}
        stored = stored_job(db, decisions[0]["job_id"], "payload::text AS payload")["payload"]
        assert stored == to_json(payload)


# --- Valid-shaped jobs: decisions only ----------------------------------------------------------


@examples(300)
@given(
    path=routes,
    config=configs,
    jobs=st.lists(valid_jobs, min_size=1, max_size=6),
    batch_name=storable_text(1, 255),
    repeat=st.integers(1, 3),
)
def test_valid_shaped_random_jobs_get_only_decisions(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    path: str,
    config: dict[str, Any],
    jobs: list[dict[str, Any]],
    batch_name: str,
    repeat: int,
) -> None:
    owner = create_user(db)
    activate_config(db, owner, **config)
    if path in SINGLE_ROUTES:
        jobs = jobs[:1]
    body = valid_body_for(path, jobs, batch_name)

    for _ in range(repeat):
        result = post(app_client, path, json.dumps(body), owner)

        decisions = assert_decisions(path, result, len(jobs))
        if path in SINGLE_ROUTES and decisions[0]["status"] == "Accepted":
            row = db.execute(
                "SELECT user_id, batch_name, tenant_id, priority, payload FROM jobs"
                " WHERE job_id = %s",
                [UUID(decisions[0]["job_id"])],
            ).fetchone()
            assert row == (
                owner,
                batch_name,
                jobs[0]["tenant_id"],
                jobs[0]["priority"],
                jobs[0].get("payload", {}),
            )


def test_a_rejection_with_a_tiny_refill_rate_is_429_not_500(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    # A valid config: refill is any number >= 0. Waiting for 100 tokens at 1e-9 per second
    # takes 1e11 seconds, more than a 32-bit integer holds.
    owner = user_with_config(db, {"openai": {"capacity": 100, "refill_per_second": 1e-9}})
    body = body_with(SINGLE_ROUTES[0], dependencies={"openai": 100})
    assert post(app_client, SINGLE_ROUTES[0], body, owner).status_code == 202

    result = post(app_client, SINGLE_ROUTES[0], body, owner)

    [decision] = assert_decisions(SINGLE_ROUTES[0], result, 1)
    assert decision["reason"] == "dependency 'openai' rate limit exceeded"
    assert result.status_code == 429


# --- Content types ---------------------------------------------------------------------------


@examples(300)
@given(path=routes, content_type=media_types)
def test_a_body_not_labelled_json_is_415(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str, content_type: str
) -> None:
    result = post(app_client, path, body_with(path), open_user, content_type=content_type)

    if is_json_media_type(content_type):
        assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)
    else:
        assert_clear_error(result, 415)


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_a_body_without_a_content_type_is_read_as_json(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str
) -> None:
    result = post(app_client, path, body_with(path), open_user, content_type=None)

    assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)


@pytest.mark.parametrize("path", JOB_ROUTES)
@pytest.mark.parametrize("content_type", [JSON, None, "text/plain"])
def test_an_empty_body_is_a_clear_4xx(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str, content_type: str | None
) -> None:
    result = post(app_client, path, b"", open_user, content_type=content_type)

    assert_clear_error(result, 415 if content_type == "text/plain" else 400)


# --- X-User-ID -------------------------------------------------------------------------------


@examples(400)
@given(path=routes, header=not_uuids)
def test_an_x_user_id_that_is_not_a_uuid_is_a_clear_401(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str, header: str
) -> None:
    if CANONICAL_UUID.fullmatch(header.strip(" \t")):
        return

    result = post(app_client, path, body_with(path), header)

    assert_clear_error(result, 401)


@examples(100)
@given(path=routes, unknown=st.uuids(), upper=st.booleans())
def test_a_uuid_that_names_no_user_is_a_clear_401(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str, unknown: UUID, upper: bool
) -> None:
    header = str(unknown).upper() if upper else str(unknown)

    result = post(app_client, path, body_with(path), header)

    assert_clear_error(result, 401)


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_a_missing_or_repeated_x_user_id_is_a_clear_401(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, open_user: UUID, path: str
) -> None:
    other = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    for headers in (
        [],
        [("X-User-ID", str(open_user)), ("X-User-ID", str(open_user))],
        [("X-User-ID", str(open_user)), ("X-User-ID", str(other))],
        [("X-User-ID", str(other)), ("X-User-ID", "")],
    ):
        result = post(app_client, path, body_with(path), None, headers=headers)

        assert_clear_error(result, 401)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


# Spellings Python's UUID() reads as a UUID although they are not the 8-4-4-4-12 form of
# RFC 9562; each reads as KNOWN_ID. Two leading zeros let the sign and prefix forms reach it.
KNOWN_ID = UUID("00ad64a8-3f87-4d6e-9b4c-1cfa5917fd4b")
NON_CANONICAL_SPELLINGS = {
    "braces": "{00ad64a8-3f87-4d6e-9b4c-1cfa5917fd4b}",
    "urn": "urn:uuid:00ad64a8-3f87-4d6e-9b4c-1cfa5917fd4b",
    "uuid prefix": "uuid:00ad64a8-3f87-4d6e-9b4c-1cfa5917fd4b",
    "no hyphens": "00ad64a83f874d6e9b4c1cfa5917fd4b",
    "hyphens anywhere": "0-0-a-d-64a83f874d6e9b4c1cfa5917fd4b",
    "plus sign": "+0ad64a83f874d6e9b4c1cfa5917fd4b",
    "hex prefix": "0xad64a83f874d6e9b4c1cfa5917fd4b",
    "underscore": "0ad64a8_3f874d6e9b4c1cfa5917fd4b",
    "fullwidth digit": "\uff100ad64a8-3f87-4d6e-9b4c-1cfa5917fd4b",
}


@pytest.mark.parametrize("spelling", sorted(NON_CANONICAL_SPELLINGS))
def test_an_x_user_id_in_a_non_canonical_spelling_is_a_clear_401(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, spelling: str
) -> None:
    db.execute("INSERT INTO users (user_id, name) VALUES (%s, 'zero')", [KNOWN_ID])
    activate_config(db, KNOWN_ID, {"openai": {"capacity": 100, "refill_per_second": 0}})
    header = NON_CANONICAL_SPELLINGS[spelling]
    assert UUID(header) == KNOWN_ID and not CANONICAL_UUID.fullmatch(header)

    result = post(app_client, SINGLE_ROUTES[0], body_with(SINGLE_ROUTES[0]), header)

    assert_clear_error(result, 401)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_an_x_user_id_in_upper_case_names_the_user(
    app_client: falcon.testing.TestClient, db: psycopg.Connection
) -> None:
    owner = user_with_config(db, {"openai": {"capacity": 100, "refill_per_second": 0}})

    result = post(app_client, SINGLE_ROUTES[0], body_with(SINGLE_ROUTES[0]), str(owner).upper())

    [decision] = assert_decisions(SINGLE_ROUTES[0], result, 1)
    assert stored_job(db, decision["job_id"], "user_id") == {"user_id": owner}


# --- Every other header, every route -----------------------------------------------------------


@examples(300)
@given(path=routes, headers=other_headers, user_is_known=st.booleans())
def test_any_other_headers_get_a_decision_or_a_clear_4xx(
    app_client: falcon.testing.TestClient,
    open_user: UUID,
    path: str,
    headers: list[tuple[str, str]],
    user_is_known: bool,
) -> None:
    owner = open_user if user_is_known else uuid4()

    result = post(app_client, path, body_with(path), owner, headers=headers)

    if result.status_code < 400:
        assert user_is_known
        assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)
    else:
        assert_clear_error(result)


# --- Health, methods, paths -----------------------------------------------------------------

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@examples(200)
@given(
    path=st.sampled_from(["/health", "/health/ready"]),
    method=st.sampled_from(METHODS),
    raw=st.binary(max_size=100),
    headers=other_headers,
    user_header=st.one_of(st.none(), header_values),
    # Falcon's test client takes the query without its "?" and refuses one that starts with
    # another; on the wire "/health??x" is just the query "?x", which the others cover.
    query=st.text(st.characters(max_codepoint=255), max_size=40).filter(
        lambda text: not text.startswith("?")
    ),
)
def test_health_routes_ignore_whatever_is_sent(
    app_client: falcon.testing.TestClient,
    path: str,
    method: str,
    raw: bytes,
    headers: list[tuple[str, str]],
    user_header: str | None,
    query: str,
) -> None:
    all_headers = list(headers)
    if user_header is not None:
        all_headers.append(("X-User-ID", user_header))

    result = app_client.simulate_request(
        method, path, body=raw, headers=all_headers, query_string=query
    )

    if method == "GET":
        assert result.status_code == 200, result.text
        assert result.json == {"status": "ok"}
    elif method == "HEAD":
        # Load balancers probe with HEAD: GET's answer without its body.
        assert result.status_code == 200, result.text
        assert result.content == b"", result.content
    else:
        assert_clear_error(result, 405)


@examples(200)
@given(
    path=st.one_of(
        st.sampled_from(JOB_ROUTES),
        st.text(st.characters(max_codepoint=255, exclude_characters="?#"), max_size=40).map(
            lambda text: "/" + text
        ),
    ),
    method=st.sampled_from(METHODS),
)
# The dashboard's page, by the paths falcon routes to it.
@example(path="/", method="GET")
@example(path="//", method="GET")
@example(path="/%2F", method="GET")
def test_any_method_on_any_path_is_a_decision_or_a_clear_4xx(
    app_client: falcon.testing.TestClient, open_user: UUID, path: str, method: str
) -> None:
    result = post(app_client, path, body_with(SINGLE_ROUTES[0]), open_user, method=method)

    if result.status_code >= 400 and method != "HEAD":
        assert_clear_error(result)
    elif result.status_code < 400 and method == "POST":
        assert list(result.json) == DECISION_KEYS, (path, result.text)
    elif result.status_code < 400 and method == "GET" and path == "/dashboard/jobs":
        assert list(result.json) == ["jobs", "next"], (path, result.text)  # the job history
    elif result.status_code < 400 and method == "GET" and _routed(path) in DASHBOARD_FILES:
        # The dashboard's page and files (tests/test_dashboard_page.py).
        assert result.headers["Content-Type"] == DASHBOARD_FILES[_routed(path)].media_type, path
    elif result.status_code < 400 and method == "GET":
        assert result.json == {"status": "ok"}, (path, result.text)
    else:
        assert method == "HEAD" and result.status_code < 500, (method, path, result.status_code)


def _routed(path: str) -> str:
    """The route falcon matches `path` to: decoded, its leading slashes as one (`//` is `/`)."""
    return "/" + unquote(path).lstrip("/")


def test_the_helpers_write_what_the_tests_mean() -> None:
    assert to_json(Pairs((("a", 1), ("a", 2)))) == '{"a": 1, "a": 2}'
    assert to_json({"s": "\ud800\x00"}) == '{"s": "\\ud800\\u0000"}'
    assert encoded(["\ud800"], ascii_only=False) == b'["\xed\xa0\x80"]'
    assert to_json([float("nan"), Raw("1e999")]) == "[NaN, 1e999]"
    assert to_json(bury(1, [(True, "a"), (False, "")])) == '{"a": [1]}'
    assert to_json(nested(2, objects=True)) == '{"a": {"a": 1}}'
    assert is_json_media_type("application/problem+json; x=1")
