"""What the client sends (a Job to submit, a Completion) and what a claim hands a worker,
as typed values rather than raw JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# The route family a job goes through; Janus records it as the job's `source`.
Source = Literal["system", "dashboard"]
# What becomes of a job that only tokens keep out: refused now, or accepted to wait in line.
WhenLimited = Literal["reject", "wait"]


def moment(text: str | None) -> datetime | None:
    """An ISO 8601 moment of an answer, or None."""
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class Job:
    """A job to submit: its tenant, priority (1 to 10) and estimated cost per dependency,
    the payload a worker gets, and optionally a moment (timezone-aware) before which no worker
    gets it. The batch name, `when_limited` and `max_wait_seconds` belong to the request
    (docs/api.md), so they are arguments of submit(), submit_batch() and quote()."""

    tenant_id: str
    priority: int
    dependencies: Mapping[str, int] = field(default_factory=dict)
    payload: Mapping[str, Any] | None = None
    run_at: datetime | None = None

    def body(self) -> dict[str, Any]:
        """The job's fields as a request body holds them."""
        item: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "priority": self.priority,
            "dependencies": dict(self.dependencies),
        }
        if self.payload is not None:
            item["payload"] = self.payload
        if self.run_at is not None:
            item["run_at"] = self.run_at.isoformat()
        return item


@dataclass(frozen=True)
class ClaimedJob:
    """A job a claim leased to this worker: its `lease_token` until `lease_expires_at`."""

    job_id: str
    batch_name: str
    tenant_id: str
    priority: int
    dependencies: dict[str, int]
    attempt: int
    lease_token: str
    lease_expires_at: datetime
    payload: Any

    @classmethod
    def from_answer(cls, item: dict[str, Any]) -> ClaimedJob:
        """One item of a claim's `jobs`."""
        expires = moment(item["lease_expires_at"])
        assert expires is not None
        return cls(
            job_id=item["job_id"],
            batch_name=item["batch_name"],
            tenant_id=item["tenant_id"],
            priority=item["priority"],
            dependencies=dict(item["dependencies"]),
            attempt=item["attempt"],
            lease_token=item["lease_token"],
            lease_expires_at=expires,
            payload=item.get("payload"),
        )


@dataclass(frozen=True)
class Completion:
    """One job of a batch complete: its lease, and what the worker reports."""

    job_id: str
    lease_token: str
    result: Any = None
    actual_costs: dict[str, int] | None = None
    upstream_throttled: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The item as POST /system/jobs/complete takes it."""
        item: dict[str, Any] = {"job_id": self.job_id, "lease_token": self.lease_token}
        if self.result is not None:
            item["result"] = self.result
        if self.actual_costs is not None:
            item["actual_costs"] = self.actual_costs
        if self.upstream_throttled:
            item["upstream_throttled"] = list(self.upstream_throttled)
        return item
