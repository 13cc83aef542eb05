"""What a worker's handler may return or raise, and how the worker reports each to Janus.

A handler returns the job's result (a JSON object, or None), or `Done(result, actual_costs=...)`
to say more; it raises `UpstreamThrottled` when an upstream said "slow down", `Fail` to fail
the job with words of its own (and `retry=False` to fail it for good), and anything else to
fail it with the exception's text, tried again while it has attempts left. No I/O here: the
blocking and the asyncio workers send the `Outcome` this builds.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any

from janus_client.models import ClaimedJob, Completion

# What Janus takes: an error of 1 to 10,000 characters, a wait of 1 to 86,400 seconds.
MAX_ERROR_CHARS = 10_000
MAX_RETRY_AFTER_S = 86_400


@dataclass(frozen=True)
class Done:
    """A handler's return value when the job's completion says more than its result: what
    the job really cost per dependency, and which dependencies throttled it on the way."""

    result: Mapping[str, Any] | None = None
    actual_costs: Mapping[str, int] | None = None
    upstream_throttled: Sequence[str] = ()


class Fail(Exception):
    """Raised by a handler: fail this attempt with `error`. With `retry` (the default) the job
    goes back while it has attempts left, after `retry_after` seconds when given (else the
    config's retry backoff); `retry=False` fails it for good."""

    def __init__(
        self,
        error: str,
        *,
        retry: bool = True,
        retry_after: float | str | None = None,
        actual_costs: Mapping[str, int] | None = None,
        upstream_throttled: Sequence[str] = (),
    ) -> None:
        super().__init__(error)
        self.error = error
        self.retry = retry
        self.retry_after_seconds = retry_after_seconds(retry_after) if retry else None
        self.actual_costs = actual_costs
        self.upstream_throttled = tuple(upstream_throttled)


class UpstreamThrottled(Fail):
    """Raised by a handler when `dependency` answered "slow down" (a 429): the job waits
    `retry_after` (the upstream's Retry-After header as it came, seconds or an HTTP date)
    before it is tried again, and Janus hears that the dependency throttled, for its adaptive
    refill. `raise UpstreamThrottled("openai", response.headers.get("Retry-After"))`."""

    def __init__(
        self,
        dependency: str,
        retry_after: float | str | None = None,
        *,
        actual_costs: Mapping[str, int] | None = None,
    ) -> None:
        wait = "" if retry_after is None else f" (Retry-After: {retry_after})"
        super().__init__(
            f"{dependency} throttled the job{wait}",
            retry_after=retry_after,
            actual_costs=actual_costs,
            upstream_throttled=[dependency],
        )
        self.dependency = dependency


def retry_after_seconds(value: float | str | None, now: float | None = None) -> int | None:
    """A Retry-After (seconds, or an HTTP date) as the whole seconds Janus takes, 1 to 86,400;
    None when absent or unreadable (the job then waits the config's retry backoff)."""
    if value is None:
        return None
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(seconds))))


@dataclass(frozen=True)
class Outcome:
    """How one attempt ends, as Janus is told: a completion, or a failure."""

    completed: bool
    result: Mapping[str, Any] | None = None
    error: str = ""
    retry: bool = True
    retry_after_seconds: int | None = None
    actual_costs: Mapping[str, int] | None = None
    upstream_throttled: tuple[str, ...] = field(default=())

    @property
    def throttled(self) -> bool:
        """Whether an upstream throttled the attempt."""
        return bool(self.upstream_throttled)

    def completion(self, job: ClaimedJob) -> Completion:
        """The item of a batch complete that reports this outcome of `job`."""
        return Completion(
            job.job_id,
            job.lease_token,
            None if self.result is None else dict(self.result),
            None if self.actual_costs is None else dict(self.actual_costs),
            list(self.upstream_throttled),
        )

    def without_report(self, why: str) -> Outcome:
        """The same failure without what the handler reported (real costs, throttling),
        which Janus refused, and `why` added to its error."""
        return replace(
            self, error=f"{self.error}\n({why})", actual_costs=None, upstream_throttled=()
        )

    def fail_arguments(self) -> dict[str, Any]:
        """The keyword arguments of JanusClient.fail that report this outcome."""
        return {
            "error": self.error,
            "retry": self.retry,
            "retry_after_seconds": self.retry_after_seconds,
            "actual_costs": None if self.actual_costs is None else dict(self.actual_costs),
            "upstream_throttled": self.upstream_throttled,
        }


def outcome_of_return(value: Any) -> Outcome:
    """The outcome of a handler that returned `value`. A result Janus cannot take (not a JSON
    object) fails the job for good: sent again, the same code would return the same."""
    if value is None:
        return COMPLETED
    done = value if isinstance(value, Done) else Done(value)
    result = done.result
    if result is not None:
        if not isinstance(result, Mapping):
            return _bad_result(f"a {type(result).__name__}, not a JSON object (a dict) or None")
        try:
            json.dumps(result)
        except (TypeError, ValueError) as error:
            return _bad_result(f"a result that is not JSON ({error})")
    return Outcome(
        completed=True,
        result=result,
        actual_costs=done.actual_costs,
        upstream_throttled=tuple(done.upstream_throttled),
    )


# The outcome of a handler that returned None: the commonest, made once.
COMPLETED = Outcome(completed=True)


def _bad_result(what: str) -> Outcome:
    return Outcome(completed=False, error=f"the handler returned {what}", retry=False)


def outcome_of_error(error: BaseException) -> Outcome:
    """The outcome of a handler that raised `error`: a Fail as it says; anything else fails
    the attempt with its traceback (its end, where the reason is), retried by Janus's rules."""
    if isinstance(error, Fail):
        return Outcome(
            completed=False,
            error=error.error[:MAX_ERROR_CHARS] or "failed",
            retry=error.retry,
            retry_after_seconds=error.retry_after_seconds,
            actual_costs=error.actual_costs,
            upstream_throttled=error.upstream_throttled,
        )
    text = "".join(traceback.format_exception(error)).strip()
    return Outcome(completed=False, error=text[-MAX_ERROR_CHARS:] or type(error).__name__)


def error_line(outcome: Outcome) -> str:
    """The last line of a failure's text (the exception and its message), for a log line."""
    lines = outcome.error.strip().splitlines()
    return lines[-1] if lines else ""
