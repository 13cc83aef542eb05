"""The domain of a user's queue as the dashboard shows it (GET /dashboard/queue): how many
jobs are in each state, what the waiting, queued and running jobs cost per dependency, and
how long each bucket takes, at its refill of now, to hold what the waiting and queued jobs
cost beyond its tokens.

The numbers are the database's (queue_states and queue_dependencies in queries.sql, read in
one snapshot): janus.db implements `QueueReader`, and janus.app wires it. This module knows
nothing of HTTP, of the database driver, or of the rest of Janus.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol
from uuid import UUID

# The ended states are counted over the jobs that finished in this window, up to now...
ENDED_WINDOW_SECONDS = 24 * 60 * 60
# ...and at most this many of them, the newest; each state's costs by dependency are read
# from at most this many of its jobs, the next in line. A read then costs the same however
# many jobs a user has (about 100 ms with 100,000 waiting, 20,000 queued and 200,000
# finished in the window, where reading them all takes 600 ms).
QUEUE_MAX_JOBS = 10_000


@dataclass(frozen=True)
class StateCounts:
    """The user's jobs in each state of the queue.

    Waiting, queued and running: every such job. Completed, failed and cancelled: those that
    finished since `QueueView.ended_since`. Expired: 0 until the state exists (issue 24).
    """

    waiting: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    expired: int


@dataclass(frozen=True)
class DependencyQueue:
    """The waiting, queued and running jobs that name one dependency, what they cost in its
    tokens, and the user's bucket of that name as of now (None without a bucket)."""

    dependency: str
    waiting: int
    queued: int
    running: int
    waiting_tokens: int
    queued_tokens: int
    running_tokens: int
    tokens: Decimal | None
    effective_refill_per_second: Decimal | None
    # Seconds until the bucket, at its effective refill of now, has gained what the waiting
    # and queued jobs cost beyond its tokens: 0 when they cost nothing or its tokens cover
    # them; None when more is needed and it never refills, or there is no bucket.
    drain_seconds: Decimal | None


@dataclass(frozen=True)
class QueueView:
    """A user's queue as one read of the database saw it."""

    states: StateCounts
    # Since when completed, failed and cancelled jobs are counted: ENDED_WINDOW_SECONDS ago,
    # or later when more than QUEUE_MAX_JOBS finished since (the newest are counted).
    ended_since: datetime
    # The age of the oldest waiting and of the oldest queued job (created_at); None when none.
    oldest_waiting_seconds: Decimal | None
    oldest_queued_seconds: Decimal | None
    # Every dependency a waiting, queued or running job names, and every bucket, by name.
    dependencies: list[DependencyQueue]
    # Whether a state held more than QUEUE_MAX_JOBS jobs: the dependencies' numbers then
    # count the QUEUE_MAX_JOBS next in line of it, and are lower bounds.
    truncated: bool

    @property
    def drain_seconds(self) -> Decimal | None:
        """The longest drain of the dependencies that have a bucket (a dependency without
        one waits for none): None when one of them never drains, 0 when nothing waits."""
        bucketed = [one.drain_seconds for one in self.dependencies if one.tokens is not None]
        if None in bucketed:
            return None
        return max((seconds for seconds in bucketed if seconds is not None), default=Decimal(0))


class QueueReader(Protocol):
    """Whatever reads users' queues."""

    def queue(self, user_id: UUID) -> QueueView:
        """The user's jobs by state and by dependency, and how long the buckets take.

        Raises UnknownUser (janus.admission) when there is no such user.
        """
        ...
