"""GET /health, the cheap liveness check of the seed API, and GET /health/ready."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from janus.db.health import check_database


class HealthResource:
    """Answers {"status": "ok"} while the process can serve requests; no database involved."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report liveness."""
        resp.media = {"status": "ok"}

    # Load balancers probe with HEAD: the same answer, without its body (falcon drops it).
    on_head = on_get


class ReadinessResource:
    """Answers {"status": "ok"} when the database answers too; 503 with Retry-After if not."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report readiness: a round trip to Postgres through this worker's pool."""
        check_database(self._pool)
        resp.media = {"status": "ok"}

    on_head = on_get
