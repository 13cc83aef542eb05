"""The examples of the OpenAPI document: bodies and answers as docs/api.md shows them.

SEED_JOB is the seed API's own example job, the one copy Janus has of it: the document's
examples, `janus demo`'s curl line and the dashboard's form (which reads it from
GET /openapi.json) all show it.
"""

from __future__ import annotations

from typing import Any

from janus.history import ACTIVITY_MINUTES
from janus.schemas.requests import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_DAYS

JOB_ID = "01a234ea-c508-7a53-9d0a-6a8f0f1f4b7e"
OTHER_JOB_ID = "01a234ea-c50f-7c55-8f7e-2f3f3c4d5e6f"
CLAIMED_JOB_ID = "01a23495-c961-7f0e-9d2a-2b1f1a6f0c11"
LEASE_TOKEN = "0f7d6b0e-5a44-4a43-a0c6-3f3e2f0f9a51"
LEASE_EXPIRES_AT = "2026-12-02T02:30:00.123456+00:00"
ACTIVATED_AT = "2026-12-02T03:04:05.123456+00:00"

SEED_JOB: dict[str, Any] = {
    "batch_name": "my-batch",
    "tenant_id": "tenant-abc",
    "priority": 8,
    "dependencies": {"openai": 2, "stripe": 1},
    "payload": {"custom_key": "custom_value"},
}
SEED_BATCH: dict[str, Any] = {
    "batch_name": "my-batch",
    "jobs": [
        {"tenant_id": "tenant-abc", "priority": 8, "dependencies": {"openai": 1}},
        {"tenant_id": "tenant-xyz", "priority": 3, "dependencies": {"stripe": 5}},
    ],
}

ACCEPTED = {"job_id": JOB_ID, "status": "Accepted", "reason": ""}
WAIT_JOB: dict[str, Any] = {
    **SEED_JOB,
    "when_limited": "wait",
    "max_wait_seconds": 600,
}
WAITING = {
    "job_id": JOB_ID,
    "status": "Accepted",
    "reason": "",
    "state": "waiting",
    "estimated_start": "2026-12-07T05:00:04.250000+00:00",
}
RATE_LIMITED = {
    "job_id": OTHER_JOB_ID,
    "status": "Rejected",
    "reason": "dependency 'openai' rate limit exceeded",
}


def _counted(*results: dict[str, Any]) -> dict[str, Any]:
    """`results` with their counts, as a partial batch's answer and a quote's give them."""
    accepted = sum(result["status"] == "Accepted" for result in results)
    return {
        "total": len(results),
        "accepted": accepted,
        "rejected": len(results) - accepted,
        "results": list(results),
    }


_ACCEPTED_RESULT = {**ACCEPTED, "reason_code": None, "retry_after": None}
SEED_PARTIAL_ANSWER = _counted(
    _ACCEPTED_RESULT,
    {
        "job_id": OTHER_JOB_ID,
        "status": "Rejected",
        "reason": "dependency 'stripe' cost 5 exceeds capacity 4",
        "reason_code": "over_capacity",
        "retry_after": None,
    },
)
# A partial batch's job rejected for tokens: when it could be sent again.
RATE_LIMITED_PARTIAL_ANSWER = _counted(
    _ACCEPTED_RESULT, {**RATE_LIMITED, "reason_code": "rate_limit", "retry_after": 4}
)
ATOMIC_ACCEPTED = [ACCEPTED, {**ACCEPTED, "job_id": OTHER_JOB_ID}]
ATOMIC_REJECTED = [
    {**ACCEPTED, "status": "Rejected", "reason": "priority too low"},
    {"job_id": OTHER_JOB_ID, "status": "Rejected", "reason": "batch rejected atomically"},
]


def _quoted(
    status: str,
    reason: tuple[str, str] | None = None,
    retry_after: int | None = None,
    fits_at: str | None = None,
    shadow: tuple[str, str, str | None] | None = None,
) -> dict[str, Any]:
    """One job of a quote's answer: `reason` and its code, `shadow` enforcement's decision."""
    reason_text, code = reason or ("", None)
    shadow_status, shadow_reason, shadow_code = shadow or (None, None, None)
    return {
        "status": status,
        "reason": reason_text,
        "reason_code": code,
        "retry_after": retry_after,
        "fits_at": fits_at,
        "shadow_status": shadow_status,
        "shadow_reason": shadow_reason,
        "shadow_reason_code": shadow_code,
    }


def _quote(kind: str, status: int, *results: dict[str, Any]) -> dict[str, Any]:
    """A quote's answer of `results`, never replayed."""
    return {"kind": kind, "status": status, "replayed": False, **_counted(*results)}


QUOTES = {
    "single_accepted": _quote("single", 202, _quoted("Accepted")),
    "single_rate_limited": _quote(
        "single",
        429,
        _quoted(
            "Rejected",
            ("dependency 'openai' rate limit exceeded", "rate_limit"),
            retry_after=3,
            fits_at="2026-12-02T03:04:07.623456+00:00",
        ),
    ),
    "atomic_rejected": _quote(
        "atomic",
        207,
        _quoted("Rejected", ("batch rejected atomically", "atomic_batch")),
        _quoted(
            "Rejected",
            ("tenant 'tenant-xyz' exceeded its share of dependency 'stripe'", "tenant_share"),
        ),
    ),
    "partial_shadow": _quote(
        "partial",
        200,
        _quoted("Accepted", shadow=("Accepted", "", None)),
        _quoted("Accepted", shadow=("Rejected", "priority too low", "min_priority")),
    ),
}

# The queue
CLAIMED = {
    "jobs": [
        {
            "job_id": CLAIMED_JOB_ID,
            "batch_name": SEED_JOB["batch_name"],
            "tenant_id": SEED_JOB["tenant_id"],
            "priority": SEED_JOB["priority"],
            "dependencies": SEED_JOB["dependencies"],
            "attempt": 1,
            "lease_token": LEASE_TOKEN,
            "lease_expires_at": LEASE_EXPIRES_AT,
            "payload": SEED_JOB["payload"],
        }
    ]
}
COMPLETED_MANY = {
    "results": [
        {"job_id": CLAIMED_JOB_ID, "outcome": "completed"},
        {"job_id": "01a23495-c984-7a8e-b1f0-6d5c4b3a2e10", "outcome": "stale_lease"},
        {"job_id": "01a23495-6a82-7a7b-8c9d-0e1f2a3b4c5d", "outcome": "not_found"},
    ]
}
# A leased job, as a lease call names it.
LEASE = {"job_id": CLAIMED_JOB_ID, "lease_token": LEASE_TOKEN}
HEARTBEAT = {"job_id": CLAIMED_JOB_ID, "lease_expires_at": LEASE_EXPIRES_AT}
COMPLETION = {
    "lease_token": LEASE_TOKEN,
    "result": {"answer": 42},
    "actual_costs": {"openai": 1},
    "upstream_throttled": ["openai"],
}
FAILURE = {"lease_token": LEASE_TOKEN, "error": "upstream timed out", "retry": True}
# An upstream's 429 with Retry-After: 30, passed on.
THROTTLED_FAILURE = {
    "lease_token": LEASE_TOKEN,
    "error": "openai answered 429",
    "retry": True,
    "retry_after_seconds": 30,
    "upstream_throttled": ["openai"],
}


def finished(state: str) -> dict[str, Any]:
    """A lease call's answer: the job is `state` after its first attempt."""
    return {"job_id": CLAIMED_JOB_ID, "state": state, "attempt": 1}


# Configs
CONFIG = {
    "paused": False,
    "min_priority": 1,
    "priority_reserve": 0.2,
    "unknown_dependencies": "reject",
    "max_attempts": DEFAULT_MAX_ATTEMPTS,
    "retention_days": DEFAULT_RETENTION_DAYS,
    "retry_backoff": {"base_seconds": 2, "max_seconds": 300},
    "when_limited": "wait",
    "max_wait_seconds": 600,
    "mode": "enforce",
    "tenant_share": 0.5,
    "tenant_overrides": {"tenant-abc": 1},
    "dependencies": {
        "openai": {
            "capacity": 100,
            "refill_per_second": 10,
            "adaptive": {"decrease": 0.5, "floor": 0.1, "recovery_per_minute": 0.05},
        },
        "stripe": {"capacity": 20, "refill_per_second": 1},
    },
}
STORED_CONFIG = {
    **CONFIG,
    "retry_backoff": {"base_seconds": 0, "max_seconds": 0},
    "when_limited": "reject",
    "max_wait_seconds": 3600,
    "tenant_share": 1,
    "tenant_overrides": {},
    "dependencies": {"openai": {"capacity": 1000, "refill_per_second": 10}},
}
ACTIVE_CONFIG = {"version": 3, "activated_at": ACTIVATED_AT, **STORED_CONFIG}
VERSIONS = {
    "versions": [
        {
            "version": 3,
            "activated_at": ACTIVATED_AT,
            "created_at": ACTIVATED_AT,
            "is_active": True,
            "config": STORED_CONFIG,
        }
    ],
    "next": "3",
}
PAUSE_CHANGES = {
    "changes": [
        {"paused": False, "changed_at": ACTIVATED_AT, "config_version": None},
        {"paused": True, "changed_at": LEASE_EXPIRES_AT, "config_version": 4},
    ],
    "next": None,
}

# The dashboard's reads
JOB_SUMMARY = {
    "job_id": JOB_ID,
    "created_at": ACTIVATED_AT,
    "source": "dashboard",
    "batch_name": SEED_JOB["batch_name"],
    "tenant_id": SEED_JOB["tenant_id"],
    "priority": SEED_JOB["priority"],
    "status": "Accepted",
    "reason": "",
    "reason_code": None,
    "retry_after": None,
    "state": "queued",
    "attempts": 0,
    "estimated_start": None,
}
# One job as GET /dashboard/jobs/{job_id} shows it, queued for workers.
QUEUED_JOB = {
    **JOB_SUMMARY,
    "dependencies": SEED_JOB["dependencies"],
    "payload": SEED_JOB["payload"],
    "lease_expires_at": None,
    "finished_at": None,
    "actual_costs": None,
    "run_at": None,
    "in_line_at": None,
    "expires_at": None,
    "result": None,
    "error": None,
    "config_version": 3,
    "shadow_status": None,
    "shadow_reason": None,
    "shadow_reason_code": None,
}
SHADOW_JOB = {
    **QUEUED_JOB,
    "config_version": 4,
    "shadow_status": "Rejected",
    "shadow_reason": RATE_LIMITED["reason"],
    "shadow_reason_code": "rate_limit",
}
QUOTAS = {
    "mode": "enforce",
    "quotas": [
        {
            "dependency": "openai",
            "capacity": 100,
            "refill_per_second": 10,
            "effective_refill_per_second": 10,
            "adaptive": False,
            "tokens": 42.5,
            "full_in_seconds": 5.75,
        }
    ],
    "tenant_quotas": [
        {
            "dependency": "openai",
            "tenant_id": "tenant-abc",
            "share": 0.25,
            "capacity": 25,
            "refill_per_second": 2.5,
            "tokens": 3,
            "full_in_seconds": 8.8,
        }
    ],
}
NO_QUOTAS: dict[str, Any] = {"mode": None, "quotas": [], "tenant_quotas": []}


def activity(counted_from: int | None) -> dict[str, Any]:
    """An answer of GET /dashboard/activity ending at 04:02 UTC, with jobs in its last three
    minutes; counted only from the minute `counted_from` (an index), when given."""
    minutes = []
    for index in range(ACTIVITY_MINUTES):
        moment = ACTIVITY_MINUTES - 1 - index
        hour, minute = divmod(4 * 60 + 2 - moment, 60)
        counted = counted_from is None or index >= counted_from
        busy = moment < 3 and counted
        minutes.append(
            {
                "minute": f"2026-12-02T{hour:02}:{minute:02}:00+00:00",
                "accepted": (12 - 4 * moment if busy else 0) if counted else None,
                "rejected": (
                    {RATE_LIMITED["reason"]: 3 - moment} if busy else ({} if counted else None)
                ),
            }
        )
    since = None
    if counted_from is not None:
        hour, minute = divmod(4 * 60 + 2 - (ACTIVITY_MINUTES - 1 - counted_from), 60)
        since = f"2026-12-02T{hour:02}:{minute:02}:31.402117+00:00"
    return {"minutes": minutes, "counted_since": since}


# GET /dashboard/queue: openai's bucket covers what waits in 6.5 s; stripe's never refills.
QUEUE: dict[str, Any] = {
    "states": {
        "waiting": 2,
        "queued": 40,
        "running": 3,
        "completed": 1250,
        "failed": 4,
        "cancelled": 1,
        "expired": 0,
    },
    "ended_since": "2026-12-01T04:02:00.123456+00:00",
    "oldest_waiting_seconds": 94.301,
    "oldest_queued_seconds": 12.5,
    "dependencies": [
        {
            "dependency": "openai",
            "waiting": 2,
            "queued": 40,
            "running": 3,
            "waiting_tokens": 4,
            "queued_tokens": 80,
            "running_tokens": 6,
            "tokens": 19,
            "effective_refill_per_second": 10,
            "drain_seconds": 6.5,
        },
        {
            "dependency": "stripe",
            "waiting": 0,
            "queued": 40,
            "running": 3,
            "waiting_tokens": 0,
            "queued_tokens": 40,
            "running_tokens": 3,
            "tokens": 2,
            "effective_refill_per_second": 0,
            "drain_seconds": None,
        },
    ],
    "drain_seconds": None,
    "truncated": False,
}
