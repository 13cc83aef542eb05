"""The service token: when configured, callers prove they may speak for users at all."""

from __future__ import annotations

import hmac

import falcon

from janus.dashboard import FILES as DASHBOARD_FILES

# Liveness and readiness stay open, so a platform's health check needs no secret (Render's
# health check, render.yaml's healthCheckPath, sends no header). They tell only "ok" or 503.
# The dashboard's files are open too: they hold no data, and the page asks for the token.
OPEN_PATHS = frozenset({"/health", "/health/ready", *DASHBOARD_FILES})


class ServiceTokenMiddleware:
    """Require `Authorization: Bearer <token>` on every route but OPEN_PATHS."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse the request with 401 unless it carries the service token."""
        if req.path in OPEN_PATHS:
            return
        scheme, _, credentials = (req.get_header("Authorization") or "").partition(" ")
        provided = credentials.encode("utf-8", "surrogateescape")
        # The scheme is case-insensitive (RFC 9110); the token is compared in constant time,
        # so it cannot be guessed byte by byte from response times.
        if scheme.lower() != "bearer" or not hmac.compare_digest(provided, self._expected):
            raise falcon.HTTPUnauthorized(
                description="a valid service token is required (Authorization: Bearer ...)",
                challenges=["Bearer"],
            )
