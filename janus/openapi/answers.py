"""The answers' shapes, as marshmallow schemas the OpenAPI document is generated from.

The resources build their answers as dicts (or, for a claim, as text): these schemas are
never used to dump them, only to describe them, so they live here and not in janus/schemas.py,
which holds what is loaded. Every field of an answer is always there, so every one is
`required` (null where allowed). A test holds the service to them over real HTTP
(tests/test_openapi_conformance.py).
"""

from __future__ import annotations

from typing import get_args

from marshmallow import INCLUDE, Schema, fields, validate

from janus.admission import ConfigMode, Status
from janus.history import ACTIVITY_MINUTES
from janus.queue import JobState
from janus.quotas import TENANT_QUOTAS_SHOWN
from janus.schemas import ConfigSchema, Dependencies, Payload, StrictInteger


class ErrorSchema(Schema):
    """Every error body: a title, a description, and field-level messages for a bad body."""

    title = fields.String(required=True, metadata={"example": "400 Bad Request"})
    description = fields.String(required=True)
    # Only on a 400 about the body or the query: messages by field (batch jobs by index).
    errors = fields.Dict()


class StatusSchema(Schema):
    """GET /health and /health/ready: the process (and the database) answer."""

    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class DecisionSchema(Schema):
    """One job's decision: its id, Accepted or Rejected, and the reason of a rejection."""

    job_id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(get_args(Status)))
    reason = fields.String(required=True)


class PartialBatchAnswerSchema(Schema):
    """A partial batch's answer: counts, and one decision per job in request order."""

    total = fields.Integer(required=True)
    accepted = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    results = fields.List(fields.Nested(DecisionSchema), required=True)


class QuotedDecisionSchema(Schema):
    """One job of a quote: its decision as the real request would get it, without a job id."""

    status = fields.String(required=True, validate=validate.OneOf(get_args(Status)))
    reason = fields.String(required=True)
    # The Retry-After the real request would tell; null when waiting would not help.
    retry_after = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1))
    # For a job rejected for tokens: when it would fit if nothing else took any.
    fits_at = fields.DateTime(required=True, allow_none=True)
    # In shadow mode, what enforcement would decide; null in enforce mode and on a replay.
    shadow_status = fields.String(
        required=True, allow_none=True, validate=validate.OneOf(get_args(Status))
    )
    shadow_reason = fields.String(required=True, allow_none=True)


class QuoteAnswerSchema(Schema):
    """POST .../jobs/quote: what the real request would be answered now; nothing is done."""

    kind = fields.String(required=True, validate=validate.OneOf(["single", "partial", "atomic"]))
    # The status the real request would be answered with.
    status = fields.Integer(required=True, validate=validate.OneOf([200, 202, 207, 429]))
    # Whether the Idempotency-Key is remembered: the decisions are then the remembered ones.
    replayed = fields.Boolean(required=True)
    total = fields.Integer(required=True, validate=validate.Range(min=1))
    accepted = fields.Integer(required=True, validate=validate.Range(min=0))
    rejected = fields.Integer(required=True, validate=validate.Range(min=0))
    results = fields.List(fields.Nested(QuotedDecisionSchema), required=True)


class ClaimedJobSchema(Schema):
    """A job leased to the calling worker; `payload` is the exact text the producer sent."""

    job_id = fields.UUID(required=True)
    batch_name = fields.String(required=True)
    tenant_id = fields.String(required=True)
    priority = StrictInteger(required=True, validate=validate.Range(min=1, max=10))
    dependencies = Dependencies(required=True)
    attempt = fields.Integer(required=True, validate=validate.Range(min=1))
    lease_token = fields.UUID(required=True)
    lease_expires_at = fields.DateTime(required=True)
    payload = Payload(required=True)


class ClaimAnswerSchema(Schema):
    """POST /system/jobs/claim: the jobs leased, highest priority first, then oldest."""

    jobs = fields.List(fields.Nested(ClaimedJobSchema), required=True)


class HeartbeatAnswerSchema(Schema):
    """POST /system/jobs/{job_id}/heartbeat: the lease's new expiry."""

    job_id = fields.UUID(required=True)
    lease_expires_at = fields.DateTime(required=True)


class FinishedSchema(Schema):
    """POST /system/jobs/{job_id}/complete or /fail: where the job is now, after which attempt."""

    job_id = fields.UUID(required=True)
    state = fields.String(required=True, validate=validate.OneOf(get_args(JobState)))
    attempt = fields.Integer(required=True, validate=validate.Range(min=1))


class CompleteManyResultSchema(Schema):
    """One item of POST /system/jobs/complete: completed, or why it was left as it was."""

    job_id = fields.UUID(required=True)
    outcome = fields.String(
        required=True, validate=validate.OneOf(["completed", "not_found", "stale_lease"])
    )


class CompleteManyAnswerSchema(Schema):
    """POST /system/jobs/complete: each item's outcome, in request order."""

    results = fields.List(fields.Nested(CompleteManyResultSchema), required=True)


class ActiveConfigSchema(ConfigSchema):
    """A stored config version as GET /dashboard/config shows it: the config and its version."""

    version = fields.Integer(required=True, validate=validate.Range(min=1))
    # Null only for a version that was never activated (the versions list may show one).
    activated_at = fields.DateTime(required=True, allow_none=True)


class ConfigVersionSchema(Schema):
    """One version in GET /dashboard/config/versions."""

    version = fields.Integer(required=True, validate=validate.Range(min=1))
    activated_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    is_active = fields.Boolean(required=True)
    config = fields.Nested(ConfigSchema, required=True)


class ConfigVersionsAnswerSchema(Schema):
    """GET /dashboard/config/versions: a page, newest first, and the cursor of the next one."""

    versions = fields.List(fields.Nested(ConfigVersionSchema), required=True)
    # The previous page's last version, as text; null on the last page.
    next = fields.String(required=True, allow_none=True)


class PauseStateSchema(Schema):
    """POST /dashboard/pause and /dashboard/resume: the state now, and since when it holds."""

    paused = fields.Boolean(required=True)
    # Null for a user never paused.
    since = fields.DateTime(required=True, allow_none=True)


class PauseChangeSchema(Schema):
    """One change of the pause state; config_version null: by pause or resume."""

    paused = fields.Boolean(required=True)
    changed_at = fields.DateTime(required=True)
    config_version = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1))


class PauseHistoryAnswerSchema(Schema):
    """GET /dashboard/pause/history: a page of changes, newest first, and the next cursor."""

    changes = fields.List(fields.Nested(PauseChangeSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class JobSummarySchema(Schema):
    """One job of GET /dashboard/jobs: how it was decided, and where it is in the queue."""

    job_id = fields.UUID(required=True)
    created_at = fields.DateTime(required=True)
    source = fields.String(required=True, validate=validate.OneOf(["dashboard", "system"]))
    batch_name = fields.String(required=True)
    tenant_id = fields.String(required=True)
    priority = StrictInteger(required=True, validate=validate.Range(min=1, max=10))
    status = fields.String(required=True, validate=validate.OneOf(get_args(Status)))
    reason = fields.String(required=True)
    # The Retry-After a rejection was given, in seconds; null when it had none.
    retry_after = fields.Integer(required=True, allow_none=True)
    # Null for a rejected job: it never entered the queue.
    state = fields.String(
        required=True, allow_none=True, validate=validate.OneOf(get_args(JobState))
    )
    attempts = fields.Integer(required=True, validate=validate.Range(min=0))


class JobHistoryAnswerSchema(Schema):
    """GET /dashboard/jobs: a page of jobs, newest first, and the cursor of the next one."""

    jobs = fields.List(fields.Nested(JobSummarySchema), required=True)
    next = fields.String(required=True, allow_none=True)


class JobDetailSchema(JobSummarySchema):
    """GET /dashboard/jobs/{job_id}: the job with its costs, payload and worker's outcome."""

    dependencies = Dependencies(required=True)
    payload = Payload(required=True)
    lease_expires_at = fields.DateTime(required=True, allow_none=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    # The real costs workers reported, summed: {dependency: tokens}.
    actual_costs = fields.Dict(
        keys=fields.String(), values=fields.Integer(), required=True, allow_none=True
    )
    result = Payload(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    config_version = fields.Integer(required=True, allow_none=True)
    # Decided under shadow mode: what enforcement would have decided; null under enforce mode.
    shadow_status = fields.String(
        required=True, allow_none=True, validate=validate.OneOf(get_args(Status))
    )
    shadow_reason = fields.String(required=True, allow_none=True)


class MinuteActivitySchema(Schema):
    """One minute of GET /dashboard/activity: its jobs, accepted and rejected by reason."""

    # The minute's first moment, UTC.
    minute = fields.DateTime(required=True)
    # Both null when the minute ended before `counted_since`: not counted, not none.
    accepted = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=0))
    rejected = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(validate=validate.Range(min=1)),
        required=True,
        allow_none=True,
    )


class ActivityAnswerSchema(Schema):
    """GET /dashboard/activity: the user's jobs per minute over the last hour, oldest first."""

    minutes = fields.List(
        fields.Nested(MinuteActivitySchema),
        required=True,
        validate=validate.Length(equal=ACTIVITY_MINUTES),
    )
    # Null when every job of the hour was counted; otherwise the moment the count starts from.
    counted_since = fields.DateTime(required=True, allow_none=True)


class QuotaSchema(Schema):
    """One token bucket as of now, as the operators' view token_buckets_now shows it."""

    dependency = fields.String(required=True)
    capacity = fields.Integer(required=True, validate=validate.Range(min=1))
    refill_per_second = fields.Float(required=True, validate=validate.Range(min=0))
    effective_refill_per_second = fields.Float(required=True, validate=validate.Range(min=0))
    adaptive = fields.Boolean(required=True)
    tokens = fields.Float(required=True, validate=validate.Range(min=0))
    # Null when the bucket never refills and is not full.
    full_in_seconds = fields.Float(required=True, allow_none=True, validate=validate.Range(min=0))


class TenantQuotaSchema(Schema):
    """One tenant's bucket of a dependency as of now, as the view tenant_buckets_now shows it."""

    dependency = fields.String(required=True)
    tenant_id = fields.String(required=True)
    # The tenant's share under the active config; capacity and refill are that share of the
    # dependency's, so they need not be whole numbers.
    share = fields.Float(required=True, validate=validate.Range(min=0, max=1, min_inclusive=False))
    capacity = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False))
    refill_per_second = fields.Float(required=True, validate=validate.Range(min=0))
    tokens = fields.Float(required=True, validate=validate.Range(min=0))
    # Null when the bucket never refills and is not full.
    full_in_seconds = fields.Float(required=True, allow_none=True, validate=validate.Range(min=0))


class QuotasAnswerSchema(Schema):
    """GET /dashboard/quotas: the active config's mode, every bucket of the user by dependency
    name, and the tenant buckets closest to their limit."""

    # Null without an active config.
    mode = fields.String(
        required=True, allow_none=True, validate=validate.OneOf([mode.value for mode in ConfigMode])
    )
    quotas = fields.List(fields.Nested(QuotaSchema), required=True)
    # At most TENANT_QUOTAS_SHOWN, closest to their limit first; a tenant not listed is full
    # or fuller than all of these.
    tenant_quotas = fields.List(
        fields.Nested(TenantQuotaSchema),
        required=True,
        validate=validate.Length(max=TENANT_QUOTAS_SHOWN),
    )


class DocumentSchema(Schema):
    """GET /openapi.json: this document (an OpenAPI 3.1 object; its other members allowed)."""

    class Meta:
        unknown = INCLUDE

    openapi = fields.String(required=True)
    info = fields.Dict(required=True)
    paths = fields.Dict(required=True)
    components = fields.Dict()
