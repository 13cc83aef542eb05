"""Query plans as the tests that hold a statement to its indexes read them: EXPLAIN's JSON,
flattened to a list of nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg


def plan_nodes(
    db: psycopg.Connection, query: str, params: dict[str, Any], *, analyze: bool = False
) -> list[dict[str, Any]]:
    """Every node of the plan of `query` for `params`, the top one first; run when `analyze`.

    Unprepared, as janus.db sends its reads: planned for these very values.
    """
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    row = db.execute(f"EXPLAIN ({options}) {query}", params, prepare=False).fetchone()
    assert row is not None
    return list(_nodes(row[0][0]["Plan"]))


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)
