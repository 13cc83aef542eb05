"""Who may call: the service token, a user's API key, or a user's id alone.

Every route but OPEN_PATHS needs the service token when the service has one. Every user
route (an operation of janus/routes.py with `user`) then needs its user, named one of two
ways:

- `Authorization: Bearer janus_...`, an API key (janus.keys): the key names its user, and an
  X-User-ID sent with it must be that user. The key must hold one of the route's scopes
  (403 otherwise). On its user's routes a key stands in for the service token, since it
  proves more than the token does; /metrics and the document still need the token.
- `X-User-ID` alone, as the seed's API is called: for a user that has never had a key, and
  only while the service does not require keys (JANUS_AUTH=keys). It may call every route.

Both are read from the database on every request (no cache: a revoked key is refused on its
next request), through janus.keys' Authenticator.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from uuid import UUID

import falcon

from janus.dashboard import FILES as DASHBOARD_FILES
from janus.keys import (
    ACTING_USER,
    Authenticator,
    Identity,
    NotAuthenticated,
    Scope,
    looks_like_key,
    parse_key,
)
from janus.resources.errors import KEY_CHALLENGE, USER_CHALLENGE
from janus.resources.telemetry import note_identity

# Liveness and readiness stay open, so a platform's health check needs no secret (Render's
# health check, render.yaml's healthCheckPath, sends no header). They tell only "ok" or 503.
# The dashboard's files are open too: they hold no data, and the page asks for the key.
OPEN_PATHS = frozenset({"/health", "/health/ready", *DASHBOARD_FILES})

_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII | re.IGNORECASE
)

# (route template, method) -> the scopes that may call it.
RouteScopes = Mapping[tuple[str, str], tuple[Scope, ...]]


def _bearer(req: falcon.Request) -> str | None:
    """The credentials of `Authorization: Bearer ...`; None without that header (or with
    another scheme). The scheme is case-insensitive (RFC 9110)."""
    scheme, _, credentials = (req.get_header("Authorization") or "").partition(" ")
    return credentials if scheme.lower() == "bearer" else None


def user_id_header(req: falcon.Request) -> UUID:
    """The UUID in X-User-ID; 401 when it is missing or malformed."""
    raw = req.get_header("X-User-ID")
    if not raw:
        raise falcon.HTTPUnauthorized(
            description="the X-User-ID header is required", challenges=USER_CHALLENGE
        )
    # Only the canonical 8-4-4-4-12 spelling: UUID() alone also takes braces, "urn:uuid:",
    # missing hyphens and non-ASCII digits, so one user would have many names.
    if not _CANONICAL_UUID.fullmatch(raw):
        raise falcon.HTTPUnauthorized(
            description="X-User-ID must be a UUID", challenges=USER_CHALLENGE
        ) from None
    return UUID(raw)


def _refused(description: str) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(description=description, challenges=KEY_CHALLENGE)


def _token_refused() -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(
        description="a valid service token is required (Authorization: Bearer ...)",
        challenges=["Bearer"],
    )


class AuthMiddleware:
    """The service token before routing; the user, and its scopes, once the route is known."""

    def __init__(
        self,
        authenticator: Authenticator,
        scopes: RouteScopes,
        *,
        service_token: str | None,
        keys_required: bool,
        shared: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self._authenticator = authenticator
        self._scopes = scopes
        # The calls whose connections count against their user's share (ACTING_USER).
        self._shared = shared
        self._token = None if service_token is None else service_token.encode()
        self._keys_required = keys_required

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse with 401 a request that needs the service token and carries neither it nor
        an API key (checked with its route)."""
        # A thread serves request after request: nothing of the last one's user is kept.
        ACTING_USER.set(None)
        if self._token is None or req.path in OPEN_PATHS:
            return
        credentials = _bearer(req)
        if credentials is not None and looks_like_key(credentials):
            return
        provided = (credentials or "").encode("utf-8", "surrogateescape")
        # Compared in constant time, so the token cannot be guessed byte by byte from timings.
        if credentials is None or not hmac.compare_digest(provided, self._token):
            raise _token_refused()

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: object
    ) -> None:
        """Name the request's user (req.context.identity), or refuse it: 401 for a missing,
        unknown, revoked or expired credential, 403 for a key without the route's scope."""
        needed = self._scopes.get((req.uri_template or "", req.method))
        if needed is None:
            # Not a user route (or a method it does not have: 405 follows). A key stands in
            # for the service token on its user's routes only: /metrics and the document
            # tell of every user.
            credentials = _bearer(req)
            if (
                self._token is not None
                and req.path not in OPEN_PATHS
                and credentials is not None
                and looks_like_key(credentials)
            ):
                raise _token_refused()
            return
        identity = self._identify(req)
        note_identity(req, identity)
        if not identity.allows(needed):
            names = " or ".join(scope.value for scope in needed)
            raise falcon.HTTPForbidden(
                description=f"this API key lacks the scope this route needs: {names}"
            )
        req.context.identity = identity
        if (req.uri_template, req.method) in self._shared:
            ACTING_USER.set(identity.user_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """The request is answered: its user holds nothing more."""
        ACTING_USER.set(None)

    def _identify(self, req: falcon.Request) -> Identity:
        credentials = _bearer(req)
        try:
            if credentials is not None and looks_like_key(credentials):
                credential = parse_key(credentials)
                if credential is None:
                    raise _refused("the API key is not valid")
                claimed = req.get_header("X-User-ID")
                if claimed is not None and claimed.lower() != str(credential.user_id):
                    raise _refused("X-User-ID names another user than the API key's")
                return self._authenticator.by_key(credential)
            if self._keys_required:
                raise _refused("an API key is required (Authorization: Bearer janus_...)")
            return self._authenticator.by_user_id(user_id_header(req))
        except NotAuthenticated as refusal:
            raise _refused(str(refusal)) from None
