"""The operations of the job routes (admission, under both /dashboard and /system) and of the
queue (workers' routes, under /system only)."""

from __future__ import annotations

from janus.admission import BatchMode, Mode
from janus.openapi import examples
from janus.openapi.operations import BODY_ERRORS, DATABASE_ERRORS, Answer, Operation
from janus.schemas.answers import (
    ClaimAnswerSchema,
    CompleteManyAnswerSchema,
    DecisionSchema,
    FinishedSchema,
    HeartbeatAnswerSchema,
    PartialBatchAnswerSchema,
    QuoteAnswerSchema,
)
from janus.schemas.requests import (
    BatchSchema,
    ClaimSchema,
    CompleteManySchema,
    CompleteSchema,
    FailSchema,
    HeartbeatSchema,
    QuoteSchema,
    SingleJobSchema,
)

# The errors of every job route: a body, a decision, an Idempotency-Key.
ADMISSION_ERRORS = (*BODY_ERRORS, 403, 409, 422, *DATABASE_ERRORS)
# The errors of a lease call on one job.
LEASE_ERRORS = (*BODY_ERRORS, 404, 409, *DATABASE_ERRORS)
QUEUE_ERRORS = (*BODY_ERRORS, *DATABASE_ERRORS)

# Every job answer tells the buckets its request named, when there is one to tell.
_BUDGET_HEADERS = {"RateLimit-Policy": False, "RateLimit": False}
# An accepted answer may also be a replay (it then tells no budget).
_ADMISSION_HEADERS = {"Idempotent-Replayed": False, **_BUDGET_HEADERS}
_IDEMPOTENCY = ("Idempotency-Key",)


def submit() -> Operation:
    """POST .../jobs: one job."""
    return Operation(
        "post",
        "Decide one job",
        tag="Jobs",
        body=SingleJobSchema(),
        body_examples={"seed": examples.SEED_JOB},
        parameters=_IDEMPOTENCY,
        answers={
            202: Answer(
                "Accepted: the job is stored and queued for workers.",
                DecisionSchema,
                {"accepted": examples.ACCEPTED},
                _ADMISSION_HEADERS,
            ),
            429: Answer(
                "Rejected: the job's reason says why; Retry-After when waiting can help.",
                DecisionSchema,
                {"rate_limited": examples.RATE_LIMITED},
                {"Retry-After": False, **_BUDGET_HEADERS},
            ),
        },
        errors=ADMISSION_ERRORS,
    )


def batch(mode: BatchMode, max_batch_jobs: int) -> Operation:
    """POST .../jobs/batch (partial) or .../jobs/batch/atomic."""
    answers = {
        Mode.PARTIAL: {
            200: Answer(
                "Decided: one result per job, in request order, with the Retry-After of a job"
                " that waiting would let in.",
                PartialBatchAnswerSchema,
                {
                    "seed": examples.SEED_PARTIAL_ANSWER,
                    "rate_limited": examples.RATE_LIMITED_PARTIAL_ANSWER,
                },
                _ADMISSION_HEADERS,
            )
        },
        Mode.ATOMIC: {
            202: Answer(
                "All accepted, in request order.",
                DecisionSchema,
                {"accepted": examples.ATOMIC_ACCEPTED},
                _ADMISSION_HEADERS,
                many=True,
            ),
            207: Answer(
                "Any rejected: nothing taken, nothing stored; every other job's reason is"
                " `batch rejected atomically`.",
                DecisionSchema,
                {"rejected": examples.ATOMIC_REJECTED},
                _BUDGET_HEADERS,
                many=True,
            ),
        },
    }
    return Operation(
        "post",
        "Decide a batch all or nothing (atomic)"
        if mode is Mode.ATOMIC
        else "Decide a batch job by job (partial)",
        tag="Jobs",
        body=BatchSchema(max_jobs=max_batch_jobs),
        body_examples={"seed": examples.SEED_BATCH},
        parameters=_IDEMPOTENCY,
        answers=answers[mode],
        errors=ADMISSION_ERRORS,
    )


def quote(max_batch_jobs: int) -> Operation:
    """POST .../jobs/quote: a single job's or a batch's body, answered with no side effect."""
    return Operation(
        "post",
        "Quote: what a job or a batch would be answered now, with no side effect",
        tag="Jobs",
        body=QuoteSchema(max_jobs=max_batch_jobs),
        body_examples={
            "single": examples.SEED_JOB,
            "partial": examples.SEED_BATCH,
            "atomic": {**examples.SEED_BATCH, "atomic": True},
        },
        parameters=_IDEMPOTENCY,
        answers={
            200: Answer(
                "The decisions the real request would get now, and its status; nothing is"
                " stored, no token taken, no Idempotency-Key remembered.",
                QuoteAnswerSchema,
                examples.QUOTES,
            )
        },
        errors=ADMISSION_ERRORS,
    )


CLAIM = Operation(
    "post",
    "Lease queued jobs, highest priority first",
    tag="Queue",
    body=ClaimSchema(),
    body_examples={"ten": {"limit": 10, "lease_seconds": 60}},
    answers={
        200: Answer(
            'The jobs leased; `{"jobs": []}` when none is queued.',
            ClaimAnswerSchema,
            {"one": examples.CLAIMED},
        )
    },
    errors=QUEUE_ERRORS,
)


def complete_many(max_batch_jobs: int) -> Operation:
    """POST /system/jobs/complete: many completions at once."""
    return Operation(
        "post",
        "Complete many leased jobs in one transaction",
        tag="Queue",
        body=CompleteManySchema(max_jobs=max_batch_jobs),
        body_examples={
            "one": {
                "jobs": [
                    {
                        "job_id": examples.CLAIMED_JOB_ID,
                        "lease_token": examples.LEASE_TOKEN,
                        "result": {},
                    }
                ]
            }
        },
        answers={
            200: Answer(
                "Each item's outcome, in request order; an item not completed is unchanged.",
                CompleteManyAnswerSchema,
                {"three": examples.COMPLETED_MANY},
            )
        },
        errors=QUEUE_ERRORS,
    )


HEARTBEAT = Operation(
    "post",
    "Extend a lease",
    tag="Queue",
    body=HeartbeatSchema(),
    body_examples={"minute": {"lease_token": examples.LEASE_TOKEN, "lease_seconds": 60}},
    answers={
        200: Answer(
            "The lease now expires `lease_seconds` from now.",
            HeartbeatAnswerSchema,
            {
                "extended": {
                    "job_id": examples.CLAIMED_JOB_ID,
                    "lease_expires_at": examples.LEASE_EXPIRES_AT,
                }
            },
        )
    },
    errors=LEASE_ERRORS,
)

COMPLETE = Operation(
    "post",
    "Complete a leased job, settling its real cost",
    tag="Queue",
    body=CompleteSchema(),
    body_examples={
        "done": {
            "lease_token": examples.LEASE_TOKEN,
            "result": {"answer": 42},
            **examples.SETTLEMENT,
        }
    },
    answers={
        200: Answer(
            "Completed.",
            FinishedSchema,
            {"completed": {**examples.FINISHED, "state": "completed"}},
        )
    },
    errors=LEASE_ERRORS,
)

FAIL = Operation(
    "post",
    "Fail a leased job: back to the queue, or failed for good",
    tag="Queue",
    body=FailSchema(),
    body_examples={
        "retry": {
            "lease_token": examples.LEASE_TOKEN,
            "error": "upstream timed out",
            "retry": True,
        }
    },
    answers={
        200: Answer(
            "Queued again while `retry` is true and attempts remain, else failed.",
            FinishedSchema,
            {
                "requeued": {**examples.FINISHED, "state": "queued"},
                "failed": {**examples.FINISHED, "state": "failed"},
            },
        )
    },
    errors=LEASE_ERRORS,
)
