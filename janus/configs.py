"""The domain of a user's rules over HTTP: what the /dashboard config and pause resources use.

A user's admission policy is a list of numbered versions, at most one of them active, and a
pause state that belongs to the user and outlives versions: a version that leaves `paused`
out keeps it, one that sets it sets it, and a rollback leaves it alone. This module names
what the resources read and ask for; janus.db implements `ConfigStore` (one
transaction per call, under the user's row lock), and janus.app wires it. It knows nothing of
HTTP or of the database driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

# `if_match` that any active version satisfies (HTTP's If-Match: *); versions start at 1.
ANY_VERSION = 0
# Versions are Postgres integers: no user has a larger one.
MAX_VERSION = 2**31 - 1


class VersionMismatch(Exception):
    """The caller's If-Match names a version that is not the active one: nothing was stored."""

    def __init__(self, active_version: int | None) -> None:
        super().__init__(f"the active config version is {active_version}")
        self.active_version = active_version


class UnknownVersion(Exception):
    """The user has no config version with this number."""


@dataclass(frozen=True)
class ConfigVersion:
    """One stored version of a user's config, in the contract's JSON shape.

    `config` is the version as it was written: it has `paused` only when the version set it.
    `user_paused` is the user's pause state now, which is what is in force.
    """

    version: int
    config: dict[str, Any]
    created_at: datetime
    activated_at: datetime | None
    is_active: bool
    user_paused: bool


@dataclass(frozen=True)
class PauseState:
    """Whether the user is paused now, and since when (None: never paused)."""

    paused: bool
    since: datetime | None


@dataclass(frozen=True)
class PauseChange:
    """One change of a user's pause state; config_version None: by pause or resume."""

    change_id: int
    paused: bool
    changed_at: datetime
    config_version: int | None


class ConfigStore(Protocol):
    """Whatever stores and activates users' config versions."""

    def active(self, user_id: UUID) -> ConfigVersion | None:
        """The user's active version, or None when it has none."""
        ...

    def replace(
        self, user_id: UUID, config: Mapping[str, Any], if_match: int | None
    ) -> ConfigVersion:
        """Store `config` (as ConfigSchema loads it) as the next version and activate it.

        With `if_match`, only when that is the active version (VersionMismatch otherwise),
        or with ANY_VERSION (0, If-Match: *) only when there is an active version at all:
        the check and the activation are one transaction under the user's lock.
        """
        ...

    def versions(self, user_id: UUID, limit: int, before: int | None) -> list[ConfigVersion]:
        """Up to `limit` versions newest first, those below version `before` when given."""
        ...

    def reactivate(self, user_id: UUID, version: int) -> ConfigVersion:
        """Make `version` the active one again (a rollback); UnknownVersion if there is none."""
        ...

    def set_paused(self, user_id: UUID, paused: bool) -> PauseState:
        """Pause or resume the user (nothing changes when it already is); the state after."""
        ...

    def pause_changes(self, user_id: UUID, limit: int, before: int | None) -> list[PauseChange]:
        """Up to `limit` pause changes newest first, those below change_id `before` if given."""
        ...


def in_force(stored: ConfigVersion) -> dict[str, Any]:
    """The config in force, with its version, as GET /dashboard/config and `janus config show`
    answer it (janus.schemas.answers.ActiveConfigSchema).

    `paused` is the user's state now, whatever the version said when it was written.
    """
    rules = {name: value for name, value in stored.config.items() if name != "paused"}
    return {
        "version": stored.version,
        "activated_at": stored.activated_at,
        "paused": stored.user_paused,
        **rules,
    }
