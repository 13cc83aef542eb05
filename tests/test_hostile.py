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
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import falcon.testing
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from janus.settings import Settings
from tests.support.app import ATOMIC_ROUTES, JOB_ROUTES, PARTIAL_ROUTES, SINGLE_ROUTES, serve_app
from tests.support.factories import activate_config, create_user, user_with_config

MIB = 1024 * 1024
JSON = "application/json"
ERROR_KEYS = {"title", "description"}
DECISION_KEYS = ["job_id", "status", "reason"]
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)

# Function-scoped fixtures (one database per test) are shared by every example of a test on
# purpose: no property here depends on a fresh database. No example database either: the
# tree's .gitignore does not know .hypothesis/, and print_blob reproduces a failure instead.
PROPERTY = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def examples(count: int) -> settings:
    """The shared property settings with `count` examples."""
    return settings(PROPERTY, max_examples=count)


# --- Answers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A response, whether from Falcon's test client, `requests` or a raw socket."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes

    @classmethod
    def of(cls, result: Any) -> Answer:
        """Wrap a Falcon test result or a `requests` response."""
        status = getattr(result, "status_code", None)
        assert isinstance(status, int)
        headers = {name.lower(): value for name, value in result.headers.items()}
        return cls(status, headers, result.content)

    @property
    def text(self) -> str:
        """The body as text, for messages."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.content)


def assert_clear_error(result: Any, *statuses: int) -> dict[str, Any]:
    """`result` is a 4xx in the one error shape, with one of `statuses` when they are given."""
    answer = result if isinstance(result, Answer) else Answer.of(result)
    assert 400 <= answer.status < 500, (answer.status, answer.text[:2000])
    if statuses:
        assert answer.status in statuses, (answer.status, answer.text[:2000])
    assert answer.headers.get("content-type", "").startswith(JSON), answer.headers
    assert b"Traceback" not in answer.content
    body = answer.json()
    assert isinstance(body, dict), body
    assert set(body) in (ERROR_KEYS, ERROR_KEYS | {"errors"}), body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["description"], str) and body["description"], body
    if "errors" in body:
        assert isinstance(body["errors"], dict) and body["errors"], body
    return body


def assert_decisions(path: str, result: Any, jobs: int) -> list[dict[str, Any]]:
    """`result` is one of the seed's decision answers for `path`; returns its decisions."""
    answer = result if isinstance(result, Answer) else Answer.of(result)
    assert answer.headers.get("content-type", "").startswith(JSON), answer.headers
    body = answer.json()
    if path in SINGLE_ROUTES:
        assert answer.status in (202, 429), (answer.status, answer.text[:2000])
        decisions = [body]
    elif path in PARTIAL_ROUTES:
        assert answer.status == 200, (answer.status, answer.text[:2000])
        assert list(body) == ["total", "accepted", "rejected", "results"], body
        decisions = body["results"]
        accepted = sum(decision["status"] == "Accepted" for decision in decisions)
        assert (body["total"], body["accepted"], body["rejected"]) == (
            jobs,
            accepted,
            jobs - accepted,
        )
    else:
        assert answer.status in (202, 207), (answer.status, answer.text[:2000])
        assert isinstance(body, list), body
        decisions = body
    assert len(decisions) == jobs
    for decision in decisions:
        assert list(decision) == DECISION_KEYS, decision
        assert str(UUID(decision["job_id"])) == decision["job_id"]
        assert decision["status"] in ("Accepted", "Rejected"), decision
        assert (decision["reason"] == "") == (decision["status"] == "Accepted"), decision
    statuses = {decision["status"] for decision in decisions}
    if path in SINGLE_ROUTES or path in ATOMIC_ROUTES:
        assert (answer.status == 202) == (statuses == {"Accepted"}), (answer.status, decisions)
    if path in ATOMIC_ROUTES and answer.status == 207:
        assert statuses == {"Rejected"}, decisions
        own_reasons = [d for d in decisions if d["reason"] != "batch rejected atomically"]
        assert own_reasons, decisions
    if "retry-after" in answer.headers:
        assert path in SINGLE_ROUTES and answer.status == 429, answer.headers
        assert int(answer.headers["retry-after"]) >= 1, answer.headers
    return list(decisions)


# --- JSON written token by token ------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is: NaN, 1e999, an integer of 5,000 digits, deep nesting."""

    text: str

    def __repr__(self) -> str:
        shown = self.text if len(self.text) <= 40 else f"{self.text[:20]}...({len(self.text)})"
        return f"Raw({shown!r})"


@dataclass(frozen=True)
class Pairs:
    """A JSON object written key by key, so that a key may appear twice."""

    items: tuple[tuple[str, Any], ...]


def to_json(value: Any, ascii_only: bool = True) -> str:
    """`value` as JSON text; with `ascii_only`, lone surrogates become `\\udXXX` escapes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        value = Pairs(tuple(value.items()))
    if isinstance(value, Pairs):
        members = (
            f"{json.dumps(key, ensure_ascii=ascii_only)}: {to_json(item, ascii_only)}"
            for key, item in value.items
        )
        return "{" + ", ".join(members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_json(item, ascii_only) for item in value) + "]"
    # Strings, booleans, null, integers of up to 4,300 digits, and floats: NaN and Infinity
    # come out as the non-standard tokens Python writes for them.
    return json.dumps(value, ensure_ascii=ascii_only)


def encoded(value: Any, ascii_only: bool) -> bytes:
    """`value` as a body: all ASCII, or raw UTF-8 (a lone surrogate as bytes UTF-8 forbids)."""
    return to_json(value, ascii_only).encode("utf-8", "surrogatepass")


# --- Strategies ------------------------------------------------------------------------------

# Every code point, lone surrogates and NUL included.
EVERY_CHARACTER = st.characters(exclude_categories=())
any_text = st.text(EVERY_CHARACTER, max_size=30)
# What Postgres text cannot hold: NUL and the halves of a surrogate pair.
UNSTORABLE_CHARACTERS = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]
unstorable_text = st.builds(
    lambda before, bad, after: before + bad + after,
    any_text,
    st.sampled_from(UNSTORABLE_CHARACTERS),
    any_text,
)
STORABLE_CHARACTER = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")


def storable_text(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    """Text Postgres can store, of `min_size` to `max_size` characters."""
    return st.text(STORABLE_CHARACTER, min_size=min_size, max_size=max_size)


# Not JSON at all, though Python writes and reads them.
NOT_JSON_TOKENS = ["NaN", "Infinity", "-Infinity"]
# Valid JSON, beyond a double: no field takes them, a payload keeps them as written.
OUT_OF_RANGE_TOKENS = ["1e999", "-1e999", "1E400", "-0.1e1000"]
NON_FINITE_TOKENS = NOT_JSON_TOKENS + OUT_OF_RANGE_TOKENS
# Python refuses to convert integers of more than 4,300 digits.
OVERLONG_INTEGER_TOKENS = ["9" * 4301, "-" + "9" * 5000, "1" + "0" * 10_000]
huge_integers = st.one_of(
    st.integers(min_value=2**31),
    st.integers(max_value=-(2**31)),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**100, -(10**100), 10**4000]),
)
non_finite_numbers = st.one_of(
    st.sampled_from(NON_FINITE_TOKENS).map(Raw),
    st.floats().filter(lambda number: not math.isfinite(number)),
)
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_integers,
    st.floats(),
    any_text,
    unstorable_text,
    st.sampled_from(NON_FINITE_TOKENS + OVERLONG_INTEGER_TOKENS).map(Raw),
)
hostile_keys = st.one_of(any_text, unstorable_text)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(st.tuples(hostile_keys, children), max_size=4).map(
            lambda items: Pairs(tuple(items))
        ),
    )


hostile_json = st.recursive(hostile_scalars, _containers, max_leaves=10)


def nested(depth: int, innermost: str = "1", *, objects: bool = False) -> Raw:
    """`depth` arrays (or objects) one inside the other around `innermost`."""
    if objects:
        return Raw('{"a": ' * depth + innermost + "}" * depth)
    return Raw("[" * depth + innermost + "]" * depth)


def bury(leaf: Any, path: Sequence[tuple[bool, str]]) -> Any:
    """`leaf` inside arrays and objects, outermost first: (True, key) is an object, else array."""
    for is_object, key in reversed(path):
        leaf = Pairs(((key, leaf),)) if is_object else [leaf]
    return leaf


container_path = st.lists(st.tuples(st.booleans(), storable_text(max_size=8)), max_size=6)
# A token that is not JSON, somewhere inside an otherwise ordinary JSON value: the one thing
# a payload, which may hold any JSON text, can get wrong inside.
buried_bad_values = st.builds(
    bury,
    st.one_of(
        st.sampled_from(NOT_JSON_TOKENS).map(Raw),
        st.floats().filter(lambda number: not math.isfinite(number)),
    ),
    container_path,
)

valid_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    storable_text(),
)
valid_payloads = st.dictionaries(
    storable_text(max_size=12),
    st.recursive(
        valid_scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(storable_text(max_size=12), children, max_size=4),
        ),
        max_leaves=12,
    ),
    max_size=5,
)
CONFIGURED = ["openai", "search", "stripe"]
# Small costs often, so that buckets of small capacities run short rather than overflow.
costs = st.one_of(st.integers(1, 100), st.integers(1, 1_000_000))
dependency_names = st.one_of(st.sampled_from(CONFIGURED), storable_text(1, 100))
valid_jobs = st.fixed_dictionaries(
    {
        "tenant_id": storable_text(1, 255),
        "priority": st.integers(1, 10),
    },
    optional={
        "dependencies": st.one_of(
            st.dictionaries(st.sampled_from(CONFIGURED), costs),
            st.dictionaries(dependency_names, costs, max_size=32),
        ),
        "payload": valid_payloads,
    },
)


def valid_body_for(path: str, jobs: Sequence[dict[str, Any]], batch_name: str) -> dict[str, Any]:
    """The body of `path` for `jobs` (exactly one for a single-job route)."""
    if path in SINGLE_ROUTES:
        [only] = jobs
        return {"batch_name": batch_name, **only}
    return {"batch_name": batch_name, "jobs": list(jobs)}


def plain_job(**fields: Any) -> dict[str, Any]:
    """One valid job, with `fields` replaced."""
    return {
        "tenant_id": "tenant-abc",
        "priority": 5,
        "dependencies": {"openai": 1},
        "payload": {"k": "v"},
        **fields,
    }


def body_with(path: str, job_index: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid body for `path` whose job `job_index` has `fields` replaced.

    A single-job route has one job, and `batch_name` is always the body's own.
    """
    top = {key: fields.pop(key) for key in list(fields) if key == "batch_name"}
    if path in SINGLE_ROUTES:
        return {"batch_name": "my-batch", **plain_job(**fields), **top}
    jobs = [plain_job(**fields) if n == job_index else plain_job() for n in range(3)]
    return {"batch_name": "my-batch", "jobs": jobs, **top}


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture
def client(database_url: str) -> Iterator[falcon.testing.TestClient]:
    """The real app, default settings, over a pool on this test's database."""
    with serve_app(Settings(database_url=database_url)) as test_client:
        yield test_client


@pytest.fixture
def user(db: psycopg.Connection) -> UUID:
    """A user whose config admits any valid job: huge buckets, unknown dependencies allowed."""
    return user_with_config(
        db,
        {name: {"capacity": 10**12, "refill_per_second": 0} for name in CONFIGURED},
        unknown_dependencies="allow",
    )


def post(
    client: falcon.testing.TestClient,
    path: str,
    body: bytes | str | Any,
    user_id: UUID | str | None,
    *,
    content_type: str | None = JSON,
    headers: Sequence[tuple[str, str]] = (),
    method: str = "POST",
) -> falcon.testing.Result:
    """Send `body` (bytes as they are, text as UTF-8, anything else as JSON) to `path`."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    elif not isinstance(body, bytes):
        body = to_json(body).encode("ascii")
    all_headers = list(headers)
    if user_id is not None:
        all_headers.append(("X-User-ID", str(user_id)))
    if content_type is not None:
        all_headers.append(("Content-Type", content_type))
    return client.simulate_request(method, path, body=body, headers=all_headers)


routes = st.sampled_from(JOB_ROUTES)


# --- Bodies that are not job bodies at all ---------------------------------------------------


@examples(300)
@given(path=routes, raw=st.binary(max_size=300), content_type=st.sampled_from([JSON, None]))
def test_any_bytes_as_the_body_are_a_clear_400(client, user, path, raw, content_type) -> None:
    result = post(client, path, raw, user, content_type=content_type)

    assert_clear_error(result, 400)


@examples(500)
@given(path=routes, value=hostile_json, escape_everything=st.booleans())
def test_any_json_that_is_not_a_job_body_is_a_clear_400(
    client, user, path, value, escape_everything
) -> None:
    result = post(client, path, encoded(value, escape_everything), user)

    assert_clear_error(result, 400)


# --- One bad value in an otherwise valid body -------------------------------------------------

FIELDS = {"batch_name", "jobs", "tenant_id", "priority", "dependencies", "payload"}


def _not_an_integer_from(low: int, high: int) -> st.SearchStrategy[Any]:
    return hostile_json.filter(lambda value: not (type(value) is int and low <= value <= high))


def _not_a_name(max_length: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        hostile_json.filter(lambda value: not isinstance(value, str)),
        unstorable_text,
        st.just(""),
        st.text(min_size=max_length + 1, max_size=max_length + 40),
    )


not_an_object = hostile_json.filter(lambda value: not isinstance(value, Pairs))


def _keyed_by(name: Any) -> Any:
    """{name: 1}; when `name` is not a string, the invalid JSON of an object keyed by it."""
    if isinstance(name, str):
        return Pairs(((name, 1),))
    return Raw("{" + to_json(name) + ": 1}")


# For each place a bad value can go, the fields that put one there.
BAD_VALUES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "batch_name": _not_a_name(255).map(lambda value: {"batch_name": value}),
    "tenant_id": _not_a_name(255).map(lambda value: {"tenant_id": value}),
    "priority": _not_an_integer_from(1, 10).map(lambda value: {"priority": value}),
    "dependencies": not_an_object.map(lambda value: {"dependencies": value}),
    "dependency name": _not_a_name(100).map(lambda name: {"dependencies": _keyed_by(name)}),
    "cost": _not_an_integer_from(1, 1_000_000).map(lambda cost: {"dependencies": {"openai": cost}}),
    "payload": not_an_object.map(lambda value: {"payload": value}),
    "payload value": buried_bad_values.map(lambda value: {"payload": {"k": value}}),
    "unknown field": st.tuples(
        hostile_keys.filter(lambda key: key not in FIELDS), hostile_json
    ).map(lambda item: {item[0]: item[1]}),
    "jobs": hostile_json.map(lambda value: {"jobs": value}),
}


@examples(1500)
@given(
    path=routes,
    slot=st.sampled_from(sorted(BAD_VALUES)),
    job_index=st.integers(0, 2),
    escape_everything=st.booleans(),
    data=st.data(),
)
def test_one_bad_value_in_any_field_is_a_clear_400(
    client, db, user, path, slot, job_index, escape_everything, data
) -> None:
    fields = data.draw(BAD_VALUES[slot], label="fields")
    if slot == "jobs" and path not in SINGLE_ROUTES:
        body = {"batch_name": "my-batch", **fields}
    else:
        body = body_with(path, job_index, **fields)
    jobs_before = db.execute("SELECT count(*) FROM jobs").fetchone()

    result = post(client, path, encoded(body, escape_everything), user)

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
    client, user, path, slot, bad, around, escape_everything
) -> None:
    text = around[0] + bad + around[1]
    fields: dict[str, Any] = {
        "batch_name": {"batch_name": text},
        "tenant_id": {"tenant_id": text},
        "dependency name": {"dependencies": {text: 1}},
    }[slot]

    result = post(client, path, encoded(body_with(path, **fields), escape_everything), user)

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
    client, db, user, path, in_key, bad, around, escape_everything
) -> None:
    text = around[0] + bad + around[1]
    payload = {"outer": [{text: 1}]} if in_key else {"outer": [{"k": text}]}
    body = body_with(path, payload=payload)

    result = post(client, path, encoded(body, escape_everything), user)

    if not escape_everything and bad != "\x00":
        # Written raw, a lone surrogate has no UTF-8 encoding: the body is not JSON text.
        # (JSON writers escape NUL, a control character, in any case.)
        assert_clear_error(result, 400)
        return
    # As \u escapes they are valid JSON, and the payload's json column keeps them as sent.
    decisions = assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)
    [stored] = db.execute(
        "SELECT payload::text FROM jobs WHERE job_id = %s", [UUID(decisions[0]["job_id"])]
    ).fetchone() or [None]
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
    client, db, user, path, where, depth, same_value
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
    job = plain_job(dependencies=dependencies, payload=payload)
    if where == "job":
        job = twice("priority", 5, **{k: v for k, v in job.items() if k != "priority"})
    if path in SINGLE_ROUTES:
        job_items = job.items if isinstance(job, Pairs) else tuple(job.items())
        body: Any = Pairs((("batch_name", "b"), *job_items))
    else:
        body = {"batch_name": "b", "jobs": [plain_job(), job]}
    if where == "top":
        items = body.items if isinstance(body, Pairs) else tuple(body.items())
        body = Pairs((*items, ("batch_name", "b" if same_value else "c")))
    jobs_before = db.execute("SELECT count(*) FROM jobs").fetchone()

    result = post(client, path, body, user)

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
    client, db, user, path, slot, depth, objects
) -> None:
    deep = nested(depth, objects=objects)
    payload: Any = None
    if slot == "body":
        body: Any = deep
    elif slot == "cost":
        body = body_with(path, dependencies={"openai": deep})
    elif slot == "payload value":
        payload = {"k": deep}
        body = body_with(path, payload=payload)
    else:
        body = body_with(path, **{slot: deep})
        if slot == "payload" and objects:
            payload = deep
    text = to_json(body)
    assert len(text) <= MIB

    result = post(client, path, text, user)

    if payload is None:
        assert_clear_error(result, 400)
    elif depth <= 30 or result.status_code != 400:
        # A payload of any reasonable depth is stored as sent; a very deep one may be refused.
        decisions = assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)
        assert {decision["status"] for decision in decisions} == {"Accepted"}
        [stored] = db.execute(
            "SELECT payload FROM jobs WHERE job_id = %s", [UUID(decisions[0]["job_id"])]
        ).fetchone() or [None]
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
    client, user, path, extra, filler, content_type
) -> None:
    size = MIB + extra
    raw = (filler * (size // len(filler) + 1))[:size]

    result = post(client, path, raw, user, content_type=content_type)

    assert_clear_error(result, 413)


# --- Numbers ----------------------------------------------------------------------------------


def is_json_number(number: Any) -> bool:
    """Whether `number` is written as a JSON number (NaN and the infinities are not JSON)."""
    if isinstance(number, Raw):
        return number.text not in NOT_JSON_TOKENS
    return not isinstance(number, float) or math.isfinite(number)


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
    client, db, user, path, slot, number
) -> None:
    payload = {"n": number, "deeper": [{"n": number}]}
    if slot == "priority":
        body = body_with(path, priority=number)
    elif slot == "cost":
        body = body_with(path, dependencies={"openai": number})
    else:
        body = body_with(path, payload=payload)

    result = post(client, path, body, user)

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
        [stored] = db.execute(
            "SELECT payload::text FROM jobs WHERE job_id = %s", [UUID(decisions[0]["job_id"])]
        ).fetchone() or [None]
        assert stored == to_json(payload)


# --- Valid-shaped jobs: decisions only ----------------------------------------------------------

configs = st.fixed_dictionaries(
    {
        "dependencies": st.dictionaries(
            st.sampled_from(CONFIGURED),
            st.fixed_dictionaries(
                {
                    "capacity": st.one_of(
                        st.integers(1, 200), st.integers(1, 1_000_000), st.just(10**12)
                    ),
                    "refill_per_second": st.one_of(
                        st.just(0),
                        st.sampled_from([1e-9, 1e-6, 0.001]),
                        st.floats(min_value=1e-9, max_value=1e6),
                    ),
                }
            ),
            min_size=1,
        ),
        "min_priority": st.one_of(st.just(1), st.integers(1, 10)),
        "priority_reserve": st.one_of(st.just(0.0), st.floats(0, 0.99)),
        "unknown_dependencies": st.sampled_from(["reject", "allow"]),
    }
)


@examples(300)
@given(
    path=routes,
    config=configs,
    jobs=st.lists(valid_jobs, min_size=1, max_size=6),
    batch_name=storable_text(1, 255),
    repeat=st.integers(1, 3),
)
def test_valid_shaped_random_jobs_get_only_decisions(
    client, db, path, config, jobs, batch_name, repeat
) -> None:
    owner = create_user(db)
    activate_config(db, owner, **config)
    if path in SINGLE_ROUTES:
        jobs = jobs[:1]
    body = valid_body_for(path, jobs, batch_name)

    for _ in range(repeat):
        result = post(client, path, json.dumps(body), owner)

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


def test_a_rejection_with_a_tiny_refill_rate_is_429_not_500(client, db) -> None:
    # A valid config: refill is any number >= 0. Waiting for 100 tokens at 1e-9 per second
    # takes 1e11 seconds, more than a 32-bit integer holds.
    owner = user_with_config(db, {"openai": {"capacity": 100, "refill_per_second": 1e-9}})
    body = body_with(SINGLE_ROUTES[0], dependencies={"openai": 100})
    assert post(client, SINGLE_ROUTES[0], body, owner).status_code == 202

    result = post(client, SINGLE_ROUTES[0], body, owner)

    [decision] = assert_decisions(SINGLE_ROUTES[0], result, 1)
    assert decision["reason"] == "dependency 'openai' rate limit exceeded"
    assert result.status_code == 429


# --- Content types ---------------------------------------------------------------------------

JSON_TYPES = [
    JSON,
    "application/json; charset=utf-8",
    "Application/JSON",
    'application/json;charset=UTF-8; x="y"',
    "application/problem+json",
    "application/vnd.janus+json",
]
NOT_JSON_TYPES = [
    "",
    " ",
    "text/plain",
    "text/json",
    "application/jsonp",
    "application/json-seq",
    "application/x-json",
    "json",
    "application",
    "*/*",
    "application/*",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "application/xml",
    "application/json\x00",
]
media_types = st.one_of(
    st.sampled_from(JSON_TYPES + NOT_JSON_TYPES),
    st.text(st.characters(max_codepoint=255), max_size=40),
)


def is_json_media_type(content_type: str) -> bool:
    """Whether a client labelled its body JSON: application/json or any +json type."""
    media_type = content_type.split(";", 1)[0].strip(" \t").lower()
    return media_type == JSON or media_type.endswith("+json")


@examples(300)
@given(path=routes, content_type=media_types)
def test_a_body_not_labelled_json_is_415(client, user, path, content_type) -> None:
    result = post(client, path, body_with(path), user, content_type=content_type)

    if is_json_media_type(content_type):
        assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)
    else:
        assert_clear_error(result, 415)


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_a_body_without_a_content_type_is_read_as_json(client, user, path) -> None:
    result = post(client, path, body_with(path), user, content_type=None)

    assert_decisions(path, result, 1 if path in SINGLE_ROUTES else 3)


@pytest.mark.parametrize("path", JOB_ROUTES)
@pytest.mark.parametrize("content_type", [JSON, None, "text/plain"])
def test_an_empty_body_is_a_clear_4xx(client, user, path, content_type) -> None:
    result = post(client, path, b"", user, content_type=content_type)

    assert_clear_error(result, 415 if content_type == "text/plain" else 400)


# --- X-User-ID -------------------------------------------------------------------------------


def as_received(text: str) -> str:
    """`text` sent as UTF-8 in a header, as a WSGI server hands it on: one character per byte."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


not_uuids = st.one_of(
    st.just(""),
    st.text(" \t", min_size=1, max_size=5),
    st.text(st.characters(max_codepoint=255), max_size=60),
    any_text.map(as_received),
    st.text("0123456789abcdefABCDEF-", max_size=40),
    st.text(min_size=1000, max_size=9000),
    st.builds(lambda u, junk: str(u) + junk, st.uuids(), st.text(min_size=1, max_size=3)),
    st.builds(lambda u, cut: str(u)[:cut], st.uuids(), st.integers(0, 35)),
)


@examples(400)
@given(path=routes, header=not_uuids)
def test_an_x_user_id_that_is_not_a_uuid_is_a_clear_401(client, user, path, header) -> None:
    if CANONICAL_UUID.fullmatch(header.strip(" \t")):
        return

    result = post(client, path, body_with(path), header)

    assert_clear_error(result, 401)


@examples(100)
@given(path=routes, unknown=st.uuids(), upper=st.booleans())
def test_a_uuid_that_names_no_user_is_a_clear_401(client, user, path, unknown, upper) -> None:
    header = str(unknown).upper() if upper else str(unknown)

    result = post(client, path, body_with(path), header)

    assert_clear_error(result, 401)


@pytest.mark.parametrize("path", JOB_ROUTES)
def test_a_missing_or_repeated_x_user_id_is_a_clear_401(client, db, user, path) -> None:
    other = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})
    for headers in (
        [],
        [("X-User-ID", str(user)), ("X-User-ID", str(user))],
        [("X-User-ID", str(user)), ("X-User-ID", str(other))],
        [("X-User-ID", str(other)), ("X-User-ID", "")],
    ):
        result = post(client, path, body_with(path), None, headers=headers)

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
def test_an_x_user_id_in_a_non_canonical_spelling_is_a_clear_401(client, db, spelling) -> None:
    db.execute("INSERT INTO users (user_id, name) VALUES (%s, 'zero')", [KNOWN_ID])
    activate_config(db, KNOWN_ID, {"openai": {"capacity": 100, "refill_per_second": 0}})
    header = NON_CANONICAL_SPELLINGS[spelling]
    assert UUID(header) == KNOWN_ID and not CANONICAL_UUID.fullmatch(header)

    result = post(client, SINGLE_ROUTES[0], body_with(SINGLE_ROUTES[0]), header)

    assert_clear_error(result, 401)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_an_x_user_id_in_upper_case_names_the_user(client, db) -> None:
    owner = user_with_config(db, {"openai": {"capacity": 100, "refill_per_second": 0}})

    result = post(client, SINGLE_ROUTES[0], body_with(SINGLE_ROUTES[0]), str(owner).upper())

    [decision] = assert_decisions(SINGLE_ROUTES[0], result, 1)
    row = db.execute(
        "SELECT user_id FROM jobs WHERE job_id = %s", [UUID(decision["job_id"])]
    ).fetchone()
    assert row == (owner,)


# --- Every other header, every route -----------------------------------------------------------

header_values = st.one_of(st.text(st.characters(max_codepoint=255), max_size=80), any_text)
other_headers = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "Content-Length-X",
                "Accept",
                "Accept-Charset",
                "Content-Encoding",
                "Idempotency-Key",
                "Authorization",
                "X-Forwarded-For",
                "X-User",
                "Cookie",
                "Range",
                "If-Match",
            ]
        ),
        header_values,
    ),
    max_size=4,
)


@examples(300)
@given(path=routes, headers=other_headers, user_is_known=st.booleans())
def test_any_other_headers_get_a_decision_or_a_clear_4xx(
    client, user, path, headers, user_is_known
) -> None:
    owner = user if user_is_known else uuid4()

    result = post(client, path, body_with(path), owner, headers=headers)

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
    query=st.text(st.characters(max_codepoint=255), max_size=40),
)
def test_health_routes_ignore_whatever_is_sent(
    client, path, method, raw, headers, user_header, query
) -> None:
    all_headers = list(headers)
    if user_header is not None:
        all_headers.append(("X-User-ID", user_header))

    result = client.simulate_request(
        method, path, body=raw, headers=all_headers, query_string=query
    )

    if method == "GET":
        assert result.status_code == 200, result.text
        assert result.json == {"status": "ok"}
    elif method == "HEAD":
        assert result.status_code in (200, 405), result.text
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
def test_any_method_on_any_path_is_a_decision_or_a_clear_4xx(client, user, path, method) -> None:
    result = post(client, path, body_with(SINGLE_ROUTES[0]), user, method=method)

    if result.status_code >= 400 and method != "HEAD":
        assert_clear_error(result)
    elif result.status_code < 400 and method == "POST":
        assert list(result.json) == DECISION_KEYS, (path, result.text)
    elif result.status_code < 400 and method == "GET":
        assert result.json == {"status": "ok"}, (path, result.text)
    else:
        assert method == "HEAD" and result.status_code < 500, (method, path, result.status_code)


def test_the_helpers_write_what_the_tests_mean() -> None:
    assert to_json(Pairs((("a", 1), ("a", 2)))) == '{"a": 1, "a": 2}'
    assert to_json({"s": "\ud800\x00"}) == '{"s": "\\ud800\\u0000"}'
    assert encoded(["\ud800"], ascii_only=False) == b'["\xed\xa0\x80"]'
    assert to_json([float("nan"), Raw("1e999")]) == "[NaN, 1e999]"
    assert to_json(bury(1, [(True, "a"), (False, "")])) == '{"a": [1]}'
    assert to_json(nested(2, objects=True)) == '{"a": {"a": 1}}'
    assert is_json_media_type("application/problem+json; x=1")
