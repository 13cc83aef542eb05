"""Housekeeping an operator (or a scheduled job) runs: pruning what has expired, and what of
each user's rows is beyond its newest N."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, LiteralString

import psycopg

from janus.db import queries
from janus.db.errors import translated

# Rows deleted per transaction when pruning jobs: short enough never to hold up admissions.
PRUNE_CHUNK = 5000


def prune_idempotency_keys(conn: psycopg.Connection[Any], chunk: int = PRUNE_CHUNK) -> int:
    """Delete idempotency keys past their 24 hours; return how many were deleted.

    `conn` must be in autocommit mode: every chunk of at most `chunk` keys of one user is its
    own transaction, so no statement spans two users and none holds a day's keys at once.
    """
    require_autocommit(conn, "prune_idempotency_keys")
    with translated():
        return sum(
            _delete_in_chunks(conn, queries.PRUNE_IDEMPOTENCY_KEYS, {"user_id": user_id}, chunk)
            for (user_id,) in conn.execute(queries.ALL_USER_IDS).fetchall()
        )


def prune_idempotency_keys_beyond(
    conn: psycopg.Connection[Any], keep: int, chunk: int = PRUNE_CHUNK
) -> int:
    """Delete each user's idempotency keys beyond its newest `keep`; how many.

    A retry with a key deleted is decided anew, as after its 24 hours. `conn` must be in
    autocommit mode: every chunk of at most `chunk` keys of one user is its own transaction.
    """
    require_autocommit(conn, "prune_idempotency_keys_beyond")
    deleted = 0
    with translated():
        for (user_id,) in conn.execute(queries.ALL_USER_IDS).fetchall():
            params = {"user_id": user_id, "keep": keep}
            first = conn.execute(queries.FIRST_IDEMPOTENCY_KEY_BEYOND, params).fetchone()
            if first is None:
                continue
            created_at, key = first
            params = {"user_id": user_id, "created_at": created_at, "idempotency_key": key}
            after = ""  # below every key: the walk of the user's primary key starts at its first
            while True:
                row = conn.execute(
                    queries.PRUNE_IDEMPOTENCY_KEYS_FROM, {**params, "after": after, "chunk": chunk}
                ).fetchone()
                assert row is not None
                count, after = row
                deleted += count
                if count < chunk:
                    break
    return deleted


def prune_full_tenant_buckets(conn: psycopg.Connection[Any]) -> int:
    """Delete the tenant buckets that are full again (no row means full); how many.

    `conn` must be in autocommit mode: each user's buckets go in a transaction of their own.
    """
    require_autocommit(conn, "prune_full_tenant_buckets")
    with translated():
        users = [user_id for (user_id,) in conn.execute(queries.ALL_USER_IDS)]
        return sum(
            conn.execute(queries.PRUNE_FULL_TENANT_BUCKETS, {"user_id": user_id}).rowcount
            for user_id in users
        )


def prune_history(
    conn: psycopg.Connection[Any], keep_pause_changes: int, keep_versions: int
) -> tuple[int, int]:
    """Delete each user's pause changes beyond its newest `keep_pause_changes`, then its
    inactive config versions older than its newest `keep_versions` (never one a kept pause
    change names); how many of each.

    `conn` must be in autocommit mode: each user's rows go in transactions of their own.
    """
    require_autocommit(conn, "prune_history")
    changes = versions = 0
    with translated():
        for (user_id,) in conn.execute(queries.ALL_USER_IDS).fetchall():
            changes += conn.execute(
                queries.PRUNE_PAUSE_CHANGES, {"user_id": user_id, "keep": keep_pause_changes}
            ).rowcount
            versions += conn.execute(
                queries.PRUNE_CONFIG_VERSIONS, {"user_id": user_id, "keep": keep_versions}
            ).rowcount
    return changes, versions


def prune_rejected_jobs(
    conn: psycopg.Connection[Any],
    older_than: timedelta,
    chunk: int = PRUNE_CHUNK,
    *,
    time_ordered: bool = True,
) -> int:
    """Delete rejected jobs decided more than `older_than` ago; return how many were deleted.
    Without `time_ordered`, only those of random id (stored before migration 0013), which no
    partition of a span holds: the others go with their partitions (janus maintain).

    `conn` must be in autocommit mode: every chunk of at most `chunk` jobs of one user is
    its own transaction, so a large backlog never holds long locks or one huge transaction.
    """
    require_autocommit(conn, "prune_rejected_jobs")
    retention = {"retention_s": older_than.total_seconds()}
    with translated():
        row = conn.execute(queries.PRUNE_CUTOFF, retention).fetchone()
        assert row is not None
        cutoff = row[0]
        return sum(
            _delete_in_chunks(
                conn,
                queries.PRUNE_REJECTED_JOBS,
                {"user_id": user_id, "cutoff": cutoff, "time_ordered": time_ordered},
                chunk,
            )
            for (user_id,) in conn.execute(queries.ALL_USER_IDS).fetchall()
        )


def prune_rejected_jobs_beyond(
    conn: psycopg.Connection[Any], keep: int, chunk: int = PRUNE_CHUNK
) -> int:
    """Delete each user's rejected jobs beyond its newest `keep`; how many.

    As for those past their days, `conn` must be in autocommit mode: every chunk of at most
    `chunk` jobs of one user is its own transaction.
    """
    require_autocommit(conn, "prune_rejected_jobs_beyond")
    deleted = 0
    with translated():
        for (user_id,) in conn.execute(queries.ALL_USER_IDS).fetchall():
            params = {"user_id": user_id, "keep": keep}
            first = conn.execute(queries.FIRST_REJECTED_JOB_BEYOND, params).fetchone()
            if first is not None:
                job_id, created_at = first
                params = {"user_id": user_id, "job_id": job_id, "created_at": created_at}
                deleted += _delete_in_chunks(conn, queries.PRUNE_REJECTED_JOBS_FROM, params, chunk)
    return deleted


def prune_finished_jobs(
    conn: psycopg.Connection[Any], kept_by_partitions: timedelta, chunk: int = PRUNE_CHUNK
) -> int:
    """Delete completed, failed and cancelled jobs past their user's retention_days; how many.
    Where it is no shorter than `kept_by_partitions` (the retention of janus maintain), only
    those of random id (stored before migration 0013): the others go with their partitions.

    Each user's cutoff comes from its active config (a user without one has no jobs). As for
    rejected jobs, `conn` must be in autocommit mode: every chunk of at most `chunk` jobs of
    one user is its own short transaction, and queued or running jobs are never touched, so a
    prune never holds up claims.
    """
    require_autocommit(conn, "prune_finished_jobs")
    with translated():
        return sum(
            _delete_in_chunks(
                conn,
                queries.PRUNE_FINISHED_JOBS,
                {"user_id": user_id, "cutoff": cutoff, "time_ordered": time_ordered},
                chunk,
            )
            for user_id, cutoff, time_ordered in conn.execute(
                queries.FINISHED_JOB_CUTOFFS,
                {"retention_s": kept_by_partitions.total_seconds()},
            ).fetchall()
        )


def require_autocommit(conn: psycopg.Connection[Any], pruner: str) -> None:
    """Refuse a connection in a transaction: a pruner's (or janus maintain's) every chunk of
    work must be a short transaction of its own."""
    if not conn.autocommit:
        raise ValueError(f"{pruner} needs an autocommit connection")


def _delete_in_chunks(
    conn: psycopg.Connection[Any], query: LiteralString, params: Mapping[str, Any], chunk: int
) -> int:
    """Run `query` for one user's `params` until it deletes fewer than `chunk` rows; the total.

    Each run is its own transaction on the autocommit connection, one user's rows only.
    """
    deleted = 0
    while (count := conn.execute(query, {**params, "chunk": chunk}).rowcount) > 0:
        deleted += count
        if count < chunk:
            break
    return deleted
