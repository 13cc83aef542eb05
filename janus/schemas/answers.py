"""What every answer is: the marshmallow schemas the resources dump their answers with, and the
OpenAPI document describes.

An answer is never built by hand beside its schema: a resource dumps the domain's objects
(Decision, ClaimedJob, JobRecord, ...) with the schema, so the document cannot say one thing
while the service sends another. Every field of an answer is always there, so every one is
`required` (null where allowed). Answers that hold stored JSON text (payloads, results, quotas'
exact decimals) are written with json_text.dumps.
"""

from __future__ import annotations

from typing import Any, get_args

from marshmallow import INCLUDE, Schema, fields, validate

from janus.admission import ConfigMode, Status
from janus.history import ACTIVITY_MINUTES, SOURCES
from janus.queue import JobState
from janus.quotas import TENANT_QUOTAS_SHOWN
from janus.reasons import ReasonCode
from janus.schemas.dumping import AnswerSchema
from janus.schemas.fields import (
    Dependencies,
    Payload,
    StoredObject,
    StrictInteger,
    StrictNumber,
    UtcDateTime,
)
from janus.schemas.requests import ConfigSchema


def _status(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(get_args(Status)), **kwargs)


def _state(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(get_args(JobState)), **kwargs)


def _code(**kwargs: Any) -> fields.Enum:
    """A rejection's code, for machines beside the reason's words (null when accepted): the
    same closed set as the metrics' reason label."""
    return fields.Enum(
        ReasonCode,
        by_value=True,
        required=True,
        allow_none=True,
        metadata={
            "description": "The rejection's code (docs/api.md lists each beside its reason);"
            " null when accepted. `other` is a code newer than this version of Janus."
        },
        **kwargs,
    )


def _next() -> fields.String:
    """A page's `next`: the cursor of the next page, null on the last."""
    return fields.String(required=True, allow_none=True)


class ErrorSchema(AnswerSchema):
    """Every error body: a title, a description, and field-level messages for a bad body."""

    title = fields.String(required=True, metadata={"example": "400 Bad Request"})
    description = fields.String(required=True)
    # Only on a 400 about the body or the query: messages by field (batch jobs by index).
    errors = fields.Dict()


class StatusSchema(AnswerSchema):
    """GET /health and /health/ready: the process (and the database) answer."""

    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class DecisionSchema(AnswerSchema):
    """One job's decision: its id, Accepted or Rejected, and the reason of a rejection; a job
    accepted to wait also tells so, and when it should start (the answers of jobs accepted at
    once or rejected keep exactly the three fields of the seed API)."""

    job_id = fields.UUID(required=True)
    status = _status(required=True)
    reason = fields.String(required=True)
    # Only on a job accepted to wait (`when_limited` wait, or a `run_at`): it takes its tokens
    # when a worker claims it, at best at estimated_start (null: no rate can tell).
    state = fields.String(validate=validate.OneOf(["waiting"]))
    estimated_start = UtcDateTime(allow_none=True)


class BatchResultSchema(DecisionSchema):
    """One job of a partial batch's answer: its decision with its code, and when to try it
    again."""

    reason_code = _code()
    # The Retry-After this job would carry on its own, in seconds: null when it was accepted,
    # when waiting cannot help, and on a replay.
    retry_after = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1))


class PartialBatchAnswerSchema(AnswerSchema):
    """A partial batch's answer: counts, and one result per job in request order."""

    total = fields.Integer(required=True)
    accepted = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    results = fields.Nested(BatchResultSchema, many=True, required=True)


class QuotedDecisionSchema(AnswerSchema):
    """One job of a quote: its decision as the real request would get it, without a job id."""

    status = _status(required=True)
    reason = fields.String(required=True)
    reason_code = _code()
    # The Retry-After the real request would tell; null when waiting would not help.
    retry_after = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1))
    # For a job rejected for tokens: when it would fit if nothing else took any.
    fits_at = fields.DateTime(required=True, allow_none=True)
    # In shadow mode, what enforcement would decide; null in enforce mode and on a replay.
    shadow_status = _status(required=True, allow_none=True)
    shadow_reason = fields.String(required=True, allow_none=True)
    shadow_reason_code = _code()
    # As a job's answer tells them (DecisionSchema).
    state = fields.String(validate=validate.OneOf(["waiting"]))
    estimated_start = UtcDateTime(allow_none=True)


class QuoteAnswerSchema(AnswerSchema):
    """POST .../jobs/quote: what the real request would be answered now; nothing is done."""

    kind = fields.String(required=True, validate=validate.OneOf(["single", "partial", "atomic"]))
    # The status the real request would be answered with.
    status = fields.Integer(required=True, validate=validate.OneOf([200, 202, 207, 429]))
    # Whether the Idempotency-Key is remembered: the decisions are then the remembered ones.
    replayed = fields.Boolean(required=True)
    total = fields.Integer(required=True, validate=validate.Range(min=1))
    accepted = fields.Integer(required=True, validate=validate.Range(min=0))
    rejected = fields.Integer(required=True, validate=validate.Range(min=0))
    results = fields.Nested(QuotedDecisionSchema, many=True, required=True)


class ClaimedJobSchema(AnswerSchema):
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


class ClaimAnswerSchema(AnswerSchema):
    """POST /system/jobs/claim: the jobs leased, highest priority first, then oldest."""

    jobs = fields.Nested(ClaimedJobSchema, many=True, required=True)


class HeartbeatAnswerSchema(AnswerSchema):
    """POST /system/jobs/{job_id}/heartbeat: the lease's new expiry."""

    job_id = fields.UUID(required=True)
    lease_expires_at = fields.DateTime(required=True)


class FinishedSchema(AnswerSchema):
    """POST /system/jobs/{job_id}/complete or /fail: where the job is now, after which attempt."""

    job_id = fields.UUID(required=True)
    state = _state(required=True)
    attempt = fields.Integer(required=True, validate=validate.Range(min=1))


class CompleteManyResultSchema(AnswerSchema):
    """One item of POST /system/jobs/complete: completed, or why it was left as it was."""

    job_id = fields.UUID(required=True)
    outcome = fields.String(
        required=True, validate=validate.OneOf(["completed", "not_found", "stale_lease"])
    )


class CompleteManyAnswerSchema(AnswerSchema):
    """POST /system/jobs/complete: each item's outcome, in request order."""

    results = fields.Nested(CompleteManyResultSchema, many=True, required=True)


class _VersionSchema(Schema):
    """A config version's number and when it was last activated."""

    version = fields.Integer(required=True, validate=validate.Range(min=1))
    # Null only for a version that was never activated (the versions list may show one).
    activated_at = fields.DateTime(required=True, allow_none=True)


class ActiveConfigSchema(ConfigSchema, _VersionSchema):
    """A stored config version as GET /dashboard/config shows it: its version, then the config
    in force (`paused` is the user's state now)."""


class ConfigVersionSchema(_VersionSchema):
    """One version in GET /dashboard/config/versions: the config as it was written."""

    created_at = fields.DateTime(required=True)
    is_active = fields.Boolean(required=True)
    config = fields.Nested(ConfigSchema, required=True)


class ConfigVersionsAnswerSchema(AnswerSchema):
    """GET /dashboard/config/versions: a page, newest first, and the cursor of the next one."""

    versions = fields.Nested(ConfigVersionSchema, many=True, required=True)
    # The previous page's last version, as text; null on the last page.
    next = _next()


class PauseStateSchema(AnswerSchema):
    """POST /dashboard/pause and /dashboard/resume: the state now, and since when it holds."""

    paused = fields.Boolean(required=True)
    # Null for a user never paused.
    since = fields.DateTime(required=True, allow_none=True)


class PauseChangeSchema(AnswerSchema):
    """One change of the pause state; config_version null: by pause or resume."""

    paused = fields.Boolean(required=True)
    changed_at = fields.DateTime(required=True)
    config_version = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1))


class PauseHistoryAnswerSchema(AnswerSchema):
    """GET /dashboard/pause/history: a page of changes, newest first, and the next cursor."""

    changes = fields.Nested(PauseChangeSchema, many=True, required=True)
    next = _next()


class JobSummarySchema(AnswerSchema):
    """One job of GET /dashboard/jobs: how it was decided, and where it is in the queue."""

    job_id = fields.UUID(required=True)
    created_at = fields.DateTime(required=True)
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))
    batch_name = fields.String(required=True)
    tenant_id = fields.String(required=True)
    priority = StrictInteger(required=True, validate=validate.Range(min=1, max=10))
    status = _status(required=True)
    reason = fields.String(required=True)
    reason_code = _code()
    # The Retry-After a rejection was given, in seconds; null when it had none.
    retry_after = fields.Integer(required=True, allow_none=True)
    # Null for a rejected job: it never entered the queue.
    state = _state(required=True, allow_none=True)
    attempts = fields.Integer(required=True, validate=validate.Range(min=0))
    # While waiting: when it should start (janus.history.JobSummary); otherwise null.
    estimated_start = fields.DateTime(required=True, allow_none=True)


class JobHistoryAnswerSchema(AnswerSchema):
    """GET /dashboard/jobs: a page of jobs, newest first, and the cursor of the next one."""

    jobs = fields.Nested(JobSummarySchema, many=True, required=True)
    next = _next()


class JobDetailSchema(JobSummarySchema):
    """GET /dashboard/jobs/{job_id}: the job with its costs, payload and worker's outcome."""

    dependencies = Dependencies(required=True)
    payload = Payload(required=True)
    lease_expires_at = fields.DateTime(required=True, allow_none=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    # The real costs workers reported, summed: {dependency: tokens}.
    actual_costs = StoredObject(
        keys=fields.String(), values=fields.Integer(), required=True, allow_none=True
    )
    # While waiting: when it may join its dependencies' line, since when it is in it, and when
    # it expires unless handed out.
    run_at = fields.DateTime(required=True, allow_none=True)
    in_line_at = fields.DateTime(required=True, allow_none=True)
    expires_at = fields.DateTime(required=True, allow_none=True)
    result = Payload(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    config_version = fields.Integer(required=True, allow_none=True)
    # Decided under shadow mode: what enforcement would have decided; null under enforce mode.
    shadow_status = _status(required=True, allow_none=True)
    shadow_reason = fields.String(required=True, allow_none=True)
    shadow_reason_code = _code()


class MinuteActivitySchema(AnswerSchema):
    """One minute of GET /dashboard/activity: its jobs, accepted and rejected by reason."""

    # The minute's first moment, UTC.
    minute = UtcDateTime(required=True)
    # Both null when the minute ended before `counted_since`: not counted, not none.
    accepted = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=0))
    # By reason, in the reasons' name order.
    rejected = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(validate=validate.Range(min=1)),
        required=True,
        allow_none=True,
    )


class ActivityAnswerSchema(AnswerSchema):
    """GET /dashboard/activity: the user's jobs per minute over the last hour, oldest first."""

    minutes = fields.Nested(
        MinuteActivitySchema,
        many=True,
        required=True,
        validate=validate.Length(equal=ACTIVITY_MINUTES),
    )
    # Null when every job of the hour was counted; otherwise the moment the count starts from.
    counted_since = UtcDateTime(required=True, allow_none=True)


def amount(**kwargs: Any) -> StrictNumber:
    """A number of the database (tokens, a rate, seconds), dumped exact: never below 0."""
    return StrictNumber(required=True, validate=validate.Range(min=0), **kwargs)


class QuotaSchema(AnswerSchema):
    """One token bucket as of now, as the operators' view token_buckets_now shows it."""

    dependency = fields.String(required=True)
    capacity = fields.Integer(required=True, validate=validate.Range(min=1))
    refill_per_second = amount()
    effective_refill_per_second = amount()
    adaptive = fields.Boolean(required=True)
    tokens = amount()
    # Null when the bucket never refills and is not full.
    full_in_seconds = amount(allow_none=True)


class TenantQuotaSchema(AnswerSchema):
    """One tenant's bucket of a dependency as of now, as the view tenant_buckets_now shows it."""

    dependency = fields.String(required=True)
    tenant_id = fields.String(required=True)
    # The tenant's share under the active config; capacity and refill are that share of the
    # dependency's, so they need not be whole numbers.
    share = StrictNumber(required=True, validate=validate.Range(min=0, max=1, min_inclusive=False))
    capacity = StrictNumber(required=True, validate=validate.Range(min=0, min_inclusive=False))
    refill_per_second = amount()
    tokens = amount()
    # Null when the bucket never refills and is not full.
    full_in_seconds = amount(allow_none=True)


class QuotasAnswerSchema(AnswerSchema):
    """GET /dashboard/quotas: the active config's mode, every bucket of the user by dependency
    name, and the tenant buckets closest to their limit."""

    # Null without an active config.
    mode = fields.String(
        required=True, allow_none=True, validate=validate.OneOf([mode.value for mode in ConfigMode])
    )
    quotas = fields.Nested(QuotaSchema, many=True, required=True, attribute="buckets")
    # At most TENANT_QUOTAS_SHOWN, closest to their limit first; a tenant not listed is full
    # or fuller than all of these.
    tenant_quotas = fields.Nested(
        TenantQuotaSchema,
        many=True,
        required=True,
        attribute="tenants",
        validate=validate.Length(max=TENANT_QUOTAS_SHOWN),
    )


class DocumentSchema(AnswerSchema):
    """GET /openapi.json: this document (an OpenAPI 3.1 object; its other members allowed)."""

    class Meta:
        unknown = INCLUDE

    openapi = fields.String(required=True)
    info = fields.Dict(required=True)
    paths = fields.Dict(required=True)
    tags = fields.List(fields.Dict())
    components = fields.Dict()
