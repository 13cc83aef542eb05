"""Every route and method of the API as the OpenAPI document describes it: the one table.

A route added to janus/app.py gets its entry in `operations()` below: method, path, summary,
what it answers (status, description, schema, examples), which errors it can answer, its
body and headers. tests/test_openapi.py fails while the app and this table disagree.

What every operation shares is added by janus/openapi/document.py, not repeated here:
X-Request-ID on every answer, 408 on every operation (a request may arrive too slowly), the
X-User-ID and service-token requirements with their 401, and the error bodies of
`ERROR_ANSWERS`. The examples are docs/api.md's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from janus.admission import Source
from janus.configs import MAX_VERSION
from janus.dashboard import FILES as DASHBOARD_FILES
from janus.history import ACTIVITY_MAX_JOBS, ACTIVITY_MINUTES
from janus.openapi.answers import (
    ActiveConfigSchema,
    ActivityAnswerSchema,
    ClaimAnswerSchema,
    CompleteManyAnswerSchema,
    ConfigVersionsAnswerSchema,
    DecisionSchema,
    DocumentSchema,
    FinishedSchema,
    HeartbeatAnswerSchema,
    JobDetailSchema,
    JobHistoryAnswerSchema,
    PartialBatchAnswerSchema,
    PauseHistoryAnswerSchema,
    PauseStateSchema,
    QuotasAnswerSchema,
    QuoteAnswerSchema,
    StatusSchema,
)
from janus.schemas import (
    BatchSchema,
    ClaimSchema,
    CompleteManySchema,
    CompleteSchema,
    ConfigSchema,
    FailSchema,
    HeartbeatSchema,
    QuoteSchema,
    SingleJobSchema,
)


@dataclass(frozen=True)
class Answer:
    """One status an operation answers with a body of its own (errors are `ERROR_ANSWERS`)."""

    description: str
    # The JSON body; None for an answer without one (HEAD).
    schema: type[Schema] | None = None
    # Named examples of the body.
    examples: Mapping[str, Any] = field(default_factory=dict)
    # Response headers besides X-Request-ID: names of `HEADERS` (document.py), each with
    # whether the answer always carries it.
    headers: Mapping[str, bool] = field(default_factory=dict)
    # A list of this schema rather than one (the atomic batch's answer).
    many: bool = False
    # A body that is not JSON: its media type, described as a string (GET /metrics).
    text_media_type: str | None = None


@dataclass(frozen=True)
class Operation:
    """One method of one route."""

    method: str
    # The OpenAPI path: falcon's `{job_id:uuid}` is `{job_id}` here, its type in PATH_PARAMETERS.
    path: str
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    # Statuses answered with the error body (ERROR_ANSWERS); 401 and 408 are added for all.
    errors: tuple[int, ...] = ()
    # The JSON body, as the resource loads it, with named examples.
    body: Schema | None = None
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    # Request headers and query parameters: names of `PARAMETERS` (document.py).
    parameters: tuple[str, ...] = ()
    # Whether X-User-ID is required (every route but health and this document).
    user: bool = True
    # Whether the service token, when the service has one, is required (all but /health).
    service_token: bool = True


# Path parameters by name: the OpenAPI schema of each of falcon's field converters in
# janus/app.py (`{job_id:uuid}`, `{version:int(min=1, max=...)}`). A value the converter
# refuses matches no route: 404.
PATH_PARAMETERS: Mapping[str, dict[str, Any]] = {
    "job_id": {"type": "string", "format": "uuid"},
    "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
}

# prometheus_client's text format 0.0.4 (janus.metrics.CONTENT_TYPE; this package does
# not import prometheus_client, and tests/test_openapi.py holds the two together).
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# What a body can be refused with before anything is decided.
BODY_ERRORS = (400, 413, 415)
# What reaching the database can end in.
DATABASE_ERRORS = (503,)
# The errors of every job route: a body, a decision, an Idempotency-Key.
ADMISSION_ERRORS = (*BODY_ERRORS, 403, 409, 422, *DATABASE_ERRORS)
# The errors of a lease call on one job.
LEASE_ERRORS = (*BODY_ERRORS, 404, 409, *DATABASE_ERRORS)

_JOB_ID = "01a234ea-c508-7a53-9d0a-6a8f0f1f4b7e"
_OTHER_JOB_ID = "01a234ea-c50f-7c55-8f7e-2f3f3c4d5e6f"
_CLAIMED_JOB_ID = "01a23495-c961-7f0e-9d2a-2b1f1a6f0c11"
_LEASE_TOKEN = "0f7d6b0e-5a44-4a43-a0c6-3f3e2f0f9a51"
_LEASE_EXPIRES_AT = "2026-12-02T02:30:00.123456+00:00"
_ACTIVATED_AT = "2026-12-02T03:04:05.123456+00:00"

SINGLE_JOB_EXAMPLE = {
    "batch_name": "my-batch",
    "tenant_id": "tenant-abc",
    "priority": 8,
    "dependencies": {"openai": 2, "stripe": 1},
    "payload": {"custom_key": "custom_value"},
}
BATCH_EXAMPLE = {
    "batch_name": "my-batch",
    "jobs": [
        {"tenant_id": "tenant-abc", "priority": 8, "dependencies": {"openai": 1}},
        {"tenant_id": "tenant-xyz", "priority": 3, "dependencies": {"stripe": 5}},
    ],
}
_ACCEPTED = {"job_id": _JOB_ID, "status": "Accepted", "reason": ""}
_RATE_LIMITED = {
    "job_id": _OTHER_JOB_ID,
    "status": "Rejected",
    "reason": "dependency 'openai' rate limit exceeded",
}
CONFIG_EXAMPLE = {
    "paused": False,
    "min_priority": 1,
    "priority_reserve": 0.2,
    "unknown_dependencies": "reject",
    "max_attempts": 3,
    "retention_days": 7,
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
_STORED_CONFIG = {
    "paused": False,
    "min_priority": 1,
    "priority_reserve": 0.2,
    "unknown_dependencies": "reject",
    "max_attempts": 3,
    "retention_days": 7,
    "mode": "enforce",
    "tenant_share": 1,
    "tenant_overrides": {},
    "dependencies": {"openai": {"capacity": 1000, "refill_per_second": 10}},
}
_ACTIVE_CONFIG = {"version": 3, "activated_at": _ACTIVATED_AT, **_STORED_CONFIG}
_SETTLEMENT_FIELDS = {"actual_costs": {"openai": 1}, "upstream_throttled": ["openai"]}

_ETAG = {"ETag": True}
# Every job answer tells the buckets its request named, when there is one to tell.
_BUDGET_HEADERS = {"RateLimit-Policy": False, "RateLimit": False}
# An accepted answer may also be a replay (it then tells no budget).
_ADMISSION_HEADERS = {"Idempotent-Replayed": False, **_BUDGET_HEADERS}


def _health(
    path: str, summary: str, errors: tuple[int, ...], *, service_token: bool
) -> list[Operation]:
    """GET and HEAD of a health route: HEAD answers as GET does, without the body."""
    ok = Answer("OK.", StatusSchema, {"ok": {"status": "ok"}})
    return [
        Operation(
            method,
            path,
            summary,
            tag="Health",
            answers={200: answer},
            errors=errors,
            user=False,
            service_token=service_token,
        )
        for method, answer in (("get", ok), ("head", Answer("OK, without the body.")))
    ]


def _quoted(
    status: str,
    reason: str = "",
    retry_after: int | None = None,
    fits_at: str | None = None,
    shadow: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One job of a quote's answer."""
    shadow_status, shadow_reason = shadow or (None, None)
    return {
        "status": status,
        "reason": reason,
        "retry_after": retry_after,
        "fits_at": fits_at,
        "shadow_status": shadow_status,
        "shadow_reason": shadow_reason,
    }


def _quote(kind: str, status: int, *results: dict[str, Any]) -> dict[str, Any]:
    """A quote's answer of `results`, never replayed."""
    accepted = sum(result["status"] == "Accepted" for result in results)
    return {
        "kind": kind,
        "status": status,
        "replayed": False,
        "total": len(results),
        "accepted": accepted,
        "rejected": len(results) - accepted,
        "results": list(results),
    }


QUOTE_EXAMPLES = {
    "single_accepted": _quote("single", 202, _quoted("Accepted")),
    "single_rate_limited": _quote(
        "single",
        429,
        _quoted(
            "Rejected",
            "dependency 'openai' rate limit exceeded",
            retry_after=3,
            fits_at="2026-12-02T03:04:07.623456+00:00",
        ),
    ),
    "atomic_rejected": _quote(
        "atomic",
        207,
        _quoted("Rejected", "batch rejected atomically"),
        _quoted("Rejected", "tenant 'tenant-xyz' exceeded its share of dependency 'stripe'"),
    ),
    "partial_shadow": _quote(
        "partial",
        200,
        _quoted("Accepted", shadow=("Accepted", "")),
        _quoted("Accepted", shadow=("Rejected", "priority too low")),
    ),
}


def _job_routes(source: Source, max_batch_jobs: int) -> list[Operation]:
    """POST /{source}/jobs, .../batch, .../batch/atomic and .../quote, as janus/app.py adds
    them."""
    prefix = f"/{source.value}/jobs"
    batch = BatchSchema(max_jobs=max_batch_jobs)
    idempotency = ("Idempotency-Key",)
    return [
        Operation(
            "post",
            prefix,
            "Decide one job",
            tag="Jobs",
            body=SingleJobSchema(),
            body_examples={"seed": SINGLE_JOB_EXAMPLE},
            parameters=idempotency,
            answers={
                202: Answer(
                    "Accepted: the job is stored and queued for workers.",
                    DecisionSchema,
                    {"accepted": _ACCEPTED},
                    _ADMISSION_HEADERS,
                ),
                429: Answer(
                    "Rejected: the job's reason says why; Retry-After when waiting can help.",
                    DecisionSchema,
                    {"rate_limited": _RATE_LIMITED},
                    {"Retry-After": False, **_BUDGET_HEADERS},
                ),
            },
            errors=ADMISSION_ERRORS,
        ),
        Operation(
            "post",
            f"{prefix}/batch",
            "Decide a batch job by job (partial)",
            tag="Jobs",
            body=batch,
            body_examples={"seed": BATCH_EXAMPLE},
            parameters=idempotency,
            answers={
                200: Answer(
                    "Decided: one result per job, in request order.",
                    PartialBatchAnswerSchema,
                    {
                        "seed": {
                            "total": 2,
                            "accepted": 1,
                            "rejected": 1,
                            "results": [
                                _ACCEPTED,
                                {
                                    "job_id": _OTHER_JOB_ID,
                                    "status": "Rejected",
                                    "reason": "dependency 'stripe' cost 5 exceeds capacity 4",
                                },
                            ],
                        }
                    },
                    _ADMISSION_HEADERS,
                )
            },
            errors=ADMISSION_ERRORS,
        ),
        Operation(
            "post",
            f"{prefix}/batch/atomic",
            "Decide a batch all or nothing (atomic)",
            tag="Jobs",
            body=batch,
            body_examples={"seed": BATCH_EXAMPLE},
            parameters=idempotency,
            answers={
                202: Answer(
                    "All accepted, in request order.",
                    DecisionSchema,
                    {"accepted": [_ACCEPTED, {**_ACCEPTED, "job_id": _OTHER_JOB_ID}]},
                    _ADMISSION_HEADERS,
                    many=True,
                ),
                207: Answer(
                    "Any rejected: nothing taken, nothing stored; every other job's reason is"
                    " `batch rejected atomically`.",
                    DecisionSchema,
                    {
                        "rejected": [
                            {**_ACCEPTED, "status": "Rejected", "reason": "priority too low"},
                            {
                                "job_id": _OTHER_JOB_ID,
                                "status": "Rejected",
                                "reason": "batch rejected atomically",
                            },
                        ]
                    },
                    _BUDGET_HEADERS,
                    many=True,
                ),
            },
            errors=ADMISSION_ERRORS,
        ),
        Operation(
            "post",
            f"{prefix}/quote",
            "Quote: what a job or a batch would be answered now, with no side effect",
            tag="Jobs",
            body=QuoteSchema(max_jobs=max_batch_jobs),
            body_examples={
                "single": SINGLE_JOB_EXAMPLE,
                "partial": BATCH_EXAMPLE,
                "atomic": {**BATCH_EXAMPLE, "atomic": True},
            },
            parameters=idempotency,
            answers={
                200: Answer(
                    "The decisions the real request would get now, and its status; nothing is"
                    " stored, no token taken, no Idempotency-Key remembered.",
                    QuoteAnswerSchema,
                    QUOTE_EXAMPLES,
                )
            },
            errors=ADMISSION_ERRORS,
        ),
    ]


def _queue_routes(max_batch_jobs: int) -> list[Operation]:
    """The workers' routes, under /system/jobs only."""
    finished = {"job_id": _CLAIMED_JOB_ID, "attempt": 1}
    return [
        Operation(
            "post",
            "/system/jobs/claim",
            "Lease queued jobs, highest priority first",
            tag="Queue",
            body=ClaimSchema(),
            body_examples={"ten": {"limit": 10, "lease_seconds": 60}},
            answers={
                200: Answer(
                    'The jobs leased; `{"jobs": []}` when none is queued.',
                    ClaimAnswerSchema,
                    {
                        "one": {
                            "jobs": [
                                {
                                    "job_id": _CLAIMED_JOB_ID,
                                    "batch_name": "my-batch",
                                    "tenant_id": "tenant-abc",
                                    "priority": 8,
                                    "dependencies": {"openai": 2, "stripe": 1},
                                    "attempt": 1,
                                    "lease_token": _LEASE_TOKEN,
                                    "lease_expires_at": _LEASE_EXPIRES_AT,
                                    "payload": {"custom_key": "custom_value"},
                                }
                            ]
                        }
                    },
                )
            },
            errors=(*BODY_ERRORS, *DATABASE_ERRORS),
        ),
        Operation(
            "post",
            "/system/jobs/complete",
            "Complete many leased jobs in one transaction",
            tag="Queue",
            body=CompleteManySchema(max_jobs=max_batch_jobs),
            body_examples={
                "one": {
                    "jobs": [{"job_id": _CLAIMED_JOB_ID, "lease_token": _LEASE_TOKEN, "result": {}}]
                }
            },
            answers={
                200: Answer(
                    "Each item's outcome, in request order; an item not completed is unchanged.",
                    CompleteManyAnswerSchema,
                    {
                        "three": {
                            "results": [
                                {"job_id": _CLAIMED_JOB_ID, "outcome": "completed"},
                                {
                                    "job_id": "01a23495-c984-7a8e-b1f0-6d5c4b3a2e10",
                                    "outcome": "stale_lease",
                                },
                                {
                                    "job_id": "01a23495-6a82-7a7b-8c9d-0e1f2a3b4c5d",
                                    "outcome": "not_found",
                                },
                            ]
                        }
                    },
                )
            },
            errors=(*BODY_ERRORS, *DATABASE_ERRORS),
        ),
        Operation(
            "post",
            "/system/jobs/{job_id}/heartbeat",
            "Extend a lease",
            tag="Queue",
            body=HeartbeatSchema(),
            body_examples={"minute": {"lease_token": _LEASE_TOKEN, "lease_seconds": 60}},
            answers={
                200: Answer(
                    "The lease now expires `lease_seconds` from now.",
                    HeartbeatAnswerSchema,
                    {
                        "extended": {
                            "job_id": _CLAIMED_JOB_ID,
                            "lease_expires_at": _LEASE_EXPIRES_AT,
                        }
                    },
                )
            },
            errors=LEASE_ERRORS,
        ),
        Operation(
            "post",
            "/system/jobs/{job_id}/complete",
            "Complete a leased job, settling its real cost",
            tag="Queue",
            body=CompleteSchema(),
            body_examples={
                "done": {
                    "lease_token": _LEASE_TOKEN,
                    "result": {"answer": 42},
                    **_SETTLEMENT_FIELDS,
                }
            },
            answers={
                200: Answer(
                    "Completed.",
                    FinishedSchema,
                    {"completed": {**finished, "state": "completed"}},
                )
            },
            errors=LEASE_ERRORS,
        ),
        Operation(
            "post",
            "/system/jobs/{job_id}/fail",
            "Fail a leased job: back to the queue, or failed for good",
            tag="Queue",
            body=FailSchema(),
            body_examples={
                "retry": {"lease_token": _LEASE_TOKEN, "error": "upstream timed out", "retry": True}
            },
            answers={
                200: Answer(
                    "Queued again while `retry` is true and attempts remain, else failed.",
                    FinishedSchema,
                    {
                        "requeued": {**finished, "state": "queued"},
                        "failed": {**finished, "state": "failed"},
                    },
                )
            },
            errors=LEASE_ERRORS,
        ),
    ]


def _config_routes() -> list[Operation]:
    """The dashboard's config routes."""
    active = Answer(
        "The active config, with its version; ETag is the version, quoted.",
        ActiveConfigSchema,
        {"active": _ACTIVE_CONFIG},
        _ETAG,
    )
    return [
        Operation(
            "get",
            "/dashboard/config",
            "Read the active config",
            tag="Config",
            answers={200: active},
            errors=(404, *DATABASE_ERRORS),
        ),
        Operation(
            "put",
            "/dashboard/config",
            "Store a new config version and activate it",
            tag="Config",
            body=ConfigSchema(),
            body_examples={"two_dependencies": CONFIG_EXAMPLE},
            parameters=("If-Match",),
            answers={200: active},
            errors=(*BODY_ERRORS, 412, *DATABASE_ERRORS),
        ),
        Operation(
            "get",
            "/dashboard/config/versions",
            "List the config versions, newest first",
            tag="Config",
            parameters=("limit", "cursor"),
            answers={
                200: Answer(
                    "A page of versions; `next` is the cursor of the next page, null on the last.",
                    ConfigVersionsAnswerSchema,
                    {
                        "page": {
                            "versions": [
                                {
                                    "version": 3,
                                    "activated_at": _ACTIVATED_AT,
                                    "created_at": _ACTIVATED_AT,
                                    "is_active": True,
                                    "config": _STORED_CONFIG,
                                }
                            ],
                            "next": "3",
                        }
                    },
                )
            },
            # 400: a limit or cursor out of range, or another query parameter.
            errors=(400, *DATABASE_ERRORS),
        ),
        Operation(
            "post",
            "/dashboard/config/versions/{version}/activate",
            "Roll back: make an earlier version the active one again",
            tag="Config",
            answers={200: active},
            errors=(404, *DATABASE_ERRORS),
        ),
    ]


def _pause_routes() -> list[Operation]:
    """The dashboard's pause switch and its history."""
    state = Answer(
        "The pause state now, and since when it holds (null: never paused).",
        PauseStateSchema,
        {"paused": {"paused": True, "since": _ACTIVATED_AT}},
    )
    return [
        Operation(
            "post",
            "/dashboard/pause",
            "Pause: refuse every job of the user with 403 service paused",
            tag="Config",
            answers={200: state},
            errors=DATABASE_ERRORS,
        ),
        Operation(
            "post",
            "/dashboard/resume",
            "Resume: admit the user's jobs again",
            tag="Config",
            answers={200: state},
            errors=DATABASE_ERRORS,
        ),
        Operation(
            "get",
            "/dashboard/pause/history",
            "When the user was paused and resumed, newest first",
            tag="Config",
            parameters=("limit", "change_cursor"),
            answers={
                200: Answer(
                    "A page of changes; `next` is the cursor of the next page, null on the last.",
                    PauseHistoryAnswerSchema,
                    {
                        "page": {
                            "changes": [
                                {
                                    "paused": False,
                                    "changed_at": _ACTIVATED_AT,
                                    "config_version": None,
                                },
                                {
                                    "paused": True,
                                    "changed_at": _LEASE_EXPIRES_AT,
                                    "config_version": 4,
                                },
                            ],
                            "next": None,
                        }
                    },
                )
            },
            errors=(400, *DATABASE_ERRORS),
        ),
    ]


_JOB_SUMMARY = {
    "job_id": _JOB_ID,
    "created_at": _ACTIVATED_AT,
    "source": "dashboard",
    "batch_name": "my-batch",
    "tenant_id": "tenant-abc",
    "priority": 8,
    "status": "Accepted",
    "reason": "",
    "retry_after": None,
    "state": "queued",
    "attempts": 0,
}

# One job as GET /dashboard/jobs/{job_id} shows it, queued for workers.
_QUEUED_JOB = {
    **_JOB_SUMMARY,
    "dependencies": {"openai": 2, "stripe": 1},
    "payload": {"custom_key": "custom_value"},
    "lease_expires_at": None,
    "finished_at": None,
    "actual_costs": None,
    "result": None,
    "error": None,
    "config_version": 3,
    "shadow_status": None,
    "shadow_reason": None,
}


def _activity_example(counted_from: int | None) -> dict[str, Any]:
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
                    {"dependency 'openai' rate limit exceeded": 3 - moment}
                    if busy
                    else ({} if counted else None)
                ),
            }
        )
    since = None
    if counted_from is not None:
        hour, minute = divmod(4 * 60 + 2 - (ACTIVITY_MINUTES - 1 - counted_from), 60)
        since = f"2026-12-02T{hour:02}:{minute:02}:31.402117+00:00"
    return {"minutes": minutes, "counted_since": since}


def _history_routes() -> list[Operation]:
    """The dashboard's reads: the job history, one job, the buckets now."""
    return [
        Operation(
            "get",
            "/dashboard/jobs",
            "The user's jobs, newest first, filtered, a page at a time",
            tag="History",
            parameters=(
                "limit",
                "job_cursor",
                "status",
                "state",
                "tenant_id",
                "batch_name",
                "source",
                "since",
                "until",
            ),
            answers={
                200: Answer(
                    "A page of jobs; `next` is the cursor of the next page, null on the last.",
                    JobHistoryAnswerSchema,
                    {"page": {"jobs": [_JOB_SUMMARY], "next": None}},
                )
            },
            errors=(400, *DATABASE_ERRORS),
        ),
        Operation(
            "get",
            "/dashboard/jobs/{job_id}",
            "One job with its reason, costs, payload and outcome",
            tag="History",
            answers={
                200: Answer(
                    "The job; the payload and result exactly as they were sent.",
                    JobDetailSchema,
                    {
                        "queued": _QUEUED_JOB,
                        "shadow": {
                            **_QUEUED_JOB,
                            "config_version": 4,
                            "shadow_status": "Rejected",
                            "shadow_reason": "dependency 'openai' rate limit exceeded",
                        },
                    },
                )
            },
            # 400: a query parameter (this route takes none); 404: no such job of this user.
            errors=(400, 404, *DATABASE_ERRORS),
        ),
        Operation(
            "get",
            "/dashboard/activity",
            "The user's jobs per minute over the last hour, accepted and rejected by reason",
            tag="History",
            answers={
                200: Answer(
                    f"Each of the last {ACTIVITY_MINUTES} minutes (UTC), oldest first, the"
                    " current one last. At most the hour's newest"
                    f" {ACTIVITY_MAX_JOBS:,} jobs are counted: when it held more,"
                    " `counted_since` is the moment the count starts from, the minutes that"
                    " ended before it are null (not counted), and the minute it falls in"
                    " counts its jobs from then on; null when every job was counted.",
                    ActivityAnswerSchema,
                    {
                        "all_counted": _activity_example(None),
                        "newest_counted": _activity_example(ACTIVITY_MINUTES - 2),
                    },
                )
            },
            # 400: a query parameter (this route takes none).
            errors=(400, *DATABASE_ERRORS),
        ),
        Operation(
            "get",
            "/dashboard/quotas",
            "Each token bucket of the user as of now",
            tag="History",
            answers={
                200: Answer(
                    "The active config's mode, the buckets by dependency name, and the tenant"
                    " buckets closest to their limit (at most 100; a tenant not listed is fuller,"
                    " most often full); a null mode and no buckets without an active config.",
                    QuotasAnswerSchema,
                    {
                        "two": {
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
                        },
                        "none": {"mode": None, "quotas": [], "tenant_quotas": []},
                    },
                )
            },
            errors=(400, *DATABASE_ERRORS),
        ),
    ]


def operations(*, max_batch_jobs: int) -> list[Operation]:
    """Every operation of the API, in the order janus/app.py adds their routes."""
    return [
        *_health("/health", "Liveness: the process serves requests", (), service_token=False),
        *_health(
            "/health/ready",
            "Readiness: Postgres answers too",
            DATABASE_ERRORS,
            service_token=False,
        ),
        Operation(
            "get",
            "/openapi.json",
            "This document",
            tag="Health",
            answers={200: Answer("The OpenAPI 3.1 document of this service.", DocumentSchema)},
            user=False,
        ),
        Operation(
            "get",
            "/metrics",
            "Prometheus metrics of every worker",
            tag="Health",
            answers={
                200: Answer(
                    "Every metric in Prometheus's text format (0.0.4), summed over the"
                    " service's gunicorn workers; docs/operations.md lists them.",
                    text_media_type=METRICS_MEDIA_TYPE,
                )
            },
            user=False,
        ),
        *(operation for source in Source for operation in _job_routes(source, max_batch_jobs)),
        *_queue_routes(max_batch_jobs),
        *_config_routes(),
        *_pause_routes(),
        *_history_routes(),
        *_dashboard_files(),
    ]


def _dashboard_files() -> list[Operation]:
    """The dashboard's page, style sheet and scripts (janus.dashboard.FILES)."""
    return [
        Operation(
            "get",
            path,
            file.summary,
            tag="Dashboard",
            answers={200: Answer("The file.", text_media_type=file.media_type)},
            user=False,
            service_token=False,
        )
        for path, file in DASHBOARD_FILES.items()
    ]
