"""Query plans as the tests that hold a statement to its indexes read them: EXPLAIN's JSON,
flattened to a list of nodes.

jobs is partitioned (migration 0024): a scan of one of its partitions names the partition and
the partition's index. Each node names jobs and jobs's index instead, as the statement does,
and keeps the partition's names in "Partition" and "Partition Index Name"."""

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
    nodes = list(_nodes(row[0][0]["Plan"]))
    tables, indexes = _partitions_of(db)
    for node in nodes:
        if node.get("Relation Name") in tables:
            node["Partition"] = node["Relation Name"]
            node["Relation Name"] = tables[node["Partition"]]
        if node.get("Index Name") in indexes:
            node["Partition Index Name"] = node["Index Name"]
            node["Index Name"], node["Partition"] = indexes[node["Partition Index Name"]]
    return nodes


def partitions_holding(db: psycopg.Connection, user_id: Any) -> set[str]:
    """The partitions of jobs that hold some of `user_id`'s jobs."""
    rows = db.execute(
        "SELECT DISTINCT tableoid::regclass::text FROM jobs WHERE user_id = %s", [user_id]
    )
    return {name for (name,) in rows}


def partition_holding_most(db: psycopg.Connection, user_id: Any) -> str:
    """The partition of jobs that holds the most of `user_id`'s jobs: where the planner, as
    the statement is built for, reads the filter's own index (a partition holding a few may
    rightly walk its primary key instead)."""
    row = db.execute(
        "SELECT tableoid::regclass::text FROM jobs WHERE user_id = %s"
        " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
        [user_id],
    ).fetchone()
    assert row is not None
    name: str = row[0]
    return name


def reading(nodes: list[dict[str, Any]], partitions: set[str]) -> list[dict[str, Any]]:
    """The nodes but those that read a partition not in `partitions`. In a partition of no
    rows the planner picks any index, all equally free (an ordered walk of the primary key,
    say), where the one holding the rows reads the index the statement is built for."""
    return [node for node in nodes if "Partition" not in node or node["Partition"] in partitions]


def _partitions_of(
    db: psycopg.Connection,
) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """{partition: its partitioned table}, {partition's index: (partitioned index, partition)}."""
    rows = db.execute(
        "SELECT c.relkind = 'i', c.relname, p.relname, t.relname"
        "  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        "  JOIN pg_class p ON p.oid = i.inhparent"
        "  LEFT JOIN pg_index x ON x.indexrelid = c.oid"
        "  LEFT JOIN pg_class t ON t.oid = x.indrelid"
        " WHERE p.relkind IN ('p', 'I')",
        prepare=False,
    ).fetchall()
    return (
        {child: parent for is_index, child, parent, _ in rows if not is_index},
        {child: (parent, table) for is_index, child, parent, table in rows if is_index},
    )


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)
