"""GET /health: the cheap liveness check of the seed API; it does not touch the database."""

from __future__ import annotations

import falcon


class HealthResource:
    """Answers {"status": "ok"} while the process can serve requests."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report liveness."""
        resp.media = {"status": "ok"}
