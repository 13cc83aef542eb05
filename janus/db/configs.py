"""janus.configs' ConfigStore over the pool: the dashboard's config versions.

Every call that activates runs in one transaction that first takes the user's row lock
(queries.LOCK_USER_ROW, the lock activate_config() takes too), so a version check and the
activation after it cannot be interleaved with another activation of the same user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg_pool import ConnectionPool

from janus.admission import UnknownUser
from janus.configs import (
    ANY_VERSION,
    ConfigVersion,
    PauseChange,
    PauseState,
    UnknownVersion,
    VersionMismatch,
)
from janus.db import accounts, queries
from janus.db.errors import translated


def _select(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    *,
    active_only: bool = False,
    version: int | None = None,
    before: int | None = None,
    limit: int = 1,
) -> list[ConfigVersion]:
    params = {
        "user_id": user_id,
        "active_only": active_only,
        "version": version,
        "before": before,
        "limit": limit,
    }
    rows = conn.cursor(row_factory=dict_row).execute(queries.CONFIG_VERSIONS, params)
    return [_version(**row) for row in rows]


def _version(stated_paused: bool | None, config: dict[str, Any], **columns: Any) -> ConfigVersion:
    """A row of CONFIG_VERSIONS, with `paused` first in the config when the version set it."""
    stated = {} if stated_paused is None else {"paused": stated_paused}
    return ConfigVersion(config={**stated, **config}, **columns)


def _lock_owner(conn: psycopg.Connection[Any], user_id: UUID) -> None:
    if conn.execute(queries.LOCK_USER_ROW, {"user_id": user_id}).fetchone() is None:
        raise UnknownUser("unknown user")


def _activate(
    conn: psycopg.Connection[Any], user_id: UUID, config: Mapping[str, Any]
) -> ConfigVersion:
    version = accounts.activate_config(conn, user_id, config)
    [stored] = _select(conn, user_id, version=version)
    return stored


def active_version(conn: psycopg.Connection[Any], user_id: UUID) -> ConfigVersion | None:
    """The user's active version, or None when it has none; UnknownUser if there is no user."""
    with translated():
        found = _select(conn, user_id, active_only=True)
        if not found:
            accounts.active_config(conn, user_id)  # raises UnknownUser for no user
            return None
        return found[0]


def list_versions(
    conn: psycopg.Connection[Any], user_id: UUID, limit: int, before: int | None
) -> list[ConfigVersion]:
    """Up to `limit` versions newest first, below `before` if given; UnknownUser for no user."""
    with translated():
        page = _select(conn, user_id, before=before, limit=limit)
        if not page:
            accounts.active_config(conn, user_id)  # raises UnknownUser for no user
        return page


def roll_back(conn: psycopg.Connection[Any], user_id: UUID, version: int) -> ConfigVersion:
    """Make `version` the active one again, in `conn`'s transaction; already active: as is.

    UnknownUser or UnknownVersion when there is no such user or version.
    """
    with translated():
        _lock_owner(conn, user_id)
        found = _select(conn, user_id, version=version)
        if not found:
            raise UnknownVersion(f"no config version {version}")
        if found[0].is_active:
            return found[0]
        accounts.activate_version(conn, user_id, version)
        [stored] = _select(conn, user_id, version=version)
        return stored


def pause_changes(
    conn: psycopg.Connection[Any], user_id: UUID, limit: int, before: int | None
) -> list[PauseChange]:
    """Up to `limit` pause changes newest first, below change_id `before` if given."""
    with translated():
        cursor = conn.cursor(row_factory=class_row(PauseChange))
        params = {"user_id": user_id, "limit": limit, "before": before}
        page = cursor.execute(queries.PAUSE_CHANGES, params).fetchall()
        if not page:
            accounts.active_config(conn, user_id)  # raises UnknownUser for no user
        return page


class ConfigVersionStore:
    """The ConfigStore the dashboard's config resources are given."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def active(self, user_id: UUID) -> ConfigVersion | None:
        """The user's active version, or None; UnknownUser if there is no such user."""
        with translated(), self._pool.connection() as conn:
            return active_version(conn, user_id)

    def replace(
        self, user_id: UUID, config: Mapping[str, Any], if_match: int | None
    ) -> ConfigVersion:
        """Check `if_match` against the active version and activate `config`, in one go."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            _lock_owner(conn, user_id)
            if if_match is not None:
                active = _select(conn, user_id, active_only=True)
                active_version = active[0].version if active else None
                if active_version is None or if_match not in (ANY_VERSION, active_version):
                    raise VersionMismatch(active_version)
            return _activate(conn, user_id, config)

    def versions(self, user_id: UUID, limit: int, before: int | None) -> list[ConfigVersion]:
        """A page of versions newest first; UnknownUser if there is no such user."""
        with translated(), self._pool.connection() as conn:
            return list_versions(conn, user_id, limit, before)

    def reactivate(self, user_id: UUID, version: int) -> ConfigVersion:
        """Make `version` the active one again (a rollback); already active: left as it is."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            return roll_back(conn, user_id, version)

    def set_paused(self, user_id: UUID, paused: bool) -> PauseState:
        """Pause or resume the user; UnknownUser if there is no such user."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            since = accounts.set_paused(conn, user_id, paused)
        return PauseState(paused, since)

    def pause_changes(self, user_id: UUID, limit: int, before: int | None) -> list[PauseChange]:
        """A page of pause changes newest first; UnknownUser if there is no such user."""
        with translated(), self._pool.connection() as conn:
            return pause_changes(conn, user_id, limit, before)
