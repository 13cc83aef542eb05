"""The operations of the dashboard's reads: the job history, one job, activity, the buckets,
the queue."""

from __future__ import annotations

from janus.history import ACTIVITY_MAX_JOBS, ACTIVITY_MINUTES, PAGE_READS_AT_MOST
from janus.keys import Scope
from janus.openapi import examples
from janus.openapi.operations import DATABASE_ERRORS, READ_ERRORS, Answer, Operation
from janus.schemas.answers import (
    ActivityAnswerSchema,
    JobDetailSchema,
    JobHistoryAnswerSchema,
    QuotasAnswerSchema,
)
from janus.schemas.queue_answers import QueueAnswerSchema


def _read(
    summary: str,
    answer: Answer,
    errors: tuple[int, ...] = READ_ERRORS,
    parameters: tuple[str, ...] = (),
    scopes: tuple[Scope, ...] = (Scope.READ,),
) -> Operation:
    """One of the dashboard's reads: a GET with one 200 answer (400: a query parameter it
    does not take, or one out of range)."""
    return Operation(
        "get",
        summary,
        tag="History",
        answers={200: answer},
        errors=errors,
        parameters=parameters,
        scopes=scopes,
    )


# A producer reads the jobs it sent, as the dashboard does.
_JOBS_READERS = (Scope.PRODUCE, Scope.READ)


JOBS = _read(
    "The user's jobs, newest first, filtered, a page at a time",
    Answer(
        "A page of jobs; `next` is the cursor of the next page, null on the last. A page reads"
        f" at most {PAGE_READS_AT_MOST:,} jobs: one may be short, even empty, and still have a"
        " `next`.",
        JobHistoryAnswerSchema,
        {"page": {"jobs": [examples.JOB_SUMMARY], "next": None}},
    ),
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
    scopes=_JOBS_READERS,
)

JOB = _read(
    "One job with its reason, costs, payload and outcome",
    Answer(
        "The job; the payload and result exactly as they were sent.",
        JobDetailSchema,
        {"queued": examples.QUEUED_JOB, "shadow": examples.SHADOW_JOB},
    ),
    # 404: no such job of this user.
    errors=(400, 404, *DATABASE_ERRORS),
    scopes=_JOBS_READERS,
)

ACTIVITY = _read(
    "The user's jobs per minute over the last hour, accepted and rejected by reason",
    Answer(
        f"Each of the last {ACTIVITY_MINUTES} minutes (UTC), oldest first, the current one"
        f" last. At most the hour's newest {ACTIVITY_MAX_JOBS:,} jobs are counted: when it"
        " held more, `counted_since` is the moment the count starts from, the minutes that"
        " ended before it are null (not counted), and the minute it falls in counts its"
        " jobs from then on; null when every job was counted.",
        ActivityAnswerSchema,
        {
            "all_counted": examples.activity(None),
            "newest_counted": examples.activity(ACTIVITY_MINUTES - 2),
        },
    ),
)

QUOTAS = _read(
    "Each token bucket of the user as of now",
    Answer(
        "The active config's mode, the buckets by dependency name, and the tenant buckets"
        " closest to their limit (at most 100; a tenant not listed is fuller, most often"
        " full); a null mode and no buckets without an active config.",
        QuotasAnswerSchema,
        {"two": examples.QUOTAS, "none": examples.NO_QUOTAS},
    ),
)

QUEUE = _read(
    "The user's queue: jobs by state and by dependency, and how long the buckets take",
    Answer(
        "Every waiting, queued and running job counted by state, the jobs that ended recently"
        " (since `ended_since`), the age of the oldest waiting and queued jobs, and for each"
        " dependency (every bucket, and every name a waiting, queued or running job calls) what"
        " those jobs cost in its tokens and how long its bucket takes, at its refill of now, to"
        " gain what the waiting and queued jobs cost beyond its tokens. Those jobs took their"
        " tokens when they were admitted: the drain is the backlog in the bucket's own time"
        " (how long the bucket takes to earn as much again), not when workers will run them.",
        QueueAnswerSchema,
        {"two": examples.QUEUE},
    ),
)
