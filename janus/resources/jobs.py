"""POST .../jobs, .../jobs/batch, .../jobs/batch/atomic and .../jobs/quote, for both families."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never
from uuid import UUID

import falcon
from marshmallow import Schema

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
from janus.reasons import REASON_CODE_HEADER, ReasonCode
from janus.resources.ratelimit import ratelimit_headers
from janus.resources.requests import authenticated_user, idempotency_key, load_body
from janus.resources.telemetry import note_decisions
from janus.schemas.answers import DecisionSchema, PartialBatchAnswerSchema, QuoteAnswerSchema
from janus.schemas.requests import BatchSchema, QuoteSchema, SingleJobSchema

DECISION = DecisionSchema()
DECISIONS = DecisionSchema(many=True)
PARTIAL_BATCH = PartialBatchAnswerSchema()
QUOTE = QuoteAnswerSchema()


def _admission_request(
    req: falcon.Request,
    user_id: UUID,
    source: Source,
    mode: Mode,
    body: dict[str, Any],
    quoted_path: str | None = None,
) -> AdmissionRequest:
    """What `body` asks to decide: its one job (Mode.SINGLE) or its batch's jobs, with the
    request's Idempotency-Key (fingerprinted with `quoted_path` for a quote)."""
    jobs = [body] if mode is Mode.SINGLE else body["jobs"]
    return AdmissionRequest(
        user_id=user_id,
        source=source,
        batch_name=body["batch_name"],
        jobs=tuple(
            JobRequest(
                tenant_id=job["tenant_id"],
                priority=job["priority"],
                dependencies=job["dependencies"],
                payload=job["payload"],
                run_at=job.get("run_at"),
            )
            for job in jobs
        ),
        mode=mode,
        idempotency_key=idempotency_key(req, body, quoted_path),
        when_limited=body.get("when_limited"),
        max_wait_seconds=body.get("max_wait_seconds"),
    )


class _Admission:
    """What the single job and the batch routes share: decide the body's jobs, and answer
    with the headers and status of their decisions."""

    def __init__(self, admitter: Admitter, source: Source, mode: Mode, schema: Schema) -> None:
        self._admitter = admitter
        self._source = source
        self._mode = mode
        self._schema = schema

    def _decide(self, req: falcon.Request, resp: falcon.Response) -> list[Decision]:
        user_id = authenticated_user(req)
        body = load_body(req, self._schema)
        request = _admission_request(req, user_id, self._source, self._mode, body)
        admission = self._admitter.admit(request)
        _set_admission_headers(resp, admission)
        note_decisions(req, admission.decisions)
        resp.status = answer_status(self._mode, admission.decisions)
        return admission.decisions


class SingleJobResource(_Admission):
    """One job: 202 when accepted, 429 (with Retry-After when waiting helps) when rejected.

    Every job answer tells the budgets of the buckets its request named (RateLimit-Policy and
    RateLimit, janus/resources/ratelimit.py), whatever its status.
    """

    def __init__(self, admitter: Admitter, source: Source) -> None:
        super().__init__(admitter, source, Mode.SINGLE, SingleJobSchema())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Decide one job."""
        [decision] = self._decide(req, resp)
        resp.media = DECISION.dump(shown(decision))
        if decision.reason_code is not None:
            resp.set_header(REASON_CODE_HEADER, decision.reason_code.value)
        if decision.retry_after is not None:
            resp.set_header("Retry-After", str(decision.retry_after))


class BatchResource(_Admission):
    """A batch, decided job by job (partial) or all-or-nothing (atomic)."""

    def __init__(
        self, admitter: Admitter, source: Source, mode: BatchMode, *, max_jobs: int
    ) -> None:
        super().__init__(admitter, source, mode, BatchSchema(max_jobs=max_jobs))
        self._batch_mode: BatchMode = mode

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Decide every job of the batch; answer in request order."""
        decisions = self._decide(req, resp)
        match self._batch_mode:
            case Mode.ATOMIC:
                resp.media = DECISIONS.dump([shown(decision) for decision in decisions])
                sank = _sinking_code(decisions)
                if sank is not None:
                    resp.set_header(REASON_CODE_HEADER, sank.value)
            case Mode.PARTIAL:
                resp.media = PARTIAL_BATCH.dump(
                    {**_counts(decisions), "results": [shown(decision) for decision in decisions]}
                )
            case _:
                assert_never(self._batch_mode)


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
        else:
            mode = Mode.SINGLE
        request = _admission_request(req, user_id, self._source, mode, body, quoted_path)
        decisions = self._admitter.quote(request).decisions
        resp.media = QUOTE.dump(
            {
                "kind": mode.value,
                "status": answer_status(mode, decisions),
                "replayed": any(decision.replayed for decision in decisions),
                **_counts(decisions),
                "results": [shown(decision) for decision in decisions],
            }
        )


def shown(decision: Decision) -> Decision | dict[str, Any]:
    """`decision` as its answer shows it: a waiting job's with its state and estimated start.
    A Decision has neither attribute, so the answer schemas leave both out of every other
    answer, as the seed API writes them."""
    if not decision.waiting:
        return decision
    return {**vars(decision), "state": "waiting", "estimated_start": decision.starts_at}


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


def _sinking_code(decisions: Sequence[Decision]) -> ReasonCode | None:
    """The code of the job that sank an atomic batch: the first, in request order, rejected
    for a reason of its own (the others are `atomic_batch`); None when none was rejected."""
    return next(
        (
            decision.reason_code
            for decision in decisions
            if decision.reason_code not in (None, ReasonCode.ATOMIC_BATCH)
        ),
        None,
    )


def _set_admission_headers(resp: falcon.Response, admission: Admission) -> None:
    """Idempotent-Replayed on a replay; the RateLimit headers of the buckets it left."""
    if any(decision.replayed for decision in admission.decisions):
        resp.set_header("Idempotent-Replayed", "true")
    resp.set_headers(ratelimit_headers(admission.budgets))


def _counts(decisions: Sequence[Decision]) -> dict[str, int]:
    """How many jobs, accepted and rejected: a partial batch's answer tells them, and a quote's."""
    accepted = sum(decision.accepted for decision in decisions)
    return {"total": len(decisions), "accepted": accepted, "rejected": len(decisions) - accepted}
