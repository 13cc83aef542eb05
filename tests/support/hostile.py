"""Hostile input, and the valid input beside it: hypothesis strategies and the JSON they write.

A hostile value is written token by token (`Raw`, `Pairs`, `to_json`), so that a body can
hold what no JSON library writes: NaN, 1e999, integers of 10,000 digits, a key twice, a lone
surrogate as raw bytes. The strategies draw any text, any JSON, a bad value for any field,
valid jobs and configs, media types and headers. `post` sends any of them to the app
in-process; `examples(n)` is the property settings every property test shares.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import falcon.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.support.answers import JSON
from tests.support.app import JOB_ROUTES
from tests.support.factories import CONFIGURED

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


# --- JSON written token by token ------------------------------------------------------------------


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


# --- Any text, any JSON ---------------------------------------------------------------------------

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
STORABLE_CHARACTER = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


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


# --- Valid jobs and configs -----------------------------------------------------------------------

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


# --- One bad value in an otherwise valid body -----------------------------------------------------

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


# --- Numbers --------------------------------------------------------------------------------------


def is_json_number(number: Any) -> bool:
    """Whether `number` is written as a JSON number (NaN and the infinities are not JSON)."""
    if isinstance(number, Raw):
        return number.text not in NOT_JSON_TOKENS
    return not isinstance(number, float) or math.isfinite(number)


# --- Content types --------------------------------------------------------------------------------

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


# --- Headers --------------------------------------------------------------------------------------

# The 8-4-4-4-12 form of RFC 9562, the one spelling of X-User-ID that names a user.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


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


# --- Sending --------------------------------------------------------------------------------------


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
