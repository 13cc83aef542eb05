"""`janus maintain`: the partitions of jobs made ahead of need, and those past the retention
forgotten whole (JANUS_JOBS_PARTITION_MINUTES, JANUS_JOBS_RETENTION_MINUTES)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TextIO

from janus.cli.text import moment
from janus.db import accounts, partitions
from janus.settings import JobsPartitioning


def maintain_arguments(command: argparse.ArgumentParser) -> None:
    """`janus maintain` has no options: its settings are the environment's, as the
    migration that partitioned jobs and GET /metrics read them."""
    command.set_defaults(run=maintain)


def maintain(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Add the partitions ahead, then drop those past the retention; a line for each, one for
    each partition past it that is kept and why, and one for what jobs holds now."""
    partitioning = JobsPartitioning.from_env()
    # Autocommit: each partition is added or dropped in a short transaction of its own.
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        added = partitions.add_partitions_ahead(conn, partitioning)
        users = partitions.mark_unfinished_from(conn)
        dropped, kept = partitions.drop_partitions_past(conn, partitioning)
        remaining = partitions.partitions(conn)
    for partition in added:
        print(f"added {partition.name} for {_span(partition)}", file=out)
    retention = _duration(partitioning.retention)
    for partition in dropped:
        print(
            f"dropped {partition.name} ({_span(partition)}): past the {retention} retention",
            file=out,
        )
    for held in kept:
        print(
            f"kept {held.partition.name} ({_span(held.partition)}) past the {retention}"
            f" retention: {held.why}",
            file=out,
        )
    print(f"marked where the unfinished jobs of {users} users start, for their claims", file=out)
    ranged = [p for p in remaining if p.ends is not None]
    print(
        f"jobs has {len(remaining)} partitions, up to {moment(ranged[-1].ends)}"
        f" ({_duration(partitioning.span)} each, kept {retention} after their span ends)",
        file=out,
    )


def _span(partition: partitions.Partition) -> str:
    starts = "the first job" if partition.starts is None else moment(partition.starts)
    return f"{starts} to {moment(partition.ends)}"


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    for unit, size in (("day", 1440), ("hour", 60)):
        if minutes % size == 0:
            count = minutes // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{minutes} minutes" if minutes != 1 else "1 minute"
