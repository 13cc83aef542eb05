"""The operations of the job routes (admission, under both /dashboard and /system) and of the
queue (workers' routes, under /system only, and the user's cancel and retry, under
/dashboard)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from janus.admission import BatchMode, Mode
from janus.keys import Scope
from janus.openapi import examples
from janus.openapi.operations import BODY_ERRORS, DATABASE_ERRORS, Answer, Operation
from janus.reasons import REASON_CODE_HEADER
from janus.schemas.answers import (
    ClaimAnswerSchema,
    CompleteManyAnswerSchema,
    DecisionSchema,
    FinishedSchema,
    HeartbeatAnswerSchema,
    PartialBatchAnswerSchema,
    QuoteAnswerSchema,
)
from janus.schemas.queue_answers import CancelledSchema, RetriedSchema
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
        body_examples={"seed": examples.SEED_JOB, "wait": examples.WAIT_JOB},
        parameters=_IDEMPOTENCY,
        answers={
            202: Answer(
                "Accepted: the job is stored and queued for workers; or, limited only by tokens"
                " under `when_limited` wait (or named a `run_at`), accepted to wait in its"
                " dependencies' line, paying its tokens when a worker claims it.",
                DecisionSchema,
                {"accepted": examples.ACCEPTED, "waiting": examples.WAITING},
                _ADMISSION_HEADERS,
            ),
            429: Answer(
                "Rejected: the job's reason says why; Retry-After when waiting can help.",
                DecisionSchema,
                {"rate_limited": examples.RATE_LIMITED},
                {"Retry-After": False, REASON_CODE_HEADER: True, **_BUDGET_HEADERS},
            ),
        },
        errors=ADMISSION_ERRORS,
        scopes=(Scope.PRODUCE,),
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
                {REASON_CODE_HEADER: True, **_BUDGET_HEADERS},
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
        scopes=(Scope.PRODUCE,),
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
        scopes=(Scope.PRODUCE,),
    )


def _queue(
    summary: str,
    body: Schema,
    body_example: dict[str, Any],
    answer: Answer,
    errors: tuple[int, ...],
) -> Operation:
    """A worker's call: a body, one 200 answer."""
    return Operation(
        "post",
        summary,
        tag="Queue",
        body=body,
        body_examples=body_example,
        answers={200: answer},
        errors=errors,
        scopes=(Scope.WORK,),
    )


CLAIM = _queue(
    "Lease queued jobs, highest priority first",
    ClaimSchema(),
    {"ten": {"limit": 10, "lease_seconds": 60}},
    Answer(
        'The jobs leased; `{"jobs": []}` when none is queued.',
        ClaimAnswerSchema,
        {"one": examples.CLAIMED},
    ),
    QUEUE_ERRORS,
)


def complete_many(max_batch_jobs: int) -> Operation:
    """POST /system/jobs/complete: many completions at once."""
    return _queue(
        "Complete many leased jobs in one transaction",
        CompleteManySchema(max_jobs=max_batch_jobs),
        {"one": {"jobs": [{**examples.LEASE, "result": {}}]}},
        Answer(
            "Each item's outcome, in request order; an item not completed is unchanged.",
            CompleteManyAnswerSchema,
            {"three": examples.COMPLETED_MANY},
        ),
        QUEUE_ERRORS,
    )


HEARTBEAT = _queue(
    "Extend a lease",
    HeartbeatSchema(),
    {"minute": {"lease_token": examples.LEASE_TOKEN, "lease_seconds": 60}},
    Answer(
        "The lease now expires `lease_seconds` from now.",
        HeartbeatAnswerSchema,
        {"extended": examples.HEARTBEAT},
    ),
    LEASE_ERRORS,
)

COMPLETE = _queue(
    "Complete a leased job, settling its real cost",
    CompleteSchema(),
    {"done": examples.COMPLETION},
    Answer("Completed.", FinishedSchema, {"completed": examples.finished("completed")}),
    LEASE_ERRORS,
)

FAIL = _queue(
    "Fail a leased job: back to the queue, or failed for good",
    FailSchema(),
    {"retry": examples.FAILURE, "retry_after": examples.THROTTLED_FAILURE},
    Answer(
        "Back while `retry` is true and attempts remain: waiting (for `retry_after_seconds` or"
        " the config's `retry_backoff`, then in its dependencies' line, paying its tokens"
        " again when it is handed out again); else failed.",
        FinishedSchema,
        {
            "waiting": examples.finished("waiting"),
            "failed": examples.finished("failed"),
        },
    ),
    LEASE_ERRORS,
)

CANCEL = Operation(
    "post",
    "Cancel a queued or waiting job, giving back its tokens if no worker was handed it",
    tag="Queue",
    answers={
        200: Answer(
            "The job is cancelled (also when it already was).",
            CancelledSchema,
            {"cancelled": {"job_id": examples.CLAIMED_JOB_ID, "state": "cancelled"}},
        )
    },
    # 404: no such job of this user; 409: running, ended or rejected.
    errors=(404, 409, *DATABASE_ERRORS),
    scopes=(Scope.ADMIN,),
)

RETRY = Operation(
    "post",
    "Send a failed, expired or cancelled job back to wait, to be paced and paid for again",
    tag="Queue",
    answers={
        200: Answer(
            "The job waits again, due at once, with a new max wait and a fresh set of"
            " attempts: the next claim puts it in its dependencies' line, and it takes its"
            " tokens when it is handed out.",
            RetriedSchema,
            {"waiting": {"job_id": examples.CLAIMED_JOB_ID, "state": "waiting"}},
        )
    },
    # 404: no such job of this user; 409: queued, waiting, running, completed or rejected.
    errors=(404, 409, *DATABASE_ERRORS),
    scopes=(Scope.ADMIN,),
)
