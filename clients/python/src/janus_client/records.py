"""What the admin calls answer, as typed values: the config and its versions, the pause
state and its history, the job history and one job, the buckets. Field names are the API's
(docs/api.md); moments are timezone-aware datetimes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from janus_client.models import moment

R = TypeVar("R")

# The answers' fields that hold a moment (ISO 8601 text), read as datetimes.
MOMENTS = frozenset(
    {
        "activated_at",
        "changed_at",
        "created_at",
        "estimated_start",
        "expires_at",
        "finished_at",
        "in_line_at",
        "lease_expires_at",
        "run_at",
        "since",
    }
)


def from_answer(cls: type[R], item: dict[str, Any]) -> R:
    """A record of `cls` (a dataclass) from an answer's object: its fields by name, moments
    parsed; whatever else the answer holds is left out, so a field a newer Janus adds
    breaks nothing."""
    values = {
        field.name: moment(item.get(field.name)) if field.name in MOMENTS else item.get(field.name)
        for field in dataclasses.fields(cls)  # type: ignore[arg-type]
    }
    return cls(**values)


@dataclass(frozen=True)
class Page(Generic[R]):
    """One page of a listing, and the cursor of the next (None on the last). A page may be
    short, even empty, and still have a next: the iterators follow it until it is None."""

    items: list[R]
    next: str | None


@dataclass(frozen=True)
class ActiveConfig:
    """The config in force: its version (and `etag`, to send as put_config's if_match),
    whether the user is paused, and its rules as PUT /dashboard/config takes them."""

    version: int
    etag: str
    activated_at: datetime | None
    paused: bool
    # The rules without version, activated_at and paused (put_config of them keeps the pause).
    config: dict[str, Any]

    @classmethod
    def from_answer(cls, body: dict[str, Any], etag: str) -> ActiveConfig:
        """The answer of GET or PUT /dashboard/config (and of an activation), with its ETag."""
        rules = {k: v for k, v in body.items() if k not in ("version", "activated_at", "paused")}
        return cls(body["version"], etag, moment(body["activated_at"]), body["paused"], rules)


@dataclass(frozen=True)
class ConfigVersion:
    """One version of the user's config, as it was written (`paused` only if it set it)."""

    version: int
    activated_at: datetime | None
    created_at: datetime
    is_active: bool
    config: dict[str, Any]


@dataclass(frozen=True)
class PauseState:
    """Whether the user is paused, and since when (None: never was)."""

    paused: bool
    since: datetime | None


@dataclass(frozen=True)
class PauseChange:
    """One pause or resume; `config_version` names the version that made it, if one did."""

    paused: bool
    changed_at: datetime
    config_version: int | None


@dataclass(frozen=True)
class JobRecord:
    """A job of the user's history: its admission (`status` "Accepted" or "Rejected", with
    reason and code) and, when accepted, its `state` in the queue."""

    job_id: str
    created_at: datetime
    source: str
    batch_name: str
    tenant_id: str
    priority: int
    status: str
    reason: str
    reason_code: str | None
    retry_after: int | None
    state: str | None
    attempts: int
    estimated_start: datetime | None


@dataclass(frozen=True)
class JobDetail(JobRecord):
    """Everything stored about one job: its history record, what it was submitted with,
    and what its workers reported."""

    dependencies: dict[str, int]
    payload: Any
    lease_expires_at: datetime | None
    finished_at: datetime | None
    actual_costs: dict[str, int] | None
    run_at: datetime | None
    in_line_at: datetime | None
    expires_at: datetime | None
    result: Any
    error: str | None
    config_version: int | None
    shadow_status: str | None
    shadow_reason: str | None
    shadow_reason_code: str | None


@dataclass(frozen=True)
class Bucket:
    """A token bucket of the user as of now."""

    dependency: str
    capacity: int
    refill_per_second: float
    effective_refill_per_second: float
    adaptive: bool
    tokens: float
    # Seconds until full (0: full; None: not full and never refills).
    full_in_seconds: float | None


@dataclass(frozen=True)
class TenantBucket:
    """A tenant's own bucket of a dependency, under a tenant share below 1."""

    dependency: str
    tenant_id: str
    share: float
    capacity: float
    refill_per_second: float
    tokens: float
    full_in_seconds: float | None


@dataclass(frozen=True)
class Quotas:
    """The active config's mode (None without one), every bucket of the user, and the
    tenant buckets closest to their limit."""

    mode: str | None
    buckets: list[Bucket]
    tenant_buckets: list[TenantBucket]

    @classmethod
    def from_answer(cls, body: dict[str, Any]) -> Quotas:
        """The answer of GET /dashboard/quotas."""
        return cls(
            body["mode"],
            [from_answer(Bucket, item) for item in body["quotas"]],
            [from_answer(TenantBucket, item) for item in body["tenant_quotas"]],
        )
