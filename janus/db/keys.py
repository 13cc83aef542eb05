"""janus.keys' Authenticator and KeyStore over the pool, and the same calls on an operator's
connection for the CLI: authenticate(), create_api_key(), revoke_api_key() and the api_keys
query of queries.sql."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool

from janus.admission import UnknownUser
from janus.db import queries
from janus.db.errors import translated
from janus.keys import (
    MAX_KEYS,
    ApiKey,
    Credential,
    Identity,
    NewKey,
    NotAuthenticated,
    Scope,
    new_key,
)

# What authenticate() answers, in words a client may read.
_REFUSED = {
    "unknown_key": "the API key is not valid",
    "revoked": "the API key was revoked",
    "expired": "the API key has expired",
    "key_required": "this user has API keys: send one (Authorization: Bearer janus_...)",
}


def authenticate(
    conn: psycopg.Connection[Any], user_id: UUID, credential: Credential | None
) -> Identity:
    """Who a request is: by its key, or (None) by X-User-ID alone."""
    with translated():
        row = conn.execute(
            queries.AUTHENTICATE,
            {
                "user_id": user_id,
                "key_id": None if credential is None else credential.key_id,
                "secret_sha256": None if credential is None else credential.secret_sha256,
            },
        ).fetchone()
    assert row is not None
    outcome, scopes, _ = row
    if outcome == "unknown_user":
        if credential is None:
            # Refused by the call itself (UnknownUser, 401), once its body has been read: a
            # bad body of an unknown user is a 400, as it was before keys.
            return Identity(user_id)
        raise NotAuthenticated(_REFUSED["unknown_key"])
    if outcome != "ok":
        raise NotAuthenticated(_REFUSED[outcome])
    if credential is None:
        return Identity(user_id)
    return Identity(user_id, credential.key_id, frozenset(Scope(scope) for scope in scopes))


def create_key(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    name: str,
    scopes: tuple[Scope, ...],
    expires_at: datetime | None,
) -> tuple[NewKey, ApiKey]:
    """A new key of the user, stored; UnknownUser, or TooManyKeys (janus.keys)."""
    key = new_key(user_id)
    with translated():
        row = conn.execute(
            queries.CREATE_API_KEY,
            {
                "user_id": user_id,
                "key_id": key.credential.key_id,
                "name": name,
                "scopes": [scope.value for scope in scopes],
                "secret_sha256": key.credential.secret_sha256,
                "expires_at": expires_at,
                "max_keys": MAX_KEYS,
            },
        ).fetchone()
    assert row is not None
    listed = ApiKey(key.credential.key_id, name, scopes, row[0], None, expires_at, None)
    return key, listed


def list_keys(conn: psycopg.Connection[Any], user_id: UUID) -> list[ApiKey]:
    """The user's keys, newest first; UnknownUser when there is no such user."""
    with translated():
        rows = conn.execute(queries.API_KEYS, {"user_id": user_id}).fetchall()
    if not rows:
        raise UnknownUser("unknown user")
    return [
        ApiKey(key_id, name, tuple(Scope(s) for s in scopes), created, used, expires, revoked)
        for key_id, name, scopes, created, used, expires, revoked in rows
        if key_id is not None
    ]


def revoke_key(conn: psycopg.Connection[Any], user_id: UUID, key_id: str) -> bool | None:
    """Revoke a key: True, False if it was already, None if the user has no such key."""
    with translated():
        row = conn.execute(
            queries.REVOKE_API_KEY, {"user_id": user_id, "key_id": key_id}
        ).fetchone()
    assert row is not None
    return {"revoked": True, "already_revoked": False, "not_found": None}[row[0]]


class KeyStoreOnPool:
    """janus.keys' Authenticator and KeyStore, each call on a pooled connection of its own
    (autocommit: every call is one statement)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def by_key(self, credential: Credential) -> Identity:
        """The identity of a key; see authenticate."""
        with translated(), self._pool.connection() as conn:
            return authenticate(conn, credential.user_id, credential)

    def by_user_id(self, user_id: UUID) -> Identity:
        """The identity of X-User-ID alone; see authenticate."""
        with translated(), self._pool.connection() as conn:
            return authenticate(conn, user_id, None)

    def create(
        self, user_id: UUID, name: str, scopes: tuple[Scope, ...], expires_at: datetime | None
    ) -> tuple[NewKey, ApiKey]:
        """A new key of the user; see create_key."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            return create_key(conn, user_id, name, scopes, expires_at)

    def list(self, user_id: UUID) -> list[ApiKey]:
        """The user's keys; see list_keys."""
        with translated(), self._pool.connection() as conn:
            return list_keys(conn, user_id)

    def revoke(self, user_id: UUID, key_id: str) -> bool | None:
        """Revoke a key; see revoke_key."""
        with translated(), self._pool.connection() as conn, conn.transaction():
            return revoke_key(conn, user_id, key_id)
