"""The queue's routes: POST /system/jobs/claim, the lease calls on /system/jobs/{job_id}/...,
POST /system/jobs/complete for many completions at once, and the user's
POST /dashboard/jobs/{job_id}/cancel and .../retry."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import falcon

from janus import json_text, metrics
from janus.queue import (
    CancelOutcome,
    ClaimRequest,
    Finish,
    JobQueue,
    LeaseOutcome,
    RetryOutcome,
)
from janus.resources.requests import authenticated_user, load_body
from janus.schemas.answers import (
    ClaimAnswerSchema,
    CompleteManyAnswerSchema,
    FinishedSchema,
    HeartbeatAnswerSchema,
)
from janus.schemas.queue_answers import CancelledSchema, RetriedSchema
from janus.schemas.requests import (
    ClaimSchema,
    CompleteManySchema,
    CompleteSchema,
    FailSchema,
    HeartbeatSchema,
)

NO_SUCH_JOB = "no job with this id"
STALE_LEASE = (
    "this lease_token is not the job's current lease (expired, taken over by a later claim, "
    "or already ended); nothing was changed"
)


CLAIMED = ClaimAnswerSchema()
HEARTBEAT = HeartbeatAnswerSchema()
FINISHED = FinishedSchema()
COMPLETED_MANY = CompleteManyAnswerSchema()
CANCELLED = CancelledSchema()
RETRIED = RetriedSchema()


def _raise_for(outcome: LeaseOutcome) -> None:
    """404 or 409 for a lease call that changed nothing."""
    if outcome is LeaseOutcome.NOT_FOUND:
        raise falcon.HTTPNotFound(description=NO_SUCH_JOB)
    if outcome is LeaseOutcome.STALE_LEASE:
        raise falcon.HTTPConflict(description=STALE_LEASE)


def _finish_item(job_id: UUID, body: dict[str, Any], *, failed: bool) -> Finish:
    throttled = body.get("upstream_throttled")
    return Finish(
        job_id=job_id,
        lease_token=body["lease_token"],
        failed=failed,
        result=body.get("result"),
        error=body.get("error"),
        retry=body.get("retry", True),
        actual_costs=body.get("actual_costs"),
        upstream_throttled=None if throttled is None else tuple(throttled),
        retry_after_seconds=body.get("retry_after_seconds"),
    )


class ClaimResource:
    """POST /system/jobs/claim: lease queued jobs to the calling worker; 200 even when none."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._schema = ClaimSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Claim up to `limit` jobs."""
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        dependencies = body.get("dependencies")
        claim = self._queue.claim(
            ClaimRequest(
                user_id=user_id,
                limit=body["limit"],
                lease_seconds=body["lease_seconds"],
                tenant_id=body.get("tenant_id"),
                batch_name=body.get("batch_name"),
                dependencies=None if dependencies is None else tuple(dependencies),
            )
        )
        metrics.count_claim(claim)
        resp.status = falcon.HTTP_200
        resp.content_type = falcon.MEDIA_JSON
        # Every payload is written in as the exact text the producer sent.
        resp.text = json_text.dumps(CLAIMED.dump({"jobs": claim.jobs}))


class HeartbeatResource:
    """POST /system/jobs/{job_id}/heartbeat: extend the lease."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._schema = HeartbeatSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        """Extend the lease by `lease_seconds` from now; 404 or 409 otherwise."""
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        beat = self._queue.heartbeat(user_id, job_id, body["lease_token"], body["lease_seconds"])
        _raise_for(beat.outcome)
        assert beat.lease_expires_at is not None
        resp.media = HEARTBEAT.dump({"job_id": job_id, "lease_expires_at": beat.lease_expires_at})


class FinishResource:
    """POST /system/jobs/{job_id}/complete or .../fail: end the lease."""

    def __init__(self, queue: JobQueue, *, failed: bool) -> None:
        self._queue = queue
        self._failed = failed
        self._schema = FailSchema() if failed else CompleteSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        """Complete or fail the job, settling its real cost; 404 or 409 otherwise."""
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        [finished] = self._queue.finish(user_id, [_finish_item(job_id, body, failed=self._failed)])
        _raise_for(finished.outcome)
        resp.media = FINISHED.dump(finished)


# The batch answer's outcome for an item, by how its lease call went.
_BATCH_OUTCOMES = {
    LeaseOutcome.OK: "completed",
    LeaseOutcome.NOT_FOUND: "not_found",
    LeaseOutcome.STALE_LEASE: "stale_lease",
}


class CompleteManyResource:
    """POST /system/jobs/complete: many completions in one transaction, one outcome each."""

    def __init__(self, queue: JobQueue, *, max_jobs: int) -> None:
        self._queue = queue
        self._schema = CompleteManySchema(max_jobs=max_jobs)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Complete every item; 200 with each item's outcome, in request order."""
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        items = [_finish_item(item["job_id"], item, failed=False) for item in body["jobs"]]
        finished = self._queue.finish(user_id, items)
        results = [
            {"job_id": one.job_id, "outcome": _BATCH_OUTCOMES[one.outcome]} for one in finished
        ]
        resp.media = COMPLETED_MANY.dump({"results": results})


def _not_cancellable(state: str | None) -> str:
    if state == "running":
        return (
            "the job is running: a worker holds its lease and may be calling the upstream; "
            "only a queued or waiting job can be cancelled"
        )
    if state is None:
        return "the job was rejected: it was never queued, so there is nothing to cancel"
    return f"the job has already ended ({state}); only a queued or waiting job can be cancelled"


class CancelResource:
    """POST /dashboard/jobs/{job_id}/cancel: a queued or waiting job is cancelled, and the
    tokens it took go back if no worker was ever handed it; 200 again for a job already
    cancelled."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        """Cancel the job; 404 when the user has none such, 409 when it is neither queued nor
        waiting."""
        user_id = authenticated_user(req)
        [cancellation] = self._queue.cancel(user_id, [job_id])
        if cancellation.outcome is CancelOutcome.NOT_FOUND:
            raise falcon.HTTPNotFound(description=NO_SUCH_JOB)
        if cancellation.outcome is CancelOutcome.NOT_CANCELLABLE:
            raise falcon.HTTPConflict(description=_not_cancellable(cancellation.state))
        if cancellation.outcome is CancelOutcome.CANCELLED:
            metrics.count_job_action("cancel")
        resp.media = CANCELLED.dump({"job_id": job_id, "state": "cancelled"})


def _not_retryable(state: str | None) -> str:
    if state is None:
        return "the job was rejected: it was never queued, so there is nothing to retry"
    if state == "completed":
        return "the job has completed; only a failed, expired or cancelled job can be retried"
    return (
        f"the job has not ended ({state}); only a failed, expired or cancelled job can be retried"
    )


class RetryResource:
    """POST /dashboard/jobs/{job_id}/retry: a failed, expired or cancelled job waits again, due
    at once, and takes its tokens when a claim hands it out, as any paced job does."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        """Retry the job; 404 when the user has none such, 409 when it has not ended, has
        completed or was rejected."""
        user_id = authenticated_user(req)
        [retrial] = self._queue.retry(user_id, [job_id])
        if retrial.outcome is RetryOutcome.NOT_FOUND:
            raise falcon.HTTPNotFound(description=NO_SUCH_JOB)
        if retrial.outcome is RetryOutcome.NOT_RETRYABLE:
            raise falcon.HTTPConflict(description=_not_retryable(retrial.state))
        metrics.count_job_action("retry")
        resp.media = RETRIED.dump({"job_id": job_id, "state": "waiting"})
