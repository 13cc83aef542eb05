"""POST .../jobs, .../jobs/batch and .../jobs/batch/atomic, for both families of routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

import falcon

from janus.admission import (
    Admission,
    AdmissionRequest,
    Admitter,
    BatchMode,
    Decision,
    JobRequest,
    Mode,
    Source,
)
from janus.resources.ratelimit import ratelimit_headers
from janus.resources.requests import authenticated_user, idempotency_key, load_body
from janus.resources.telemetry import note_decisions
from janus.schemas import BatchSchema, SingleJobSchema


def _job_request(fields: dict[str, Any]) -> JobRequest:
    return JobRequest(
        tenant_id=fields["tenant_id"],
        priority=fields["priority"],
        dependencies=fields["dependencies"],
        payload=fields["payload"],
    )


def _decision_body(decision: Decision) -> dict[str, str]:
    return {"job_id": str(decision.job_id), "status": decision.status, "reason": decision.reason}


class SingleJobResource:
    """One job: 202 when accepted, 429 (with Retry-After when waiting helps) when rejected.

    Every job answer tells the budgets of the buckets its request named (RateLimit-Policy and
    RateLimit, janus/resources/ratelimit.py), whatever its status.
    """

    def __init__(self, admitter: Admitter, source: Source) -> None:
        self._admitter = admitter
        self._source = source
        self._schema = SingleJobSchema()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Decide one job."""
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        request = AdmissionRequest(
            user_id=user_id,
            source=self._source,
            batch_name=body["batch_name"],
            jobs=(_job_request(body),),
            mode=Mode.SINGLE,
            idempotency_key=idempotency_key(req, body),
        )
        admission = self._admitter.admit(request)
        _set_admission_headers(resp, admission)
        [decision] = admission.decisions
        note_decisions(req, [decision])
        resp.media = _decision_body(decision)
        if decision.accepted:
            resp.status = falcon.HTTP_202
        else:
            resp.status = falcon.HTTP_429
            if decision.retry_after is not None:
                resp.set_header("Retry-After", str(decision.retry_after))


class BatchResource:
    """A batch, decided job by job (partial) or all-or-nothing (atomic)."""

    def __init__(
        self, admitter: Admitter, source: Source, mode: BatchMode, *, max_jobs: int
    ) -> None:
        self._admitter = admitter
        self._source = source
        self._mode: BatchMode = mode
        self._schema = BatchSchema(max_jobs=max_jobs)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Decide every job of the batch; answer in request order."""
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        request = AdmissionRequest(
            user_id=user_id,
            source=self._source,
            batch_name=body["batch_name"],
            jobs=tuple(_job_request(job) for job in body["jobs"]),
            mode=self._mode,
            idempotency_key=idempotency_key(req, body),
        )
        admission = self._admitter.admit(request)
        _set_admission_headers(resp, admission)
        decisions = admission.decisions
        note_decisions(req, decisions)
        match self._mode:
            case Mode.ATOMIC:
                all_accepted = all(decision.accepted for decision in decisions)
                resp.status = falcon.HTTP_202 if all_accepted else falcon.HTTP_207
                resp.media = [_decision_body(decision) for decision in decisions]
            case Mode.PARTIAL:
                resp.status = falcon.HTTP_200
                resp.media = _batch_summary(decisions)
            case _:
                assert_never(self._mode)


def _set_admission_headers(resp: falcon.Response, admission: Admission) -> None:
    """Idempotent-Replayed on a replay; the RateLimit headers of the buckets it left."""
    if any(decision.replayed for decision in admission.decisions):
        resp.set_header("Idempotent-Replayed", "true")
    resp.set_headers(ratelimit_headers(admission.budgets))


def _batch_summary(decisions: Sequence[Decision]) -> dict[str, Any]:
    accepted = sum(decision.accepted for decision in decisions)
    return {
        "total": len(decisions),
        "accepted": accepted,
        "rejected": len(decisions) - accepted,
        "results": [_decision_body(decision) for decision in decisions],
    }
