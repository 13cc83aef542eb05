"""What a valid request is: every body, query and config Janus reads, as marshmallow schemas.

The answers are janus/schemas/answers.py's; the fields both use, janus/schemas/fields.py's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from janus.admission import ConfigMode, UnknownDependencies, WhenLimited
from janus.history import SOURCES, STATES, STATUSES
from janus.json_text import ANY_ITEM, KEEP_TEXT, PathTree
from janus.schemas.fields import (
    MAX_CAPACITY,
    MAX_DEPENDENCIES_PER_JOB,
    Choice,
    Dependencies,
    ItemList,
    Payload,
    StrictBoolean,
    StrictInteger,
    StrictNumber,
    Text,
    dependency_name_field,
    name_field,
    priority_field,
)
from janus.schemas.loading import FieldwiseSchema

# The queue's limits (the configs table's CHECKs say the same).
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS = 100
DEFAULT_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 3650
MAX_CLAIM_LIMIT = 100
DEFAULT_LEASE_SECONDS = 60
MAX_LEASE_SECONDS = 3600
MAX_ERROR_LENGTH = 10_000
# A day: a worker's wait before a job's next attempt (what an upstream's Retry-After asks).
MAX_RETRY_AFTER_SECONDS = 86_400
MAX_RECOVERY_PER_MINUTE = 60
MAX_TENANT_OVERRIDES = 10_000
# A config's dependencies: every admission of the user reads all of its buckets, and every
# version is kept, so a config of a million would cost every one of them.
MAX_DEPENDENCIES_PER_CONFIG = 1000
# Pacing: the longest a waiting job may wait before it is handed out (a week; the configs
# table's CHECK says the same), the config's default, and how far ahead a run_at may be.
MAX_WAIT_SECONDS = 604_800
DEFAULT_MAX_WAIT_SECONDS = 3600
MAX_RUN_AT_AHEAD = timedelta(days=30)


def _max_wait_seconds(**kwargs: Any) -> StrictInteger:
    return StrictInteger(validate=validate.Range(min=1, max=MAX_WAIT_SECONDS), **kwargs)


def _not_too_far_ahead(moment: datetime) -> None:
    if moment > datetime.now(UTC) + MAX_RUN_AT_AHEAD:
        raise ValidationError(f"At most {MAX_RUN_AT_AHEAD.days} days from now.")


class JobSchema(FieldwiseSchema):
    """One job of a batch: who it is for, how urgent, and what it will spend."""

    tenant_id = name_field()
    priority = priority_field(required=True)
    dependencies = Dependencies(load_default=dict)
    payload = Payload(load_default="{}")
    # Not to be handed out before then: it waits (state waiting), then is paced as any job.
    run_at = fields.AwareDateTime(validate=_not_too_far_ahead)


class _Pacing(Schema):
    """What a request of jobs may say of those only tokens keep out (each left out: the
    active config's)."""

    when_limited = Choice(WhenLimited)
    max_wait_seconds = _max_wait_seconds()


class SingleJobSchema(JobSchema, _Pacing):
    """The body of POST .../jobs: one job and the batch it belongs to."""

    # What the body reader keeps as the exact text sent: the payload.
    kept_as_text: ClassVar[PathTree] = {"payload": KEEP_TEXT}

    batch_name = name_field()


class _JobList(Schema):
    """A body whose `jobs` list holds 1 to `max_jobs` items (a batch, a batch complete)."""

    def __init__(self, *, max_jobs: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_jobs = max_jobs

    @pre_load
    def _jobs_count(self, data: Any, **_: Any) -> Any:
        # Counted before any item is validated, so a body of a million tiny items costs nothing.
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if isinstance(jobs, list) and not 1 <= len(jobs) <= self.max_jobs:
            raise ValidationError(f"A batch holds 1 to {self.max_jobs} jobs.", "jobs")
        return data


class BatchSchema(_JobList, _Pacing):
    """The body of POST .../jobs/batch and .../jobs/batch/atomic."""

    kept_as_text: ClassVar[PathTree] = {"jobs": {ANY_ITEM: {"payload": KEEP_TEXT}}}

    batch_name = name_field()
    jobs = ItemList(JobSchema, required=True)


# A single job's fields, which a quote of a batch leaves to its jobs.
_SINGLE_JOB_FIELDS = ("tenant_id", "priority", "dependencies", "payload", "run_at")


class QuoteSchema(_JobList, _Pacing):
    """The body of POST .../jobs/quote: a single job's body, or a batch's with `atomic`.

    Which it is depends on `jobs`: with it, a batch (partial, or atomic when `atomic` is
    true), whose jobs carry their own fields; without it, one job, as POST .../jobs takes it.
    """

    kept_as_text: ClassVar[PathTree] = {
        "payload": KEEP_TEXT,
        "jobs": {ANY_ITEM: {"payload": KEEP_TEXT}},
    }

    batch_name = name_field()
    tenant_id = name_field(required=False)
    priority = priority_field()
    dependencies = Dependencies()
    payload = Payload()
    run_at = fields.AwareDateTime(validate=_not_too_far_ahead)
    jobs = ItemList(JobSchema)
    atomic = StrictBoolean()

    @validates_schema
    def _one_shape(self, data: dict[str, Any], **_: Any) -> None:
        if "jobs" in data:
            misplaced = [name for name in _SINGLE_JOB_FIELDS if name in data]
            if misplaced:
                raise ValidationError(
                    {
                        name: ["Not with `jobs`: each job of a batch has its own."]
                        for name in misplaced
                    }
                )
            return
        errors = {
            name: ["Missing data for required field."]
            for name in ("tenant_id", "priority")
            if name not in data
        }
        if "atomic" in data:
            errors["atomic"] = ["Only with `jobs`: a single job is not a batch."]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _single_job_defaults(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # A single job's body loads as SingleJobSchema loads it, defaults included: the
        # Idempotency-Key's fingerprint is of that body.
        if "jobs" not in data:
            data.setdefault("dependencies", {})
            data.setdefault("payload", "{}")
        return data


# The queue's bodies: POST /system/jobs/claim and the lease calls.


def _dependency_names() -> fields.List:
    return fields.List(
        dependency_name_field(), validate=validate.Length(max=MAX_DEPENDENCIES_PER_JOB)
    )


def _lease_seconds(**kwargs: Any) -> StrictInteger:
    return StrictInteger(validate=validate.Range(min=1, max=MAX_LEASE_SECONDS), **kwargs)


class ClaimSchema(Schema):
    """The body of POST /system/jobs/claim: how many jobs, for how long, and which."""

    limit = StrictInteger(load_default=1, validate=validate.Range(min=1, max=MAX_CLAIM_LIMIT))
    lease_seconds = _lease_seconds(load_default=DEFAULT_LEASE_SECONDS)
    tenant_id = name_field(required=False)
    batch_name = name_field(required=False)
    # Only jobs that call none but these (a worker that holds keys for these only).
    dependencies = _dependency_names()


class HeartbeatSchema(Schema):
    """The body of POST /system/jobs/{job_id}/heartbeat."""

    lease_token = fields.UUID(required=True)
    lease_seconds = _lease_seconds(load_default=DEFAULT_LEASE_SECONDS)


class _SettlementSchema(Schema):
    """What complete and fail may report: the job's real cost, and who throttled it."""

    lease_token = fields.UUID(required=True)
    # {dependency: tokens really spent}: 0 and up.
    actual_costs = Dependencies(minimum=0, maximum=MAX_CAPACITY)
    upstream_throttled = _dependency_names()


class CompleteSchema(_SettlementSchema):
    """The body of POST /system/jobs/{job_id}/complete."""

    kept_as_text: ClassVar[PathTree] = {"result": KEEP_TEXT}

    result = Payload(what="Result")


class FailSchema(_SettlementSchema):
    """The body of POST /system/jobs/{job_id}/fail."""

    error = Text(required=True, validate=validate.Length(min=1, max=MAX_ERROR_LENGTH))
    # false: the job is failed now, whatever attempts it has left.
    retry = StrictBoolean(load_default=True)
    # With retry: the job waits this long before it is queued again (an upstream's own
    # Retry-After, say); left out, it is queued at once.
    retry_after_seconds = StrictInteger(validate=validate.Range(min=1, max=MAX_RETRY_AFTER_SECONDS))

    @validates_schema
    def _retry_after_needs_retry(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "retry_after_seconds" in data and not data["retry"]:
            raise ValidationError(
                "only a job that may be retried (retry true) waits before its next attempt",
                "retry_after_seconds",
            )


class CompleteItemSchema(CompleteSchema):
    """One job of POST /system/jobs/complete: a complete body with its job_id."""

    job_id = fields.UUID(required=True)


class CompleteManySchema(_JobList):
    """The body of POST /system/jobs/complete: many completions, acknowledged at once."""

    kept_as_text: ClassVar[PathTree] = {"jobs": {ANY_ITEM: {"result": KEEP_TEXT}}}

    jobs = ItemList(CompleteItemSchema, required=True)


class AdaptiveSchema(Schema):
    """How a bucket's effective refill follows reports of upstream throttling (AIMD).

    Each report multiplies the effective refill by `decrease`, never below `floor` x the
    configured refill; while none comes it regains `recovery_per_minute` x the configured
    refill per minute, up to the configured refill. All three are shares of it, all required.
    """

    # 1 would never slow down, 0 would stop the bucket for good.
    decrease = StrictNumber(
        required=True,
        validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False),
    )
    # Above 0, so that a throttled bucket still refills and Retry-After stays finite.
    floor = StrictNumber(required=True, validate=validate.Range(min=0, max=1, min_inclusive=False))
    # Above 0, or a cut would last for ever; at most 60: all of the refill back within a second.
    recovery_per_minute = StrictNumber(
        required=True,
        validate=validate.Range(min=0, max=MAX_RECOVERY_PER_MINUTE, min_inclusive=False),
    )


class DependencyLimitSchema(Schema):
    """The budget of one external dependency: bucket size, refill rate, and maybe adaptive."""

    capacity = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_CAPACITY))
    refill_per_second = StrictNumber(required=True, validate=validate.Range(min=0))
    # Absent: the bucket refills at refill_per_second whatever workers report.
    adaptive = fields.Nested(AdaptiveSchema)


class RetryBackoffSchema(Schema):
    """How long a retried job waits before its next attempt (a worker's fail with retry, or
    an expired lease), when the worker does not say (retry_after_seconds): `base_seconds`
    doubled for each attempt made, never above `max_seconds`, half of it at random. A base of
    0 turns it off: the job is queued again at once."""

    base_seconds = StrictNumber(
        required=True, validate=validate.Range(min=0, max=MAX_RETRY_AFTER_SECONDS)
    )
    max_seconds = StrictNumber(
        required=True, validate=validate.Range(min=0, max=MAX_RETRY_AFTER_SECONDS)
    )

    @validates_schema
    def _max_not_below_base(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["max_seconds"] < data["base_seconds"]:
            raise ValidationError("must be at least base_seconds", "max_seconds")


# Off unless a config turns it on: a retried job is queued again at once, as before it existed.
DEFAULT_RETRY_BACKOFF = {"base_seconds": 0, "max_seconds": 0}


def _share(**kwargs: Any) -> StrictNumber:
    """A tenant's share of each bucket: above 0, at most 1 (1: not limited apart)."""
    return StrictNumber(validate=validate.Range(min=0, max=1, min_inclusive=False), **kwargs)


class ConfigSchema(Schema):
    """A user's admission policy, as `janus config set` reads it.

    The fields are in the order the database gives a stored config back, so that dumping one
    (GET /dashboard/config, `janus config show`) keeps it.
    """

    # Left out: the user's pause state stays as it is (false for a new user).
    paused = StrictBoolean()
    min_priority = priority_field(load_default=1)
    priority_reserve = StrictNumber(
        load_default=0.2, validate=validate.Range(min=0, max=1, max_inclusive=False)
    )
    unknown_dependencies = Choice(UnknownDependencies, load_default=UnknownDependencies.REJECT)
    # Claims a job gets: a failure or an expired lease after the last one fails it for good.
    max_attempts = StrictInteger(
        load_default=DEFAULT_MAX_ATTEMPTS, validate=validate.Range(min=1, max=MAX_ATTEMPTS)
    )
    # Days a completed, failed or cancelled job is kept before `janus prune` deletes it.
    retention_days = StrictInteger(
        load_default=DEFAULT_RETENTION_DAYS, validate=validate.Range(min=1, max=MAX_RETENTION_DAYS)
    )
    retry_backoff = fields.Nested(
        RetryBackoffSchema, load_default=lambda: dict(DEFAULT_RETRY_BACKOFF)
    )
    # A job only tokens keep out: refused (reject), or accepted to wait in line (wait); a
    # request may say otherwise. And the longest a waiting job waits before it expires.
    when_limited = Choice(WhenLimited, load_default=WhenLimited.REJECT)
    max_wait_seconds = _max_wait_seconds(load_default=DEFAULT_MAX_WAIT_SECONDS)
    # enforce: refuse what does not fit; shadow: decide and record, then accept every job.
    mode = Choice(ConfigMode, load_default=ConfigMode.ENFORCE)
    # Each tenant's share of every bucket, and the tenants whose share differs.
    tenant_share = _share(load_default=1)
    tenant_overrides = fields.Dict(
        keys=name_field(),
        values=_share(),
        load_default=dict,
        validate=validate.Length(max=MAX_TENANT_OVERRIDES),
    )
    dependencies = fields.Dict(
        keys=dependency_name_field(),
        values=fields.Nested(DependencyLimitSchema),
        required=True,
        validate=validate.Length(max=MAX_DEPENDENCIES_PER_CONFIG),
    )


# The dashboard's reads: the query of GET /dashboard/jobs, which `janus jobs` reads too.

_MOMENT_MESSAGE = (
    "Not an ISO 8601 date and time with a timezone, such as 2025-01-31T09:00:00Z or "
    "2025-01-31T09:00:00+01:00 (in a URL, write + as %2B)."
)


def _moment() -> fields.AwareDateTime:
    return fields.AwareDateTime(
        error_messages={"invalid": _MOMENT_MESSAGE, "invalid_awareness": _MOMENT_MESSAGE}
    )


class JobHistoryQuerySchema(Schema):
    """The filters of GET /dashboard/jobs (its query, but for `limit` and `cursor`)."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    state = fields.String(validate=validate.OneOf(STATES))
    tenant_id = name_field(required=False)
    batch_name = name_field(required=False)
    source = fields.String(validate=validate.OneOf(SOURCES))
    # since <= the moment a job was decided < until: consecutive windows neither overlap nor
    # leave a gap.
    since = _moment()
    until = _moment()

    @validates_schema
    def _since_before_until(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "since" in data and "until" in data and data["since"] >= data["until"]:
            raise ValidationError("until must be later than since.", "until")
