"""The answers of the user's queue routes: GET /dashboard/queue, the user's jobs by state and
by dependency, and how long the buckets take to cover what waits (janus.queue_view); and
POST /dashboard/jobs/{job_id}/cancel and .../retry. Beside janus/schemas/answers.py, whose
conventions it follows: every field always there, numbers of the database exact."""

from __future__ import annotations

from marshmallow import fields, validate

from janus.queue_view import ENDED_WINDOW_SECONDS, QUEUE_MAX_JOBS
from janus.schemas.answers import amount
from janus.schemas.dumping import AnswerSchema
from janus.schemas.fields import UtcDateTime

_HOURS = ENDED_WINDOW_SECONDS // 3600


def _count(description: str) -> fields.Integer:
    return fields.Integer(
        required=True, validate=validate.Range(min=0), metadata={"description": description}
    )


class QueueStatesSchema(AnswerSchema):
    """The user's jobs in each state: every waiting, queued and running job; the completed,
    failed, cancelled and expired that finished since `ended_since`."""

    waiting = _count(
        "Jobs waiting: in their dependencies' line for their tokens, or for their run_at (a"
        " retry's backoff, a job submitted with one)."
    )
    queued = _count("Jobs a claim may hand out now.")
    running = _count("Jobs leased to a worker.")
    completed = _count("Completed since `ended_since`.")
    failed = _count("Failed for good since `ended_since`.")
    cancelled = _count("Cancelled since `ended_since`.")
    expired = _count("Expired since `ended_since`: not handed out within their max wait.")


class DependencyQueueSchema(AnswerSchema):
    """One dependency: the waiting, queued and running jobs that name it, what they cost in
    its tokens, its bucket now, and how long the bucket takes to cover what waits."""

    dependency = fields.String(required=True)
    waiting = _count("Waiting jobs that name it.")
    queued = _count("Queued jobs that name it.")
    running = _count("Running jobs that name it.")
    waiting_tokens = _count("What the waiting jobs cost in its tokens.")
    queued_tokens = _count("What the queued jobs cost in its tokens.")
    running_tokens = _count("What the running jobs cost in its tokens.")
    # Null without a bucket of this name (an unknown dependency the config allows).
    tokens = amount(allow_none=True)
    effective_refill_per_second = amount(allow_none=True)
    drain_seconds = amount(
        allow_none=True,
        metadata={
            "description": "Seconds until the bucket, at its effective refill of now, has gained"
            " what the waiting jobs cost beyond its tokens now (a queued job paid when it was"
            " admitted, a waiting one pays when it is handed out), rounded up to"
            " milliseconds: 0 when they cost nothing or its tokens cover them; null when"
            " more is needed and it never refills, or when there is no bucket."
        },
    )


class QueueAnswerSchema(AnswerSchema):
    """GET /dashboard/queue: the user's queue as of now."""

    states = fields.Nested(QueueStatesSchema, required=True)
    ended_since = UtcDateTime(
        required=True,
        metadata={
            "description": f"Since when completed, failed and cancelled jobs are counted:"
            f" {_HOURS} hours ago, or later when more than {QUEUE_MAX_JOBS:,} jobs finished"
            " since (then the newest are counted)."
        },
    )
    oldest_waiting_seconds = amount(
        allow_none=True,
        metadata={"description": "Age of the oldest waiting job (since it was submitted)."},
    )
    oldest_queued_seconds = amount(
        allow_none=True,
        metadata={"description": "Age of the oldest queued job, the oldest claimable one."},
    )
    dependencies = fields.Nested(DependencyQueueSchema, many=True, required=True)
    drain_seconds = amount(
        allow_none=True,
        metadata={
            "description": "The longest `drain_seconds` of the dependencies that have a bucket:"
            " null when one of them never drains, 0 when nothing waits."
        },
    )
    truncated = fields.Boolean(
        required=True,
        metadata={
            "description": f"True when a state holds more than {QUEUE_MAX_JOBS:,} jobs: the"
            f" dependencies' numbers then count the {QUEUE_MAX_JOBS:,} next in line of it"
            " (waiting by run_at, queued in claim order, running by lease end), and are"
            " lower bounds. `states` are always exact."
        },
    )


class CancelledSchema(AnswerSchema):
    """POST /dashboard/jobs/{job_id}/cancel: the job, now cancelled."""

    job_id = fields.UUID(required=True)
    state = fields.String(required=True, validate=validate.Equal("cancelled"))


class RetriedSchema(AnswerSchema):
    """POST /dashboard/jobs/{job_id}/retry: the job, waiting again."""

    job_id = fields.UUID(required=True)
    state = fields.String(required=True, validate=validate.Equal("waiting"))
