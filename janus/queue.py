"""The domain of the queue: what a worker asks for, what it is leased, and how a lease ends.

Admitted jobs are handed to workers by `hand_out_jobs()`, and their leases ended by
`finish_jobs()` (janus/db/sql/), each in one round trip and under row locks; this module names
their inputs and outputs for the resources above and janus.db below, and knows nothing of HTTP
or of the database driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Literal, Protocol, get_args
from uuid import UUID

# Accepted at once: queued (paid) -> running -> completed. Accepted to wait, or retried (a
# failure with attempts left, an expired lease): waiting (until its run_at, then in its
# dependencies' line) -> running, paying its tokens as it is handed out; waiting -> expired
# (not handed out within its max wait). running -> failed (attempts used, or a failure that
# must not be retried); queued or waiting -> cancelled (the user's cancel); failed, expired or
# cancelled -> waiting (the user's retry, due at once). janus.history's JobState names the
# same states.
JobState = Literal["queued", "waiting", "running", "completed", "failed", "cancelled", "expired"]


@dataclass(frozen=True)
class ClaimRequest:
    """What a worker asks for: up to `limit` queued jobs of `user_id`, leased for a while.

    The filters narrow the jobs: of one tenant, of one batch, or (`dependencies`) only jobs
    that call none but the named dependencies.
    """

    user_id: UUID
    limit: int = 1
    lease_seconds: int = 60
    tenant_id: str | None = None
    batch_name: str | None = None
    dependencies: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ClaimedJob:
    """A job leased to a worker until `lease_expires_at`; every lease call names the token."""

    job_id: UUID
    batch_name: str
    tenant_id: str
    priority: int
    dependencies: dict[str, int]
    # The JSON text exactly as the producer sent it, handed on unparsed.
    payload: str
    attempt: int
    lease_token: UUID
    lease_expires_at: datetime


@dataclass(frozen=True)
class Claim:
    """What one claim did: the jobs it leased, in hand-out order, and what had run out, which
    it took back on the way (leases past their end) or ended (waiting jobs past their max
    wait, now expired)."""

    jobs: list[ClaimedJob]
    leases_expired: int = 0
    jobs_expired: int = 0


class LeaseOutcome(str, Enum):
    """How a lease call went for one job."""

    OK = "ok"
    NOT_FOUND = "not_found"  # the user has no such job
    # The token is not the job's current lease: wrong, expired, superseded by a later claim,
    # or the lease already ended. Nothing was changed.
    STALE_LEASE = "stale_lease"


@dataclass(frozen=True)
class Heartbeat:
    """The answer to a heartbeat: the new expiry when `outcome` is OK."""

    outcome: LeaseOutcome
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class Finish:
    """One lease to end: complete the job, or fail it (requeued while `retry` and attempts last).

    `actual_costs` ({dependency: tokens}) is what the job really spent: the difference from
    what admission charged is settled against its buckets. `upstream_throttled` names the
    dependencies that throttled the worker (reported to the adaptive refill).
    """

    job_id: UUID
    lease_token: UUID
    failed: bool = False
    result: str | None = None  # complete: the JSON text as sent
    error: str | None = None  # fail: what went wrong
    retry: bool = True  # fail: whether another attempt may follow
    actual_costs: dict[str, int] | None = None
    upstream_throttled: tuple[str, ...] | None = None
    # fail with retry: the job waits this long before it is queued again (None: queued now).
    retry_after_seconds: int | None = None


@dataclass(frozen=True)
class Finished:
    """How one Finish went: with OK, the job's state now and the attempt that ended."""

    job_id: UUID
    outcome: LeaseOutcome
    state: JobState | None = None
    attempt: int | None = None


class CancelOutcome(str, Enum):
    """How a cancel went for one job."""

    CANCELLED = "cancelled"  # it was queued or waiting, and is now cancelled
    ALREADY_CANCELLED = "already_cancelled"  # nothing changed
    NOT_FOUND = "not_found"  # the user has no such job
    # Running (a worker holds its lease), completed, failed, or rejected: nothing changed.
    NOT_CANCELLABLE = "not_cancellable"


class RetryOutcome(str, Enum):
    """How a retry went for one job."""

    RETRIED = "retried"  # it was failed, expired or cancelled, and now waits again
    NOT_FOUND = "not_found"  # the user has no such job
    # Queued, waiting or running (it has not ended), completed, or rejected: nothing changed.
    NOT_RETRYABLE = "not_retryable"


# The states a job is retried from (retry_jobs.sql), as `janus jobs retry --state` offers them.
RetryableState = Literal["failed", "expired", "cancelled"]
RETRYABLE_STATES: tuple[RetryableState, ...] = get_args(RetryableState)
# The states a job is cancelled from (cancel_jobs.sql).
CANCELLABLE_STATES: tuple[JobState, ...] = ("queued", "waiting")


# The states of a job still in the queue, as GET /metrics's queue gauges count them: a closed
# set, the `state` label's values.
QueuedState = Literal["waiting", "queued", "running"]


@dataclass(frozen=True)
class QueueDepth:
    """The queue of every user together, as of one moment: its jobs in each state, and how
    long ago the oldest claimable job (queued, or waiting with its run_at passed) was
    created; 0 when no job is claimable. With it, the partitions of jobs kept past the
    retention, and why."""

    waiting: int
    queued: int
    running: int
    oldest_claimable_seconds: float
    # The partitions of jobs, and (partition, state) for each partition past the retention
    # still there, by each state of its unfinished jobs ("none": nothing holds it, the next
    # `janus maintain` drops it).
    partitions: int = 0
    held_partitions: tuple[tuple[str, str], ...] = ()

    def jobs_by_state(self) -> tuple[tuple[QueuedState, int], ...]:
        """(state, jobs) for each state of QueuedState, in its order."""
        return (("waiting", self.waiting), ("queued", self.queued), ("running", self.running))


@dataclass(frozen=True)
class Cancellation:
    """How one cancel went, with the job's state after it (None: no such job, or rejected)."""

    job_id: UUID
    outcome: CancelOutcome
    state: JobState | None


@dataclass(frozen=True)
class Retrial:
    """How one retry went, with the job's state after it (None: no such job, or rejected)."""

    job_id: UUID
    outcome: RetryOutcome
    state: JobState | None


class JobQueue(Protocol):
    """Whatever leases admitted jobs to workers: what the queue resources are given."""

    def claim(self, request: ClaimRequest) -> Claim:
        """Lease up to `request.limit` jobs, highest priority then first in line: queued jobs,
        and waiting jobs whose tokens it takes now (none overtaking a waiting job that cannot
        pay yet).

        An empty queue answers at once with no job.
        """
        ...

    def heartbeat(
        self, user_id: UUID, job_id: UUID, lease_token: UUID, lease_seconds: int
    ) -> Heartbeat:
        """Extend the job's lease to `lease_seconds` from now, if `lease_token` is current."""
        ...

    def finish(self, user_id: UUID, items: Sequence[Finish]) -> list[Finished]:
        """End the leases of `items` in one transaction; one Finished each, in order."""
        ...

    def cancel(self, user_id: UUID, job_ids: Sequence[UUID]) -> list[Cancellation]:
        """Cancel the queued or waiting jobs among `job_ids` in one transaction, giving back
        the tokens of those never handed out; one Cancellation each, in order."""
        ...

    def retry(self, user_id: UUID, job_ids: Sequence[UUID]) -> list[Retrial]:
        """Send the failed, expired or cancelled jobs among `job_ids` back to wait, due at
        once, in one transaction; one Retrial each, in order."""
        ...
