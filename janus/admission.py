"""The domain of admission: what is asked, what a decision is, and why there may be none.

The decision itself is made in Postgres by `admit_jobs()` (janus/db/sql/admit_jobs.sql), in one
round trip and under row locks; this module names its inputs and outputs for the layers
above and below it, and knows nothing of HTTP or of the database driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Literal, Protocol, assert_never, get_args
from uuid import UUID

from janus.reasons import ReasonCode

Status = Literal["Accepted", "Rejected"]


class Source(str, Enum):
    """The family of routes a job came through, stored with it."""

    DASHBOARD = "dashboard"
    SYSTEM = "system"


class Mode(Enum):
    """How the jobs of one request are decided."""

    SINGLE = "single"
    PARTIAL = "partial"  # each job on its own; every job stored with its decision
    ATOMIC = "atomic"  # all accepted, or none and nothing stored

    @property
    def all_or_nothing(self) -> bool:
        """Whether one rejected job rejects the whole request."""
        match self:
            case Mode.ATOMIC:
                return True
            case Mode.SINGLE | Mode.PARTIAL:
                return False
            case _:
                assert_never(self)


# The modes a batch route can have; a single job has its own route.
BatchMode = Literal[Mode.PARTIAL, Mode.ATOMIC]


class ConfigMode(str, Enum):
    """Whether a config refuses what does not fit, or only records it."""

    ENFORCE = "enforce"
    # Every job is decided, then accepted; what enforcement would have done is stored with it.
    SHADOW = "shadow"


class WhenLimited(str, Enum):
    """What becomes of a job that only tokens keep out (its dependency's rate limit, the
    priority reserve, its tenant's share)."""

    REJECT = "reject"  # refused now, with a Retry-After
    # Accepted to wait in its dependencies' line; it takes its tokens when it is handed out.
    WAIT = "wait"


class UnknownDependencies(str, Enum):
    """What a config does with a job naming a dependency it sets no budget for."""

    REJECT = "reject"  # the job is rejected: "dependency 'NAME' is not configured"
    ALLOW = "allow"  # that dependency is ignored: it neither refuses the job nor costs it


@dataclass(frozen=True)
class JobRequest:
    """One job as validated by the schemas."""

    tenant_id: str
    priority: int
    dependencies: dict[str, int] = field(default_factory=dict)
    # The JSON text exactly as the client sent it: stored and handed to workers as is.
    payload: str = "{}"
    # Not to be handed out before this moment: the job waits for it, then for its tokens.
    run_at: datetime | None = None


@dataclass(frozen=True)
class IdempotencyKey:
    """The client's key for a request, and a fingerprint of the request it was first used for."""

    key: str
    request_hash: bytes


@dataclass(frozen=True)
class AdmissionRequest:
    """One request to decide, as the resource built it: passed down the layers unchanged."""

    user_id: UUID
    source: Source
    batch_name: str
    jobs: tuple[JobRequest, ...]
    mode: Mode
    idempotency_key: IdempotencyKey | None = None
    # None: the active config's.
    when_limited: WhenLimited | None = None
    max_wait_seconds: int | None = None

    def __post_init__(self) -> None:
        # The schemas already guarantee both; a request that breaks them is a bug upstream.
        if not self.jobs:
            raise ValueError("an admission request needs at least one job")
        if self.mode is Mode.SINGLE and len(self.jobs) != 1:
            raise ValueError(f"a single-job request has one job, not {len(self.jobs)}")


@dataclass(frozen=True)
class Decision:
    """The answer for one job; `retry_after` is set only when waiting would let it in."""

    job_id: UUID
    status: Status
    reason: str
    # The reason's code; None when accepted.
    reason_code: ReasonCode | None = None
    retry_after: int | None = None
    replayed: bool = False  # answered from an earlier request with the same idempotency key
    # In shadow mode (every job accepted): what enforcement would have decided, else None.
    shadow_status: Status | None = None
    shadow_reason: str | None = None
    shadow_reason_code: ReasonCode | None = None
    # A quote's only: when a job rejected for tokens would fit if nothing else took any.
    fits_at: datetime | None = None
    # Accepted to wait (in its dependencies' line, or for its run_at) rather than at once,
    # and when it should start if nothing new comes before it.
    waiting: bool = False
    starts_at: datetime | None = None

    @property
    def accepted(self) -> bool:
        """Whether the job was admitted."""
        return self.status == "Accepted"


@dataclass(frozen=True)
class Budget:
    """One bucket a request named, as its decision left it, in whole numbers.

    Rounded so that a client is never told of more tokens, or of a token sooner, than there
    will be: what the RateLimit headers of the answer tell.
    """

    dependency: str
    quota: int  # the capacity
    # Seconds a full refill takes at the configured refill; None when it never refills.
    window: int | None
    remaining: int  # whole tokens left
    # Seconds until the next whole token at the effective refill: 0 when full, None when the
    # bucket is not full and never refills.
    reset: int | None


@dataclass(frozen=True)
class Admission:
    """What deciding a request gives: its jobs' decisions and the buckets they left."""

    decisions: list[Decision]
    # In dependency-name order; empty for a replay (it decides nothing) and for a request that
    # named no bucket.
    budgets: tuple[Budget, ...] = ()


class Admitter(Protocol):
    """Whatever decides and stores requests: what the job resources are given."""

    def admit(self, request: AdmissionRequest) -> Admission:
        """The decisions for `request`'s jobs, in request order, and the budgets they left; a
        NoDecision if there are none.

        With an idempotency key, a repeat of an accepted request returns the first decisions,
        marked `replayed`, and takes nothing.
        """
        ...

    def quote(self, request: AdmissionRequest) -> Admission:
        """What `admit` would answer for `request` now, with no side effect at all: nothing
        stored, no token taken, no idempotency key remembered, no lock held after the call.
        Rejected jobs carry `fits_at`."""
        ...


class GroupAdmitter(Admitter, Protocol):
    """An Admitter that can also decide a group of one user's requests together."""

    def admit_group(
        self, requests: Sequence[AdmissionRequest], *, connection_timeout_s: float
    ) -> list[Admission | NoDecision]:
        """Decide `requests`, single jobs and partial batches of one user, in this order and
        together: each request's Admission, or the NoDecision that refused it, exactly as
        `admit` would have answered it alone at its place in the order. A fault of the group
        is raised, and then none of them was stored; so is a wait for a database connection
        longer than `connection_timeout_s`."""
        ...


class NoDecision(Exception):
    """The request could not be decided at all."""


class UnknownUser(NoDecision):
    """X-User-ID names no Janus user."""


class NoActiveConfig(NoDecision):
    """The user has no active config, so no budget to admit against."""


class ServicePaused(NoDecision):
    """The user's active config is paused."""


class IdempotencyKeyInUse(NoDecision):
    """A request with this idempotency key is still being decided."""


class IdempotencyKeyReused(NoDecision):
    """This idempotency key was used for a different request."""


# Why the database could not decide: a closed set, so it can label a metric.
# pool_timeout: no pooled connection within JANUS_POOL_TIMEOUT_MS (all busy, or none can be
# opened); connection: the connection failed, broke or was refused; statement_timeout and
# lock_timeout: the server's own; conflict: a serialization conflict outlived its retries.
UnavailableCause = Literal[
    "pool_timeout", "connection", "statement_timeout", "lock_timeout", "conflict"
]
UNAVAILABLE_CAUSES: tuple[UnavailableCause, ...] = get_args(UnavailableCause)


class UserBusy(NoDecision):
    """The user holds its whole share of this worker's connections, and none came free in
    time: its other requests are still under way. Another user's are not held up by them."""

    def __init__(self, per_user: int, connections: int) -> None:
        super().__init__(
            f"too many requests of this user at once: each worker gives a user at most"
            f" {per_user} of its {connections} database connections; retry shortly"
        )


class ReadsBusy(UserBusy):
    """Another read of the user's jobs or activity is under way, and it did not
    end in time: a user's reads of those run one at a time across the service."""

    def __init__(self) -> None:
        NoDecision.__init__(
            self,
            "too many reads of this user at once: a user's jobs and activity are read"
            " one request at a time; retry shortly",
        )


class DatabaseUnavailable(NoDecision):
    """Postgres could not be reached, or a conflict persisted after retries; try again later.

    `detail` is the driver's own account (refused, timed out, bad password): an operator's
    clue, never a client's.
    """

    def __init__(
        self,
        message: str,
        retry_after: int = 1,
        detail: str | None = None,
        cause: UnavailableCause = "connection",
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.detail = detail
        self.cause: UnavailableCause = cause


class DatabaseRefused(NoDecision):
    """Postgres refused a statement for no reason of the domain: a bug, or a schema that is not
    the one Janus expects. The message is the server's own, without the SQL."""


class SchemaMissing(DatabaseRefused):
    """A table or function Janus needs does not exist: the migrations have not been run."""
