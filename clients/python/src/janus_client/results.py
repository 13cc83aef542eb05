"""What a submit, a batch and a quote answer, as typed values: each job accepted, accepted to
wait, or rejected (with its reason code and when to try again). A batch's answer is 200 or
207 even when jobs were refused, so BatchResult puts them in front: `.rejected`,
`.all_accepted`, `raise_for_rejections()`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Generic, TypeVar

from janus_client.errors import JobsRejected


class JobStatus(str, Enum):
    """A job's decision: accepted (queued for a worker now), accepted to wait in its
    dependencies' line (`when_limited="wait"`, or a `run_at`), or rejected."""

    ACCEPTED = "accepted"
    WAITING = "waiting"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Decision:
    """What Janus decided for one job of a request, `index` its place in the request."""

    index: int
    status: JobStatus
    # The rejection's words, for people ("" when accepted).
    reason: str
    # The rejection's code, for programs (docs/api.md, "Reason codes"): "rate_limit",
    # "over_capacity", ...; None when accepted, and for the jobs of an atomic batch's 207,
    # whose answer carries only the code of the job that sank it (BatchResult.reason_code).
    reason_code: str | None
    # Seconds after which the job would fit if nothing else took tokens; None when waiting
    # cannot help (or the job was accepted).
    retry_after: int | None
    # For a job accepted to wait: when it should be handed to a worker (None: no rate tells).
    estimated_start: datetime | None

    @property
    def accepted(self) -> bool:
        """Whether the job was accepted, to run now or to wait."""
        return self.status is not JobStatus.REJECTED

    @property
    def rejected(self) -> bool:
        """Whether the job was refused: it is not stored for any worker."""
        return self.status is JobStatus.REJECTED


@dataclass(frozen=True)
class JobResult(Decision):
    """One submitted job's decision and id. A rejection is a result, not an exception: read
    `retry_after`, or call raise_for_rejection()."""

    job_id: str
    # Whether the answer is the replay of an earlier request with the same Idempotency-Key.
    replayed: bool

    def raise_for_rejection(self) -> JobResult:
        """JobsRejected when the job was rejected; else the result itself."""
        if self.rejected:
            raise JobsRejected([self], total=1)
        return self


@dataclass(frozen=True)
class QuotedJob(Decision):
    """What the real request would decide for one job now (nothing is stored: no job id)."""

    # For a job rejected for tokens: the moment it would fit if nothing else took any.
    fits_at: datetime | None
    # Under a config in shadow mode, what enforcement would decide ("Accepted"/"Rejected").
    shadow_status: str | None
    shadow_reason: str | None
    shadow_reason_code: str | None


D = TypeVar("D", bound=Decision)


@dataclass(frozen=True)
class _Decisions(Generic[D]):
    """The decisions of a request's jobs, in request order."""

    results: tuple[D, ...]

    @property
    def accepted(self) -> list[D]:
        """The jobs accepted (to run now or to wait)."""
        return [result for result in self.results if result.accepted]

    @property
    def rejected(self) -> list[D]:
        """The jobs refused."""
        return [result for result in self.results if result.rejected]

    @property
    def all_accepted(self) -> bool:
        """Whether no job was refused."""
        return not self.rejected

    def __iter__(self) -> Iterator[D]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> D:
        return self.results[index]


@dataclass(frozen=True)
class BatchResult(_Decisions[JobResult]):
    """A batch's decisions. A partial batch may accept some jobs and refuse others; an atomic
    one accepts all or none, and its refused jobs were not stored."""

    atomic: bool
    # An atomic batch refused: the code of the job that sank it (the first, in request
    # order, refused for a reason of its own; the others went down with it).
    reason_code: str | None
    replayed: bool

    def raise_for_rejections(self) -> BatchResult:
        """JobsRejected naming every refused job, when any was; else the result itself."""
        rejected = self.rejected
        if rejected:
            raise JobsRejected(rejected, total=len(self.results))
        return self


@dataclass(frozen=True)
class Quote(_Decisions[QuotedJob]):
    """What a request would be answered now, with no side effect (POST .../jobs/quote)."""

    # "single", "partial" or "atomic": the route quoted.
    kind: str
    # The status code the real request would get (202/429, 200, 202/207).
    status: int
    # Whether the Idempotency-Key sent is remembered: the results are then its decisions.
    replayed: bool
