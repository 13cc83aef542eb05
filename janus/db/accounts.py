"""Users and config versions: what the operator CLI reads and changes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from janus.admission import ConfigMode, UnknownDependencies, UnknownUser, WhenLimited
from janus.db import queries
from janus.db.errors import translated
from janus.db.urls import parsable_database_url

CONNECT_TIMEOUT_S = 5


@contextmanager
def operator_transaction(
    database_url: str, *, autocommit: bool = False
) -> Iterator[psycopg.Connection[Any]]:
    """A connection of its own for one operator command: committed if the block succeeds.

    With `autocommit`, every statement commits on its own instead.
    """
    parsable_database_url(database_url)
    with translated():
        connection = psycopg.connect(
            database_url,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="janus-cli",
            autocommit=autocommit,
        )
        # Leaving the block commits (or rolls back on an exception) and closes the connection.
        with connection:
            yield connection


def create_user(conn: psycopg.Connection[Any], name: str) -> UUID:
    """Create a user called `name` and return its new id."""
    with translated():
        row = conn.execute(queries.CREATE_USER, {"name": name}).fetchone()
    assert row is not None
    user_id: UUID = row[0]
    return user_id


@dataclass(frozen=True)
class UserSummary:
    """One user as `janus user list` shows it; no active config: version and paused None."""

    user_id: UUID
    name: str
    created_at: datetime
    config_version: int | None
    paused: bool | None


class UserHoldings(NamedTuple):
    """What a user owns, all of it deleted with the user."""

    jobs: int
    config_versions: int
    buckets: int


def list_users(conn: psycopg.Connection[Any], name_contains: str | None) -> list[UserSummary]:
    """Every user (or those whose name contains `name_contains`, any case), oldest first."""
    with translated():
        cursor = conn.cursor(row_factory=class_row(UserSummary))
        return cursor.execute(queries.LIST_USERS, {"name_contains": name_contains}).fetchall()


def user_holdings(conn: psycopg.Connection[Any], user_id: UUID) -> UserHoldings:
    """How many jobs, config versions and buckets the user has; UnknownUser if none."""
    with translated():
        row = conn.execute(queries.USER_HOLDINGS, {"user_id": user_id}).fetchone()
    if row is None:
        raise UnknownUser("unknown user")
    return UserHoldings(*row)


def delete_user(conn: psycopg.Connection[Any], user_id: UUID) -> None:
    """Delete the user; its configs, buckets, jobs and idempotency keys go with it (CASCADE)."""
    with translated():
        deleted = conn.execute(queries.DELETE_USER, {"user_id": user_id}).rowcount
    if deleted == 0:
        raise UnknownUser("unknown user")


def find_user_by_name(conn: psycopg.Connection[Any], name: str) -> UUID | None:
    """The id of the oldest user called `name`, if there is one."""
    with translated():
        row = conn.execute(queries.FIND_USER_BY_NAME, {"name": name}).fetchone()
    return None if row is None else row[0]


def lock_user_name(conn: psycopg.Connection[Any], name: str) -> None:
    """Serialise, until this transaction ends, every find-or-create of users called `name`."""
    with translated():
        conn.execute(queries.LOCK_USER_NAME, {"name": name})


def activate_config(conn: psycopg.Connection[Any], user_id: UUID, config: Mapping[str, Any]) -> int:
    """Store `config` (as loaded by ConfigSchema) as the user's next version, active; its number."""
    params = {
        "user_id": user_id,
        # None (left out): the user's pause state stays as it is.
        "paused": config.get("paused"),
        "min_priority": config["min_priority"],
        # As the decimal the client wrote: a float8 cast to numeric keeps 15 digits, so
        # 0.9999999999999999 would be stored as 1 (refused by the table's CHECK, a 500).
        "priority_reserve": Decimal(repr(config["priority_reserve"])),
        # By value: psycopg would send an Enum member's name.
        "unknown_dependencies": UnknownDependencies(config["unknown_dependencies"]).value,
        "dependencies": json.dumps(config["dependencies"]),
        "max_attempts": config["max_attempts"],
        "retention_days": config["retention_days"],
        "mode": ConfigMode(config["mode"]).value,
        "tenant_share": Decimal(repr(config["tenant_share"])),
        "tenant_overrides": json.dumps(config["tenant_overrides"]),
        # As the decimals the client wrote, as priority_reserve.
        "retry_backoff_base_seconds": Decimal(repr(config["retry_backoff"]["base_seconds"])),
        "retry_backoff_max_seconds": Decimal(repr(config["retry_backoff"]["max_seconds"])),
        "when_limited": WhenLimited(config["when_limited"]).value,
        "max_wait_seconds": config["max_wait_seconds"],
    }
    with translated():
        row = conn.execute(queries.ACTIVATE_CONFIG, params).fetchone()
    assert row is not None
    version: int = row[0]
    return version


def active_config(conn: psycopg.Connection[Any], user_id: UUID) -> int | None:
    """The user's active config version, or None when it has none; UnknownUser if no user."""
    with translated():
        row = conn.execute(queries.ACTIVE_CONFIG, {"user_id": user_id}).fetchone()
    if row is None:
        raise UnknownUser("unknown user")
    version: int | None = row[0]
    return version


def set_paused(conn: psycopg.Connection[Any], user_id: UUID, paused: bool) -> datetime | None:
    """Pause or resume the user (a no-op when already so); when the current state began."""
    with translated():
        row = conn.execute(queries.SET_PAUSED, {"user_id": user_id, "paused": paused}).fetchone()
    assert row is not None
    since: datetime | None = row[0]
    return since


def activate_version(conn: psycopg.Connection[Any], user_id: UUID, version: int) -> None:
    """Make the user's stored `version` the active one again, buckets included (a rollback)."""
    with translated():
        conn.execute(queries.ACTIVATE_VERSION, {"user_id": user_id, "version": version})
