"""What the blocking and the asyncio workers share: their settings, the backoff of an idle or
failing claim loop, the counters, and the one log line per job. No I/O here."""

from __future__ import annotations

import logging
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from janus_client.handlers import Outcome, error_line
from janus_client.models import ClaimedJob

logger = logging.getLogger("janus_client.worker")

# Janus's bounds: a claim leases 1 to 100 jobs for 1 to 3,600 seconds.
MAX_CLAIM_LIMIT = 100
MAX_LEASE_SECONDS = 3600
# A leased job is heartbeated once a third of its lease has passed since the last renewal.
HEARTBEAT_FRACTION = 1 / 3
# An empty queue: poll again after a jittered wait doubling from the first to the last.
IDLE_FIRST_S = 0.05
IDLE_MAX_S = 1.0
# Janus unavailable (503) or unreachable, after the client's own retries: the same, longer.
TROUBLE_FIRST_S = 1.0
TROUBLE_MAX_S = 30.0
# A job given back at shutdown waits this long before a claim hands it out again: not its
# config's retry backoff (the job did not fail), nor a whole lease (as an abandoned one would).
GIVE_BACK_AFTER_S = 1
GIVE_BACK_ERROR = "the worker stopped before the job finished; given back to be tried again"
# After the grace period, reporting what finished (and giving back the rest) may take this
# much longer, when Janus answers slowly or not at all.
FLUSH_TIMEOUT_S = 10.0


class JobView:
    """What a handler reads of its claimed job, in both runtimes: the job itself (`job`), and
    its common fields at hand. JobContext and AsyncJobContext add how the handler learns that
    its outcome will not be taken."""

    job: ClaimedJob

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.job.job_id

    @property
    def payload(self) -> Any:
        """The producer's payload, parsed."""
        return self.job.payload

    @property
    def attempt(self) -> int:
        """Which attempt this is, from 1."""
        return self.job.attempt

    @property
    def dependencies(self) -> dict[str, int]:
        """The tokens the job was charged per dependency (its estimate)."""
        return self.job.dependencies


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker claims, holds and reports jobs; checked when made."""

    concurrency: int = 8
    lease_seconds: int = 60
    # Jobs a claim asks for at most; None: min(concurrency, 100).
    claim_limit: int | None = None
    # Claims in flight at once; None: enough to fill every free slot, claim_limit a claim.
    claimers: int | None = None
    tenant_id: str | None = None
    batch_name: str | None = None
    dependencies: tuple[str, ...] | None = None
    grace_seconds: float = 30.0
    # Completions are sent together, at most this many a call, after waiting at most
    # complete_linger seconds for company while other handlers are still running.
    complete_batch: int = 100
    complete_linger: float = 0.02
    # A log line with the counters every this many seconds; None: none.
    stats_interval: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 1 <= self.lease_seconds <= MAX_LEASE_SECONDS:
            raise ValueError(f"lease_seconds must be 1 to {MAX_LEASE_SECONDS}")
        if self.claim_limit is not None and not 1 <= self.claim_limit <= MAX_CLAIM_LIMIT:
            raise ValueError(f"claim_limit must be 1 to {MAX_CLAIM_LIMIT}")
        if self.claimers is not None and self.claimers < 1:
            raise ValueError("claimers must be at least 1")
        if self.grace_seconds < 0 or self.complete_linger < 0:
            raise ValueError("grace_seconds and complete_linger must be 0 or more")
        if self.complete_batch < 1:
            raise ValueError("complete_batch must be at least 1")
        if self.stats_interval is not None and self.stats_interval <= 0:
            raise ValueError("stats_interval must be more than 0")

    @property
    def jobs_per_claim(self) -> int:
        """Jobs a claim asks for at most."""
        return self.claim_limit or min(self.concurrency, MAX_CLAIM_LIMIT)

    @property
    def claims_in_flight(self) -> int:
        """Claims that may be in flight at once."""
        return self.claimers or math.ceil(self.concurrency / self.jobs_per_claim)

    @property
    def heartbeat_every_s(self) -> float:
        """Seconds between a lease's renewals."""
        return self.lease_seconds * HEARTBEAT_FRACTION

    def claim_arguments(self) -> dict[str, Any]:
        """The keyword arguments of a claim, but its limit."""
        return {
            "lease_seconds": self.lease_seconds,
            "tenant_id": self.tenant_id,
            "batch_name": self.batch_name,
            "dependencies": self.dependencies,
        }


def claimable(settings: WorkerSettings, running: int, reserved: int, unreported: int) -> int:
    """How many jobs a claim may ask for now, with `running` handlers, `reserved` slots asked
    for by the claims in flight and `unreported` outcomes on their way to Janus.

    0 while as many outcomes as slots, twice over, wait to be reported (Janus takes them
    slowly: stop taking more; a single such allowance would stall the claims of quick jobs
    for every batch complete's round trip); 0 while fewer than a claim's worth of slots are
    free and a claim is in flight (quick jobs are claimed for in batches, yet a long
    handler's slot does not stay idle)."""
    if unreported >= 2 * settings.concurrency:
        return 0
    free = settings.concurrency - running - reserved
    if free >= settings.jobs_per_claim:
        return settings.jobs_per_claim
    return free if reserved == 0 else 0


class Backoff:
    """Jittered waits doubling from `first_s` up to `max_s`, back to the first on reset()."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s, self.max_s = first_s, max_s
        self._failures = 0

    def next(self) -> float:
        """The next wait, in seconds: between half and all of the current ceiling."""
        ceiling = min(self.max_s, self.first_s * 2**self._failures)
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Back to the first wait."""
        self._failures = 0


@dataclass
class Counters:
    """What a worker did so far: attempts claimed, completed, failed (and of those throttled by
    an upstream), leases lost, jobs given back at shutdown. Counted under a lock, so that the
    handler threads, the heartbeat and the reporter may all count."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    throttled: int = 0
    lease_lost: int = 0
    given_back: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, count: int = 1) -> None:
        """Count `count` more of `name`."""
        with self._lock:
            setattr(self, name, getattr(self, name) + count)

    def as_dict(self) -> dict[str, int]:
        """Every counter, by name."""
        with self._lock:
            return {name: getattr(self, name) for name in COUNTER_NAMES}

    def line(self) -> str:
        """The counters as key=value pairs."""
        return " ".join(f"{name}={count}" for name, count in self.as_dict().items())


COUNTER_NAMES = ("claimed", "completed", "failed", "throttled", "lease_lost", "given_back")


def log_outcome(
    job: ClaimedJob,
    what: str,
    seconds: float,
    outcome: Outcome | None = None,
    level: int = logging.INFO,
) -> None:
    """The one line a job's attempt logs: `what` became of it (completed, failed, retried,
    lease_lost, given_back), how long its handler ran, and why when it failed."""
    if not logger.isEnabledFor(level):
        return
    text = f"job={job.job_id} attempt={job.attempt} outcome={what} seconds={seconds:.3f}"
    if outcome is not None and outcome.upstream_throttled:
        text += f" throttled={','.join(outcome.upstream_throttled)}"
    if outcome is not None and not outcome.completed:
        if outcome.retry_after_seconds is not None:
            text += f" retry_after={outcome.retry_after_seconds}"
        text += f" error={error_line(outcome)!r}"
    # Straight to the handlers: Logger.log would look up the caller's frame for every job.
    logger.handle(logger.makeRecord(logger.name, level, "", 0, text, (), None))
