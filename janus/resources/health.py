"""GET /health, the cheap liveness check of the seed API, and GET /health/ready."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

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


class _Outcome(NamedTuple):
    """A check's outcome, and when it began: a success says Postgres answered at some moment
    after that, so it stands READY_FOR_S from the start of its round trip, not from its end."""

    began_at: float
    failure: DatabaseUnavailable | None


class ReadinessResource:
    """Answers {"status": "ok"} when the database answers too; 503 with Retry-After if not.

    The check is a round trip through this worker's pool, begun at most once every READY_FOR_S
    seconds, by the first caller to find the last outcome that old; the callers in between get
    that outcome, a success or the same 503. A 200 therefore always rests on a check begun less
    than READY_FOR_S before. Callers that come while a check is under way wait for it and share
    its outcome (one check at a time, however many callers: no queue of checks one after
    another behind a database that does not answer).
    """

    def __init__(
        self, check_database: Callable[[], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Returns when the database answers, raises DatabaseUnavailable when it does not.
        self._check_database = check_database
        self._clock = clock
        # Guards the fields below, and is never held during a check.
        self._changed = threading.Condition()
        self._last: _Outcome | None = None
        self._checking = False
        # Counts the checks ended: a caller waits for the one under way to end.
        self._checks_ended = 0

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report readiness: Postgres answered a check begun less than READY_FOR_S ago."""
        outcome = self._outcome()
        if outcome is None:
            raise falcon.HTTPServiceUnavailable(
                description="readiness could not be checked; retry shortly", retry_after=1
            )
        if (failure := outcome.failure) is not None:
            # A new exception each time: one raised again and again would grow its traceback.
            raise DatabaseUnavailable(
                str(failure), failure.retry_after, failure.detail, failure.cause
            )
        resp.media = OK

    on_head = on_get

    def _outcome(self) -> _Outcome | None:
        """The last outcome while it stands, else that of the check under way, else a new
        check's; None when the check waited for raised something other than
        DatabaseUnavailable (raised to the caller that made it)."""
        with self._changed:
            last = self._last
            if last is not None and self._clock() - last.began_at < READY_FOR_S:
                return last
            if self._checking:
                ended = self._checks_ended
                while self._checks_ended == ended:
                    self._changed.wait()
                return self._last if self._last is not last else None
            self._checking = True
        outcome: _Outcome | None = None
        try:
            outcome = self._check()
        finally:
            with self._changed:
                self._checking = False
                self._checks_ended += 1
                if outcome is not None:
                    self._last = outcome
                self._changed.notify_all()
        return outcome

    def _check(self) -> _Outcome:
        """One round trip to Postgres, outside the lock."""
        began_at = self._clock()
        try:
            self._check_database()
        except DatabaseUnavailable as unavailable:
            return _Outcome(began_at, unavailable)
        return _Outcome(began_at, None)
