"""janus.configs' ConfigStore over the pool: the dashboard's config versions.

Every call that activates runs in one transaction that first takes the user's row lock
(queries.LOCK_CONFIG_OWNER, the lock activate_config() takes too), so a version check and the
activation after it cannot be interleaved with another activation of the same user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from janus.admission import UnknownUser
from janus.configs import ANY_VERSION, ConfigVersion, UnknownVersion, VersionMismatch
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
    cursor = conn.cursor(row_factory=class_row(ConfigVersion))
    params = {
        "user_id": user_id,
        "active_only": active_only,
        "version": version,
        "before": before,
        "limit": limit,
    }
    return cursor.execute(queries.CONFIG_VERSIONS, params).fetchall()


def _lock_owner(conn: psycopg.Connection[Any], user_id: UUID) -> None:
    if conn.execute(queries.LOCK_CONFIG_OWNER, {"user_id": user_id}).fetchone() is None:
        raise UnknownUser("unknown user")


def _activate(
    conn: psycopg.Connection[Any], user_id: UUID, config: Mapping[str, Any]
) -> ConfigVersion:
    version = accounts.activate_config(conn, user_id, config)
    [stored] = _select(conn, user_id, version=version)
    return stored


class ConfigVersionStore:
    """The ConfigStore the dashboard's config resources are given."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def active(self, user_id: UUID) -> ConfigVersion | None:
        """The user's active version, or None; UnknownUser if there is no such user."""
        with translated(), self._pool.connection() as conn:
            found = _select(conn, user_id, active_only=True)
            if not found:
                accounts.active_config(conn, user_id)  # raises UnknownUser for no user
                return None
            return found[0]

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
            page = _select(conn, user_id, before=before, limit=limit)
            if not page:
                accounts.active_config(conn, user_id)  # raises UnknownUser for no user
            return page

    def reactivate(self, user_id: UUID, version: int) -> ConfigVersion:
        """Activate a copy of `version` as the next version (the history only grows)."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            _lock_owner(conn, user_id)
            found = _select(conn, user_id, version=version)
            if not found:
                raise UnknownVersion(f"no config version {version}")
            return _activate(conn, user_id, found[0].config)
