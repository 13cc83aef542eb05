"""Housekeeping an operator (or a scheduled job) runs: pruning what has expired."""

from __future__ import annotations

from typing import Any

import psycopg

from janus.db import queries


def prune_idempotency_keys(conn: psycopg.Connection[Any]) -> int:
    """Delete idempotency keys past their 24 hours; return how many were deleted."""
    return conn.execute(queries.PRUNE_IDEMPOTENCY_KEYS).rowcount
