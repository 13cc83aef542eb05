"""POST .../jobs, .../jobs/batch, .../jobs/batch/atomic and .../jobs/quote, for both families."""

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
from janus.schemas import BatchSchema, QuoteSchema, SingleJobSchema


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
        resp.status = answer_status(Mode.SINGLE, [decision])
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
        resp.status = answer_status(self._mode, decisions)
        match self._mode:
            case Mode.ATOMIC:
                resp.media = [_decision_body(decision) for decision in decisions]
            case Mode.PARTIAL:
                resp.media = _batch_summary(decisions)
            case _:
                assert_never(self._mode)


class QuoteResource:
    """What POST .../jobs, .../batch or .../batch/atomic would answer now, with no side effect.

    The body is a single job's, or a batch's with `atomic` (QuoteSchema); the answer is 200
    with the status the real request would get and each job's decision, and for a job
    rejected for tokens when it would fit if nothing else took any (`fits_at`). Validation
    and errors are the real routes' (an unknown user is 401, a paused one 403); an
    Idempotency-Key is looked up as the real request would, and never remembered.
    """

    def __init__(self, admitter: Admitter, source: Source, *, max_jobs: int) -> None:
        self._admitter = admitter
        self._source = source
        self._schema = QuoteSchema(max_jobs=max_jobs)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Quote a job or a batch."""
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        quoted_path = req.path.removesuffix("/quote")
        if "jobs" in body:
            mode = Mode.ATOMIC if body.pop("atomic", False) else Mode.PARTIAL
            quoted_path += "/batch/atomic" if mode is Mode.ATOMIC else "/batch"
            jobs = tuple(_job_request(job) for job in body["jobs"])
        else:
            mode = Mode.SINGLE
            jobs = (_job_request(body),)
        request = AdmissionRequest(
            user_id=user_id,
            source=self._source,
            batch_name=body["batch_name"],
            jobs=jobs,
            mode=mode,
            idempotency_key=idempotency_key(req, body, quoted_path),
        )
        decisions = self._admitter.quote(request).decisions
        resp.media = {
            "kind": mode.value,
            "status": answer_status(mode, decisions),
            "replayed": any(decision.replayed for decision in decisions),
            **_counts(decisions),
            "results": [_quoted_decision(decision) for decision in decisions],
        }


def answer_status(mode: Mode, decisions: Sequence[Decision]) -> int:
    """The status a job request of `mode` is answered with, given its decisions."""
    all_accepted = all(decision.accepted for decision in decisions)
    match mode:
        case Mode.SINGLE:
            return 202 if all_accepted else 429
        case Mode.PARTIAL:
            return 200
        case Mode.ATOMIC:
            return 202 if all_accepted else 207
        case _:
            assert_never(mode)


def _quoted_decision(decision: Decision) -> dict[str, Any]:
    """One job of a quote: its decision, without a job id (nothing is stored)."""
    return {
        "status": decision.status,
        "reason": decision.reason,
        "retry_after": decision.retry_after,
        "fits_at": None if decision.fits_at is None else decision.fits_at.isoformat(),
        "shadow_status": decision.shadow_status,
        "shadow_reason": decision.shadow_reason,
    }


def _set_admission_headers(resp: falcon.Response, admission: Admission) -> None:
    """Idempotent-Replayed on a replay; the RateLimit headers of the buckets it left."""
    if any(decision.replayed for decision in admission.decisions):
        resp.set_header("Idempotent-Replayed", "true")
    resp.set_headers(ratelimit_headers(admission.budgets))


def _counts(decisions: Sequence[Decision]) -> dict[str, int]:
    """How many jobs, accepted and rejected: a partial batch's answer tells them, and a quote's."""
    accepted = sum(decision.accepted for decision in decisions)
    return {"total": len(decisions), "accepted": accepted, "rejected": len(decisions) - accepted}


def _batch_summary(decisions: Sequence[Decision]) -> dict[str, Any]:
    return {**_counts(decisions), "results": [_decision_body(decision) for decision in decisions]}
