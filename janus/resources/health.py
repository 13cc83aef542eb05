"""GET /health, the cheap liveness check of the seed API, and GET /health/ready."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import falcon

from janus.admission import DatabaseUnavailable
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


# How long a readiness answer stands for the worker's next callers: the route is open to
# anyone, so at most one round trip to Postgres a second per worker, however often it is hit.
READY_FOR_S = 1.0


class ReadinessResource:
    """Answers {"status": "ok"} when the database answers too; 503 with Retry-After if not.

    The check is a round trip through this worker's pool, made at most once every READY_FOR_S
    seconds: a caller within that time gets the last outcome, a success or the same 503.
    """

    def __init__(
        self, check_database: Callable[[], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Returns when the database answers, raises DatabaseUnavailable when it does not.
        self._check_database = check_database
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._failure: DatabaseUnavailable | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report readiness: Postgres answered within the last READY_FOR_S seconds."""
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= READY_FOR_S:
                try:
                    self._check_database()
                    self._failure = None
                except DatabaseUnavailable as unavailable:
                    self._failure = unavailable
                self._checked_at = now
            last_failure = self._failure
        if last_failure is not None:
            # A new exception each time: one raised again and again would grow its traceback.
            raise DatabaseUnavailable(
                str(last_failure),
                last_failure.retry_after,
                last_failure.detail,
                last_failure.cause,
            )
        resp.media = OK

    on_head = on_get
