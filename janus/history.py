"""The domain of a user's job history: what GET /dashboard/jobs and `janus jobs` read.

Every job a user submitted, through either source, accepted or rejected, is listed newest
first, in the order the jobs were decided, a page at a time: by job_id, whose first bits are
that moment (time-ordered ids, since migration 0013), then the jobs stored before, whose ids
are random, by (created_at, job_id). A page ends at a `JobPosition`, and the next one starts
strictly below it (keyset pagination), so jobs stored meanwhile neither repeat nor push older
ones out of reach. janus.db implements `JobHistory` (each filter read
through an index of its own), and janus.app wires it. The same jobs, counted per minute
over the last hour (`Activity`, GET /dashboard/activity), are read by an `ActivityReader`.
This module knows nothing of HTTP or of the database driver, and nothing else of Janus
but janus.reasons (the reason codes, which import nothing): the closed sets below restate the
jobs table's CHECKs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple, Protocol, get_args
from uuid import UUID

from janus.reasons import ReasonCode

JobStatus = Literal["Accepted", "Rejected"]
JobSource = Literal["dashboard", "system"]
# An accepted job's place in the queue; a rejected job has none (janus.queue's JobState).
JobState = Literal["queued", "waiting", "running", "completed", "failed", "cancelled", "expired"]

STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
SOURCES: tuple[JobSource, ...] = get_args(JobSource)
STATES: tuple[JobState, ...] = get_args(JobState)

DEFAULT_PAGE = 20
MAX_PAGE = 100
# The most jobs one page of GET /dashboard/jobs reads, matching or not: the driving filter's
# index (janus/db/history.py) yields jobs in order, and the others are checked on those. A
# page whose read stops here before it is full ends there, with a `next`: a filter that few
# of many jobs match costs a few short pages, never a long read.
PAGE_READS_AT_MOST = 1_000

# GET /dashboard/activity: the minutes it counts (the current one and the 59 before it), and
# the most jobs one read counts (the newest of the hour), so a refresh costs the same however
# many jobs a user admits.
ACTIVITY_MINUTES = 60
ACTIVITY_MAX_JOBS = 50_000


@dataclass(frozen=True)
class JobFilter:
    """Which jobs to list; None means any. `since` is inclusive, `until` exclusive: moments
    of decision, as a job's id carries it (created_at for a job of random id)."""

    status: JobStatus | None = None
    state: JobState | None = None
    tenant_id: str | None = None
    batch_name: str | None = None
    source: JobSource | None = None
    since: datetime | None = None
    until: datetime | None = None


class JobPosition(NamedTuple):
    """A place in the newest-first order: the last job of a page; the next starts below it.

    A job of time-ordered id is placed by its job_id alone; one stored before those, whose id
    is random, by (created_at, job_id) among its kind, below every time-ordered one.
    """

    created_at: datetime
    job_id: UUID


@dataclass(frozen=True)
class JobSummary:
    """One job as the listing shows it. A rejected job has no state and 0 attempts."""

    job_id: UUID
    created_at: datetime
    source: JobSource
    batch_name: str
    tenant_id: str
    priority: int
    status: JobStatus
    # '' when accepted.
    reason: str
    # The reason's code; None when accepted (and for a rejection stored before codes were).
    reason_code: ReasonCode | None
    # The Retry-After a rejection was answered with; None when none was given.
    retry_after: int | None
    state: JobState | None
    attempts: int
    # While running: when its lease ends. Once completed, failed or cancelled: when it did.
    lease_expires_at: datetime | None
    finished_at: datetime | None
    # While waiting: when it should start, as admission estimated it when it put the job in
    # its dependencies' line, or else its run_at; None when neither is known (a job a claim
    # put in line) and when not waiting.
    estimated_start: datetime | None

    @property
    def position(self) -> JobPosition:
        """Where a page that ends with this job ends."""
        return JobPosition(self.created_at, self.job_id)


@dataclass(frozen=True)
class JobPage:
    """The jobs of a page, and where the read stopped when it reached its bound of jobs read
    before the page was full: the next page starts below `read_up_to` (None: it did not)."""

    jobs: list[JobSummary]
    read_up_to: JobPosition | None = None


@dataclass(frozen=True)
class JobRecord(JobSummary):
    """One job with everything stored about it. The JSON values are their stored text."""

    # {dependency: cost}, as JSON text.
    dependencies: str
    # The payload exactly as the producer sent it, and the worker's result as it sent it.
    payload: str
    result: str | None
    error: str | None
    # {dependency: tokens} the workers reported, as JSON text; None before any report.
    actual_costs: str | None
    # While waiting: when it may join its dependencies' line (a retry's backoff, a run_at);
    # since when it is in that line, waiting for its tokens; and when it expires if it is not
    # handed out by then. Each None otherwise.
    run_at: datetime | None
    in_line_at: datetime | None
    expires_at: datetime | None
    # The config version that decided it (None for jobs stored before versions were kept).
    config_version: int | None
    # Under a config in shadow mode, what enforcement would have decided (the job itself is
    # accepted); None under enforce mode.
    shadow_status: JobStatus | None
    shadow_reason: str | None
    shadow_reason_code: ReasonCode | None


@dataclass(frozen=True)
class MinuteActivity:
    """The jobs decided in one minute (UTC): accepted, and rejected by reason.

    Both None when the minute ended before the count began (see Activity.counted_since).
    """

    # The minute's first moment.
    minute: datetime
    accepted: int | None
    # {reason: jobs}, in the reasons' name order; only reasons with at least one job.
    rejected: dict[str, int] | None


@dataclass(frozen=True)
class Activity:
    """A user's jobs per minute over the last ACTIVITY_MINUTES minutes, oldest first.

    Only the newest ACTIVITY_MAX_JOBS jobs of the hour are counted. When the hour held more,
    `counted_since` is the moment the count starts from: every job from then on is counted,
    none before. Minutes that ended before it have no counts (None, not 0), and the minute it
    falls in counts only its jobs from `counted_since` on. None when every job was counted.
    """

    minutes: list[MinuteActivity]
    counted_since: datetime | None


class JobHistory(Protocol):
    """Whatever reads users' stored jobs."""

    def jobs(
        self, user_id: UUID, filters: JobFilter, limit: int, after: JobPosition | None
    ) -> JobPage:
        """Up to `limit` of the user's jobs matching `filters`, newest first, below `after`,
        found among at most PAGE_READS_AT_MOST jobs read.

        Raises UnknownUser (janus.admission) when there is no such user.
        """
        ...

    def job(self, user_id: UUID, job_id: UUID) -> JobRecord | None:
        """The user's job `job_id`, or None: another user's job is no more found than a
        job that does not exist. Raises UnknownUser when there is no such user."""
        ...


class ActivityReader(Protocol):
    """Whatever counts users' jobs per minute."""

    def activity(self, user_id: UUID) -> Activity:
        """The user's jobs per minute, accepted and rejected by reason, over the last hour.

        Raises UnknownUser (janus.admission) when there is no such user.
        """
        ...
