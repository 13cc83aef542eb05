"""The domain of credentials: a user's API keys, what each may do, and who a request is.

A key is `janus_<user id>_<key id>_<secret>`: the user's id (32 hex digits) and the key's
(16), so that the key is looked up by its user as every user row is, then 48 hex digits of
secret (192 random bits). Only the secret's SHA-256 is stored; the key as a whole is shown
once, when it is created. A secret drawn at random with 192 bits needs no slow hash: nobody
can guess one, so a stolen table of hashes gives nothing to try.

Scopes say what a key may do: `produce` (submit, quote, read its user's jobs), `work` (claim
and the lease calls), `read` (everything the dashboard reads) and `admin` (config, pause,
keys, cancel and retry). A request sent by X-User-ID alone, for a user without keys, may do
everything, as the seed's API always could.

janus.db implements `Authenticator` and `KeyStore`; this module knows nothing of HTTP or of
the database driver, and nothing else of Janus.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

PREFIX = "janus_"
KEY_ID_HEX = 16
SECRET_BYTES = 24
_KEY = re.compile(
    rf"{PREFIX}(?P<user>[0-9a-f]{{32}})_(?P<key>[0-9a-f]{{{KEY_ID_HEX}}})"
    rf"_(?P<secret>[0-9a-f]{{{2 * SECRET_BYTES}}})",
    re.ASCII,
)
# Keys a user may hold at once (neither revoked nor expired).
MAX_KEYS = 100
MAX_NAME_CHARS = 100


class Scope(StrEnum):
    """What a key may do."""

    PRODUCE = "produce"
    WORK = "work"
    READ = "read"
    ADMIN = "admin"


SCOPES: tuple[Scope, ...] = tuple(Scope)


@dataclass(frozen=True)
class Credential:
    """A key as a request presents it, parsed: whose it is, which one, and its secret's hash."""

    user_id: UUID
    key_id: str
    secret_sha256: bytes


@dataclass(frozen=True)
class NewKey:
    """A key just made: its text (shown once) and what is stored of it."""

    text: str
    credential: Credential


def new_key(user_id: UUID) -> NewKey:
    """A fresh key of `user_id`, from the operating system's randomness."""
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    secret = secrets.token_hex(SECRET_BYTES)
    text = f"{PREFIX}{user_id.hex}_{key_id}_{secret}"
    return NewKey(text, Credential(user_id, key_id, _sha256(secret)))


def parse_key(text: str) -> Credential | None:
    """The credential `text` spells, or None when it is not shaped as a key."""
    match = _KEY.fullmatch(text)
    if match is None:
        return None
    return Credential(UUID(match["user"]), match["key"], _sha256(match["secret"]))


def looks_like_key(text: str) -> bool:
    """Whether `text` starts as a key does: a bearer credential meant as a key, not a token."""
    return text.startswith(PREFIX)


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def user_tag(user_id: UUID) -> str:
    """A short name of the user for log lines: 8 hex digits of its id's SHA-256.

    It tells one user's lines from another's, and cannot be turned back into the id (a random
    122-bit id behind 32 bits), so a log holds no credential of a user without keys.
    """
    return hashlib.sha256(user_id.bytes).hexdigest()[:8]


@dataclass(frozen=True)
class ApiKey:
    """A key as its user sees it listed: everything but its secret."""

    key_id: str
    name: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Identity:
    """Who a request is: its user, and the key it came with (None: X-User-ID alone, which may
    do everything)."""

    user_id: UUID
    key_id: str | None = None
    scopes: frozenset[Scope] = frozenset(SCOPES)

    def allows(self, needed: tuple[Scope, ...]) -> bool:
        """Whether any of the scopes `needed` is one of this identity's."""
        return not needed or any(scope in self.scopes for scope in needed)


# The user the request being served acts as, once authenticated (janus/resources/auth.py
# sets it, and clears it at every request's start): janus/db/pool.py counts each user's
# connections by it.
ACTING_USER: ContextVar[UUID | None] = ContextVar("janus_acting_user", default=None)


class NotAuthenticated(Exception):
    """The credential does not name a user that may be reached by it; the message says why,
    in words a client may be shown (no secret in them)."""


class Authenticator(Protocol):
    """Whatever tells who a request is."""

    def by_key(self, credential: Credential) -> Identity:
        """The identity of a key; NotAuthenticated when it is unknown (or its secret wrong),
        revoked or expired, or its user is gone."""
        ...

    def by_user_id(self, user_id: UUID) -> Identity:
        """The identity of X-User-ID alone; NotAuthenticated when the user has keys (a key is
        then required). An id that names no user is answered as a user's: the call it makes
        then finds no such user (UnknownUser, janus.admission), after its body is read."""
        ...


class TooManyKeys(Exception):
    """The user holds MAX_KEYS keys already."""


class KeyStore(Protocol):
    """Whatever keeps users' keys."""

    def create(
        self, user_id: UUID, name: str, scopes: tuple[Scope, ...], expires_at: datetime | None
    ) -> tuple[NewKey, ApiKey]:
        """A new key of the user; UnknownUser, or TooManyKeys."""
        ...

    def list(self, user_id: UUID) -> list[ApiKey]:
        """The user's keys, newest first, revoked ones included; UnknownUser."""
        ...

    def revoke(self, user_id: UUID, key_id: str) -> bool | None:
        """Revoke a key: True, False when it was revoked already, None when the user has no
        such key; UnknownUser."""
        ...
