"""GET /health, the cheap liveness check of the seed API, and GET /health/ready."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from janus.schemas.answers import StatusSchema

# The one answer both give, dumped once.
OK = StatusSchema().dump({"status": "ok"})


class HealthResource:
    """Answers {"status": "ok"} while the process can serve requests; no database involved."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report liveness."""
        resp.media = OK

    # Load balancers probe with HEAD: the same answer, without its body (falcon drops it).
    on_head = on_get


class ReadinessResource:
    """Answers {"status": "ok"} when the database answers too; 503 with Retry-After if not."""

    def __init__(self, check_database: Callable[[], None]) -> None:
        # Returns when the database answers, raises DatabaseUnavailable when it does not.
        self._check_database = check_database

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report readiness: a round trip to Postgres through this worker's pool."""
        self._check_database()
        resp.media = OK

    on_head = on_get
