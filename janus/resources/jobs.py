"""POST .../jobs, .../jobs/batch and .../jobs/batch/atomic, for both families of routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

import falcon

from janus.admission import (
    AdmissionRequest,
    Admitter,
    BatchMode,
    Decision,
    JobRequest,
    Mode,
    Source,
)
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
    """One job: 202 when accepted, 429 (with Retry-After when waiting helps) when rejected."""

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
        [decision] = self._admitter.admit(request)
        note_decisions(req, [decision])
        _mark_replay(resp, [decision])
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
        decisions = self._admitter.admit(request)
        note_decisions(req, decisions)
        _mark_replay(resp, decisions)
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


def _mark_replay(resp: falcon.Response, decisions: Sequence[Decision]) -> None:
    if any(decision.replayed for decision in decisions):
        resp.set_header("Idempotent-Replayed", "true")


def _batch_summary(decisions: Sequence[Decision]) -> dict[str, Any]:
    accepted = sum(decision.accepted for decision in decisions)
    return {
        "total": len(decisions),
        "accepted": accepted,
        "rejected": len(decisions) - accepted,
        "results": [_decision_body(decision) for decision in decisions],
    }
