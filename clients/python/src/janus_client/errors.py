"""What a call to Janus can raise: every answer that is not the call's success, and the
failures to get one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from janus_client.results import JobResult


class JanusError(Exception):
    """Any failure of a call to Janus."""


class JanusHTTPError(JanusError):
    """Janus answered with an error status: its `status`, and the error body's `title`,
    `description` and `errors` (by field, for a 400)."""

    def __init__(self, status: int, body: Any, retry_after: float | None = None) -> None:
        body = body if isinstance(body, dict) else {}
        self.body: dict[str, Any] = body
        self.status = status
        self.title: str = str(body.get("title", status))
        self.description: str = str(body.get("description", ""))
        self.errors: dict[str, Any] = body.get("errors") or {}
        self.retry_after = retry_after
        super().__init__(f"{self.title}: {self.description}" if self.description else self.title)


class BadRequest(JanusHTTPError):
    """400: the body or a parameter is not valid (`errors` names each field)."""


class Unauthorized(JanusHTTPError):
    """401: no credential, or one Janus does not accept (unknown, revoked or expired key)."""


class Forbidden(JanusHTTPError):
    """403: the user is paused or has no active config, or the key lacks the route's scope."""


class NotFound(JanusHTTPError):
    """404: no such job, config version or key of this user."""


class Conflict(JanusHTTPError):
    """409: the call does not fit the state it found (see its description)."""


class LeaseLost(Conflict):
    """409 on a lease call: the lease token is no longer the job's (it expired, and another
    claim may hold the job now). Stop working on the job: its outcome will not be taken."""


class PreconditionFailed(JanusHTTPError):
    """412: the config changed since it was read (If-Match is not the active version)."""


class IdempotencyKeyReused(JanusHTTPError):
    """422: the Idempotency-Key was already used for a different request."""


class TooManyRequests(JanusHTTPError):
    """429 that is not a job's rejection: the user's other requests hold its share of the
    service (its reads run one at a time). `retry_after` says when to try again."""


class Unavailable(JanusHTTPError):
    """503: the database is unreachable or busy, still so after the retries the client made."""


class ConnectionFailed(JanusError):
    """No answer: the connection could not be made, or broke, or timed out, still so after the
    retries the client made (for a job, whether it was decided is unknown: send it again with
    the same idempotency key, which the client does on its retries)."""


class JobsRejected(JanusError):
    """Jobs were refused (raise_for_rejection(s) of a JobResult or BatchResult): `rejected`
    holds their results, each with its index in the request, reason, code and retry_after."""

    # How many refusals the message spells out; `rejected` holds them all.
    SHOWN = 5

    def __init__(self, rejected: Sequence[JobResult], *, total: int) -> None:
        self.rejected = list(rejected)
        self.total = total
        shown = "; ".join(
            f"job {result.index}: {result.reason}"
            + (f" ({result.reason_code})" if result.reason_code else "")
            for result in self.rejected[: self.SHOWN]
        )
        more = len(self.rejected) - self.SHOWN
        super().__init__(
            f"{len(self.rejected)} of {total} job(s) rejected: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )


_BY_STATUS: dict[int, type[JanusHTTPError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    422: IdempotencyKeyReused,
    429: TooManyRequests,
    503: Unavailable,
}


def error_for(status: int, body: Any, retry_after: float | None = None) -> JanusHTTPError:
    """The JanusHTTPError of an error answer."""
    return _BY_STATUS.get(status, JanusHTTPError)(status, body, retry_after)
