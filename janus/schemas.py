"""Marshmallow schemas: the one place that knows what a valid request body or config is."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any, ClassVar

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    missing,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from janus.admission import ConfigMode, UnknownDependencies
from janus.history import (
    SOURCES,
    STATES,
    STATUSES,
    Activity,
    JobRecord,
    JobSummary,
    MinuteActivity,
)
from janus.json_text import ANY_ITEM, KEEP_TEXT, JsonText, PathTree, RawJson
from janus.quotas import BucketQuota, TenantQuota, UserQuotas

MAX_NAME_LENGTH = 255
MAX_DEPENDENCIES_PER_JOB = 32
MAX_DEPENDENCY_NAME_LENGTH = 100
MAX_COST = 1_000_000
MAX_PAYLOAD_BYTES = 64 * 1024
# Deep enough for any real document; far below where recursive JSON code would fail.
MAX_PAYLOAD_DEPTH = 64
MAX_CAPACITY = 1_000_000_000_000
# The queue's limits (the configs table's CHECKs say the same).
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS = 100
DEFAULT_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 3650
MAX_CLAIM_LIMIT = 100
DEFAULT_LEASE_SECONDS = 60
MAX_LEASE_SECONDS = 3600
MAX_ERROR_LENGTH = 10_000
MAX_RECOVERY_PER_MINUTE = 60
MAX_TENANT_OVERRIDES = 10_000


class StrictInteger(fields.Integer):
    """A JSON integer and nothing else: `"8"`, `8.0` and `true` are errors."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class StrictNumber(fields.Float):
    """A finite JSON number (integer or decimal); strings, booleans, NaN and infinity are errors."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("invalid")
        return value


class StrictBoolean(fields.Boolean):
    """A JSON true or false; `"true"` and `1` are errors."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _storable_text(text: str) -> None:
    """Postgres text holds neither NUL nor lone surrogates; refuse them as input errors."""
    if "\x00" in text:
        raise ValidationError("Text may not contain the NUL character.")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValidationError("Text is not valid Unicode.") from None


def _payload_depth_within_limit(payload: dict[str, Any]) -> bool:
    """Whether no object or array of `payload` is nested deeper than MAX_PAYLOAD_DEPTH.

    Iterative, so a hostile depth costs a clear 400 and never a RecursionError.
    """
    pending: list[tuple[Any, int]] = [(payload, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_PAYLOAD_DEPTH:
                return False
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
    return True


class Text(fields.String):
    """A string Postgres can store as text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        _storable_text(text)
        return text


def _name(*, required: bool = True) -> Text:
    return Text(required=required, validate=validate.Length(min=1, max=MAX_NAME_LENGTH))


def _priority(**kwargs: Any) -> StrictInteger:
    return StrictInteger(validate=validate.Range(min=1, max=10), **kwargs)


def _dependency_name() -> Text:
    return Text(validate=validate.Length(min=1, max=MAX_DEPENDENCY_NAME_LENGTH))


# Dependencies and Payload are single fields rather than a Dict of key and value fields: they
# are validated once per job of batches of up to 1,000 jobs, where marshmallow's per-field
# overhead was most of a request's cost. Their error messages keep the Dict shape.


class Dependencies(fields.Field[dict[str, int]]):
    """{name: cost}: at most 32 names of 1 to 100 characters, costs integers 1 to 1,000,000.

    `minimum` and `maximum` bound the values otherwise (a real cost reported by a worker may
    be 0).
    """

    def __init__(self, *, minimum: int = 1, maximum: int = MAX_COST, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, int]:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value) > MAX_DEPENDENCIES_PER_JOB:
            raise ValidationError(f"At most {MAX_DEPENDENCIES_PER_JOB} dependencies.")
        errors: dict[str, dict[str, list[str]]] = {}
        for name, cost in value.items():
            problems: dict[str, list[str]] = {}
            if not 1 <= len(name) <= MAX_DEPENDENCY_NAME_LENGTH:
                problems["key"] = [f"Length must be between 1 and {MAX_DEPENDENCY_NAME_LENGTH}."]
            else:
                try:
                    _storable_text(name)
                except ValidationError as error:
                    problems["key"] = error.messages  # type: ignore[assignment]
            if isinstance(cost, bool) or not isinstance(cost, int):
                problems["value"] = ["Not a valid integer."]
            elif not self.minimum <= cost <= self.maximum:
                problems["value"] = [
                    f"Must be greater than or equal to {self.minimum} and less than or equal"
                    f" to {self.maximum}."
                ]
            if problems:
                errors[name] = problems
        if errors:
            raise ValidationError(errors)
        return value


class Payload(fields.Field[str]):
    """A JSON object of at most 64 KiB and 64 levels, as the exact JSON text the client sent.

    The body reader hands it over as RawJson (see `kept_as_text` below), so every number and
    string reaches the database and the workers as written. Text that Postgres cannot hold
    as `text` (NUL, lone surrogates) is fine here: the `json` column keeps their escapes.
    A worker's `result` is the same kind of value (`what` names it in the messages).
    """

    def __init__(self, *, what: str = "Payload", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.what = what

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, RawJson):
            raise ValidationError("Not a valid mapping type.")
        if not isinstance(value.value, dict):
            raise ValidationError("Not a valid mapping type.")
        if len(value.text.encode()) > MAX_PAYLOAD_BYTES:
            raise ValidationError(f"{self.what} is larger than {MAX_PAYLOAD_BYTES} bytes as sent.")
        if not _payload_depth_within_limit(value.value):
            raise ValidationError(f"{self.what} is nested deeper than {MAX_PAYLOAD_DEPTH} levels.")
        return value.text


class ItemList(fields.Nested):
    """A list of `schema` items, loaded exactly as fields.Nested(schema, many=True) loads it.

    Items are loaded field by field, with each field's own deserialize, and without the
    schema's per-item machinery (error stores, getters, hooks), which was most of a 1,000-job
    batch's validation time. A list with any item that does not load that way (an error, an
    unknown key) is loaded again by Nested itself, for its errors as marshmallow words them.
    `schema` must have no hooks and no data_key, so that both ways load alike.
    """

    def __init__(self, schema: type[Schema], **kwargs: Any) -> None:
        declared = schema._declared_fields.values()
        if any(schema._hooks.values()) or any(field.data_key for field in declared):
            raise TypeError(f"{schema.__name__} has hooks or data keys: use fields.Nested")
        super().__init__(schema, many=True, **kwargs)

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Mapping[str, Any] | None,
        partial: bool | Sequence[str] | AbstractSet[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        if isinstance(value, list) and not partial:
            items = _load_items(value, self.schema.load_fields)
            if items is not None:
                return items
        return super()._deserialize(value, attr, data, partial=partial, **kwargs)


def _load_items(items: list[Any], item_fields: dict[str, fields.Field]) -> list[Any] | None:
    """Each item loaded by `item_fields`, or None when one of them does not load cleanly."""
    loaded = []
    try:
        for item in items:
            if not isinstance(item, dict) or not item.keys() <= item_fields.keys():
                return None
            values = {
                name: field.deserialize(item.get(name, missing), name, item)
                for name, field in item_fields.items()
            }
            loaded.append({name: value for name, value in values.items() if value is not missing})
    except ValidationError:
        return None
    return loaded


class JobSchema(Schema):
    """One job of a batch: who it is for, how urgent, and what it will spend."""

    tenant_id = _name()
    priority = _priority(required=True)
    dependencies = Dependencies(load_default=dict)
    payload = Payload(load_default="{}")


class SingleJobSchema(JobSchema):
    """The body of POST .../jobs: one job and the batch it belongs to."""

    # What the body reader keeps as the exact text sent: the payload.
    kept_as_text: ClassVar[PathTree] = {"payload": KEEP_TEXT}

    batch_name = _name()


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


class BatchSchema(_JobList):
    """The body of POST .../jobs/batch and .../jobs/batch/atomic."""

    kept_as_text: ClassVar[PathTree] = {"jobs": {ANY_ITEM: {"payload": KEEP_TEXT}}}

    batch_name = _name()
    jobs = ItemList(JobSchema, required=True)


# A single job's fields, which a quote of a batch leaves to its jobs.
_SINGLE_JOB_FIELDS = ("tenant_id", "priority", "dependencies", "payload")


class QuoteSchema(_JobList):
    """The body of POST .../jobs/quote: a single job's body, or a batch's with `atomic`.

    Which it is depends on `jobs`: with it, a batch (partial, or atomic when `atomic` is
    true), whose jobs carry their own fields; without it, one job, as POST .../jobs takes it.
    """

    kept_as_text: ClassVar[PathTree] = {
        "payload": KEEP_TEXT,
        "jobs": {ANY_ITEM: {"payload": KEEP_TEXT}},
    }

    batch_name = _name()
    tenant_id = _name(required=False)
    priority = _priority()
    dependencies = Dependencies()
    payload = Payload()
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
    return fields.List(_dependency_name(), validate=validate.Length(max=MAX_DEPENDENCIES_PER_JOB))


def _lease_seconds(**kwargs: Any) -> StrictInteger:
    return StrictInteger(validate=validate.Range(min=1, max=MAX_LEASE_SECONDS), **kwargs)


class ClaimSchema(Schema):
    """The body of POST /system/jobs/claim: how many jobs, for how long, and which."""

    limit = StrictInteger(load_default=1, validate=validate.Range(min=1, max=MAX_CLAIM_LIMIT))
    lease_seconds = _lease_seconds(load_default=DEFAULT_LEASE_SECONDS)
    tenant_id = _name(required=False)
    batch_name = _name(required=False)
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


def _share(**kwargs: Any) -> StrictNumber:
    """A tenant's share of each bucket: above 0, at most 1 (1: not limited apart)."""
    return StrictNumber(validate=validate.Range(min=0, max=1, min_inclusive=False), **kwargs)


class ConfigSchema(Schema):
    """A user's admission policy, as `janus config set` reads it."""

    # Left out: the user's pause state stays as it is (false for a new user).
    paused = StrictBoolean()
    min_priority = _priority(load_default=1)
    priority_reserve = StrictNumber(
        load_default=0.2, validate=validate.Range(min=0, max=1, max_inclusive=False)
    )
    # Read by value through Text: the same messages as any other text field of a config.
    unknown_dependencies = fields.Enum(
        UnknownDependencies, by_value=Text, load_default=UnknownDependencies.REJECT
    )
    dependencies = fields.Dict(
        keys=_dependency_name(),
        values=fields.Nested(DependencyLimitSchema),
        required=True,
    )
    # enforce: refuse what does not fit; shadow: decide and record, then accept every job.
    mode = fields.Enum(ConfigMode, by_value=Text, load_default=ConfigMode.ENFORCE)
    # Each tenant's share of every bucket, and the tenants whose share differs.
    tenant_share = _share(load_default=1)
    tenant_overrides = fields.Dict(
        keys=_name(),
        values=_share(),
        load_default=dict,
        validate=validate.Length(max=MAX_TENANT_OVERRIDES),
    )
    # Claims a job gets: a failure or an expired lease after the last one fails it for good.
    max_attempts = StrictInteger(
        load_default=DEFAULT_MAX_ATTEMPTS, validate=validate.Range(min=1, max=MAX_ATTEMPTS)
    )
    # Days a completed or failed job is kept before `janus prune` deletes it.
    retention_days = StrictInteger(
        load_default=DEFAULT_RETENTION_DAYS, validate=validate.Range(min=1, max=MAX_RETENTION_DAYS)
    )


# The dashboard's reads: the query of GET /dashboard/jobs, and the answers of the job history
# and the quotas, which `janus jobs --json` and `janus quotas --json` print too.

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
    tenant_id = _name(required=False)
    batch_name = _name(required=False)
    source = fields.String(validate=validate.OneOf(SOURCES))
    # since <= created_at < until: consecutive windows neither overlap nor leave a gap.
    since = _moment()
    until = _moment()

    @validates_schema
    def _since_before_until(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "since" in data and "until" in data and data["since"] >= data["until"]:
            raise ValidationError("until must be later than since.", "until")


def _moment_text(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat()


def job_item(job: JobSummary) -> dict[str, Any]:
    """One job of the history, as GET /dashboard/jobs and `janus jobs --json` show it."""
    return {
        "job_id": str(job.job_id),
        "created_at": job.created_at.isoformat(),
        "source": job.source,
        "batch_name": job.batch_name,
        "tenant_id": job.tenant_id,
        "priority": job.priority,
        "status": job.status,
        "reason": job.reason,
        "retry_after": job.retry_after,
        "state": job.state,
        "attempts": job.attempts,
    }


def job_detail(job: JobRecord) -> dict[str, Any]:
    """One job with everything stored about it, as GET /dashboard/jobs/{job_id} shows it.

    Write it with json_text.dumps: the payload, result, dependencies and actual costs are the
    JSON text stored, written in as it is.
    """
    return {
        **job_item(job),
        "dependencies": JsonText(job.dependencies),
        "payload": JsonText(job.payload),
        "lease_expires_at": _moment_text(job.lease_expires_at),
        "finished_at": _moment_text(job.finished_at),
        "actual_costs": None if job.actual_costs is None else JsonText(job.actual_costs),
        "result": None if job.result is None else JsonText(job.result),
        "error": job.error,
        "config_version": job.config_version,
        "shadow_status": job.shadow_status,
        "shadow_reason": job.shadow_reason,
    }


def quota_item(quota: BucketQuota) -> dict[str, Any]:
    """One bucket as GET /dashboard/quotas and `janus quotas --json` show it.

    Its numbers are Decimals: write it with json_text.dumps, which keeps them exact.
    """
    return {
        "dependency": quota.dependency,
        "capacity": quota.capacity,
        "refill_per_second": quota.refill_per_second,
        "effective_refill_per_second": quota.effective_refill_per_second,
        "adaptive": quota.adaptive,
        "tokens": quota.tokens,
        "full_in_seconds": quota.full_in_seconds,
    }


def tenant_quota_item(quota: TenantQuota) -> dict[str, Any]:
    """One tenant bucket as GET /dashboard/quotas and `janus quotas --json` show it.

    Its numbers are Decimals: write it with json_text.dumps, which keeps them exact.
    """
    return {
        "dependency": quota.dependency,
        "tenant_id": quota.tenant_id,
        "share": quota.share,
        "capacity": quota.capacity,
        "refill_per_second": quota.refill_per_second,
        "tokens": quota.tokens,
        "full_in_seconds": quota.full_in_seconds,
    }


def quotas_answer(quotas: UserQuotas) -> dict[str, Any]:
    """GET /dashboard/quotas's answer, which `janus quotas --json` prints too.

    `quotas` is the answer's older member, unchanged; `mode` and `tenant_quotas` came with
    tenant shares. Write it with json_text.dumps.
    """
    return {
        "mode": quotas.mode,
        "quotas": [quota_item(quota) for quota in quotas.buckets],
        "tenant_quotas": [tenant_quota_item(quota) for quota in quotas.tenants],
    }


def _utc_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def minute_item(minute: MinuteActivity) -> dict[str, Any]:
    """One minute of GET /dashboard/activity: rejections by reason, in name order."""
    rejected = minute.rejected
    return {
        "minute": _utc_text(minute.minute),
        "accepted": minute.accepted,
        "rejected": None if rejected is None else dict(sorted(rejected.items())),
    }


def activity_answer(activity: Activity) -> dict[str, Any]:
    """GET /dashboard/activity's answer: each minute, oldest first, as ISO 8601 UTC, with its
    counts (null for a minute that ended before `counted_since`)."""
    return {
        "minutes": [minute_item(minute) for minute in activity.minutes],
        "counted_since": _utc_text(activity.counted_since),
    }
