"""No answer of a user's is kept by a cache between Janus and its callers."""

from __future__ import annotations

import falcon

from janus.dashboard import FILES as DASHBOARD_FILES

# What every answer but the dashboard's files says: store nothing (a shared cache would
# otherwise serve one user's quotas or jobs to another), and the answer depends on who asks.
NO_STORE = "no-store"
VARY = "Authorization, X-User-ID"


class NoStoreMiddleware:
    """`Cache-Control: no-store` and `Vary: Authorization, X-User-ID` on every answer but the
    dashboard's own files (which hold no one's data and say `no-cache` themselves)."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Mark the answer, whatever its status."""
        if req.path in DASHBOARD_FILES:
            return
        resp.set_header("Cache-Control", NO_STORE)
        resp.set_header("Vary", VARY)
