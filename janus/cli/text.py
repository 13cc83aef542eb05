"""Text for the operator's terminal: one-line messages and aligned tables."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from marshmallow import fields

from janus.schemas.requests import ConfigSchema


def one_line(messages: Any) -> str:
    """Marshmallow's messages, or any text, as one line: `field.path: message; ...`."""
    if isinstance(messages, str):
        return " ".join(part.strip() for part in messages.splitlines() if part.strip())
    parts = [f"{path}: {text}" if path else text for path, text in _flatten(messages, ())]
    return "; ".join(sorted(parts))


def _flatten(messages: Any, path: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    if isinstance(messages, dict):
        for key, nested in messages.items():
            yield from _flatten(nested, (*path, str(key)))
    elif isinstance(messages, list):
        for nested in messages:
            yield from _flatten(nested, path)
    else:
        yield _render_path(path), str(messages).rstrip(".")


_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_DICT_FIELDS = {
    name for name, field in ConfigSchema().fields.items() if isinstance(field, fields.Dict)
}


def _render_path(path: tuple[str, ...]) -> str:
    """`dependencies.openai.capacity`, with marshmallow's Dict and schema markers folded in."""
    # A Dict field's errors sit under {name: {"key": [...], "value": {...}}}.
    if len(path) >= 3 and path[0] in _DICT_FIELDS and path[2] in ("key", "value"):
        if path[2] == "key":
            return f"{path[0]}: name {_segment(path[1])}"
        path = (path[0], path[1], *path[3:])
    segments = [_segment(part) for part in path if part != "_schema"]
    return ".".join(segments)


def _segment(part: str) -> str:
    # Names come from the input: quote anything odd (ASCII escapes) so the line stays one line.
    return part if _PLAIN_SEGMENT.fullmatch(part) else json.dumps(part)


def aligned_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric_columns: Sequence[int] | None = None,
) -> list[str]:
    """Columns two spaces apart: numbers right-aligned (all but the first by default)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = set(range(1, len(header)) if numeric_columns is None else numeric_columns)
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def printable(text: str) -> str:
    """`text` as it is, or escaped and quoted if it has a line break or another control
    character."""
    return text if text.isprintable() else json.dumps(text)


def moment(when: datetime | None) -> str:
    """A moment to the second, with its offset; `-` for none."""
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M:%S%z")
