"""Strict JSON input, for request bodies and config files alike, keeping chosen values as text;
and JSON output that writes stored JSON text and exact decimals back as they are.

The standard library's parser with three changes. A duplicate key is an error: parsers read
`{"a": 1, "a": 2}` differently, so a client and Janus could disagree about what was sent.
NaN and Infinity are not JSON. And the values at the requested paths (a job's payload) are
kept as the exact text the client wrote, so `1.10`, `1e400`, `-0`, a 40-digit integer or a
`\\u0000` escape reach the database and the workers unchanged; Python's numbers could not
carry them.

Only the objects and arrays on the way to a kept value are walked here, in Python; every other
value is parsed by the standard library's C scanner.
"""

from __future__ import annotations

import json
import re
import sys
from _json import scanstring  # the C string reader json.decoder uses
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal
from json.decoder import JSONDecodeError
from json.scanner import make_scanner
from typing import Any, NamedTuple


class RawJson(NamedTuple):
    """A JSON value as the exact text sent, and that value parsed for checks of its shape.

    In `value`, every number is left as its text (a str), since no Python number can hold
    all of them; strings, objects and arrays are as `json.loads` gives them.
    """

    text: str
    value: Any


class _KeepText:
    """Marks, in a path tree, the values to keep as text."""


KEEP_TEXT = _KeepText()
# In a path tree, the key that stands for every item of an array.
ANY_ITEM = "*"

# {key: KEEP_TEXT or a subtree}: which values below an object (or, under ANY_ITEM, an array)
# to keep as text.
PathTree = Mapping[str, "PathTree | _KeepText"]


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        duplicate = next(key for key, count in counts.items() if count > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _integer(text: str) -> int | float:
    # int() refuses more digits than this, with advice meant for the programmer; such a number
    # is out of every range a field allows, and infinity says so to the schema.
    if len(text) > sys.get_int_max_str_digits():
        return float(text)
    return int(text)


def _number_text(text: str) -> str:
    return text


# Numbers outside kept values become Python numbers (1e400 becomes infinity, which no field
# accepts); inside them they stay text, and are not converted at all.
Scanner = Callable[[str, int], tuple[Any, int]]
# make_scanner reads its hooks from a JSONDecoder (typeshed wants another scanner there).
_STRICT: Scanner = make_scanner(
    json.JSONDecoder(  # type: ignore[arg-type]
        object_pairs_hook=_no_duplicate_keys, parse_int=_integer, parse_constant=_no_constant
    )
)
_KEPT: Scanner = make_scanner(
    json.JSONDecoder(  # type: ignore[arg-type]
        object_pairs_hook=_no_duplicate_keys,
        parse_int=_number_text,
        parse_float=_number_text,
        parse_constant=_no_constant,
    )
)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_WHITESPACE_CHARS = frozenset(" \t\n\r")
_PLAIN_KEY = re.compile(r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')
_NEXT_PLAIN_KEY = re.compile(r'[ \t\n\r]*,[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')
_DELIMITER = re.compile(r"[ \t\n\r]*([,}])[ \t\n\r]*")


def loads(text: str, keep_text: PathTree | None = None) -> Any:
    """Parse `text` strictly; the values `keep_text` points at come back as RawJson.

    Raises ValueError (JSONDecodeError for bad syntax, with its position) with a message
    fit to show the client, and RecursionError for absurd nesting.
    """
    value, end = _value(text, _skip(text, 0), keep_text)
    end = _skip(text, end)
    if end != len(text):
        raise JSONDecodeError("Extra data", text, end)
    return value


def _skip(text: str, index: int) -> int:
    # Most JSON has no whitespace or a single space between tokens: check before matching.
    if text[index : index + 1] in _WHITESPACE_CHARS:
        match = _WHITESPACE.match(text, index)
        assert match is not None  # the pattern matches the empty string
        return match.end()
    return index


def _value(text: str, index: int, tree: PathTree | _KeepText | None) -> tuple[Any, int]:
    if tree is None:
        return _scan(_STRICT, text, index)
    if isinstance(tree, _KeepText):
        value, end = _scan(_KEPT, text, index)
        return RawJson(text[index:end], value), end
    opening = text[index : index + 1]
    if opening == "{":
        return _object(text, index + 1, tree)
    if opening == "[":
        return _array(text, index + 1, tree.get(ANY_ITEM))
    return _scan(_STRICT, text, index)


def _scan(scanner: Scanner, text: str, index: int) -> tuple[Any, int]:
    try:
        value, end = scanner(text, index)
    except StopIteration as stop:
        raise JSONDecodeError("Expecting value", text, stop.value) from None
    return value, end


def _object(text: str, index: int, tree: PathTree) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    index = _skip(text, index)
    if text[index : index + 1] == "}":
        return result, index + 1
    # One match for a key without escapes and its colon (after the comma, from the second
    # key on); scanstring for the rest.
    plain_key = _PLAIN_KEY.match(text, index)
    while True:
        if plain_key is not None:
            key, index = plain_key[1], plain_key.end()
        else:
            if text[index : index + 1] != '"':
                raise JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, index
                )
            key, index = scanstring(text, index + 1, True)
            index = _skip(text, index)
            if text[index : index + 1] != ":":
                raise JSONDecodeError("Expecting ':' delimiter", text, index)
            index = _skip(text, index + 1)
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        subtree = tree.get(key)
        try:
            # The common cases without the calls of _value and _scan.
            if subtree is None:
                result[key], index = _STRICT(text, index)
            elif isinstance(subtree, _KeepText):
                value, end = _KEPT(text, index)
                result[key], index = RawJson(text[index:end], value), end
            else:
                result[key], index = _value(text, index, subtree)
        except StopIteration as stop:
            raise JSONDecodeError("Expecting value", text, stop.value) from None
        plain_key = _NEXT_PLAIN_KEY.match(text, index)
        if plain_key is None:
            if text[index : index + 1] == "}":
                return result, index + 1
            delimiter = _DELIMITER.match(text, index)
            if delimiter is None:
                raise JSONDecodeError("Expecting ',' delimiter", text, _skip(text, index))
            if delimiter.group(1) == "}":
                return result, delimiter.end()
            index = delimiter.end()


def _array(text: str, index: int, item_tree: PathTree | _KeepText | None) -> tuple[list[Any], int]:
    result: list[Any] = []
    index = _skip(text, index)
    if text[index : index + 1] == "]":
        return result, index + 1
    while True:
        item, index = _value(text, index, item_tree)
        result.append(item)
        delimiter = text[index : index + 1]
        if delimiter != "," and delimiter != "]":
            index = _skip(text, index)
            delimiter = text[index : index + 1]
        if delimiter == "]":
            return result, index + 1
        if delimiter != ",":
            raise JSONDecodeError("Expecting ',' delimiter", text, index)
        index = _skip(text, index + 1)


class JsonText(str):
    """JSON text to be written into a document as it is: a payload or result as stored."""


def dumps(value: Any) -> str:
    """`value` as JSON text, as json.dumps writes it, but for two kinds of values.

    A JsonText is written as the JSON it holds, unparsed, so a stored payload comes back with
    every number and string exactly as sent; a Decimal is written as the exact decimal number
    it is (`0.000001`, never `1e-06` or a float's approximation). Both must be valid: they are
    not checked.
    """
    if isinstance(value, JsonText):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return f"{value:f}"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key))}: {dumps(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    return json.dumps(value, allow_nan=False)
