"""The producer's and the worker's calls of the API as Calls: each one's route, body and
headers, and how its answer is read (admin.py has the admin calls).

Written once, with no I/O: JanusClient (client.py) and AsyncJanusClient (aio.py) only send
these, each with its own httpx client and retry loop. Routes and bodies: docs/api.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from janus_client._core import Call, check, retry_after_of
from janus_client.errors import LeaseLost, TooManyRequests
from janus_client.models import ClaimedJob, Completion, Job, Source, WhenLimited, moment
from janus_client.results import BatchResult, JobResult, JobStatus, Quote, QuotedJob

R = TypeVar("R")

# Janus's headers: the code of a rejection (single job) or of the job that sank an atomic
# batch, and the mark of an answer replayed for an Idempotency-Key seen before.
REASON_CODE = "Janus-Reason-Code"
REPLAYED = "Idempotent-Replayed"
# A lease call's 409: its token is no longer the job's lease.
_LEASE_ERRORS = {409: LeaseLost}


# --- submitting ---


def _request_body(
    batch_name: str, when_limited: WhenLimited | None, max_wait_seconds: int | None
) -> dict[str, Any]:
    """What a request says beside its job or jobs."""
    body: dict[str, Any] = {"batch_name": batch_name}
    if when_limited is not None:
        body["when_limited"] = when_limited
    if max_wait_seconds is not None:
        body["max_wait_seconds"] = max_wait_seconds
    return body


def _status(item: Mapping[str, Any]) -> JobStatus:
    if item["status"] != "Accepted":
        return JobStatus.REJECTED
    return JobStatus.WAITING if item.get("state") == "waiting" else JobStatus.ACCEPTED


def _job_result(
    index: int,
    item: Mapping[str, Any],
    replayed: bool,
    reason_code: str | None = None,
    retry_after: int | None = None,
) -> JobResult:
    return JobResult(
        index=index,
        status=_status(item),
        reason=item["reason"],
        reason_code=item.get("reason_code", reason_code),
        retry_after=item.get("retry_after", retry_after),
        estimated_start=moment(item.get("estimated_start")),
        job_id=item["job_id"],
        replayed=replayed,
    )


def _replayed(response: httpx.Response) -> bool:
    return bool(response.headers.get(REPLAYED) == "true")


def _single_answer(response: httpx.Response) -> JobResult:
    """202 (accepted, perhaps to wait) or a 429 whose body is a job's rejection: a result.
    A 429 that is not a rejection (the user's share of the service) is TooManyRequests."""
    if response.status_code == 429:
        body = check(response, (429,))
        if not isinstance(body, dict) or body.get("status") != "Rejected":
            raise TooManyRequests(429, body, retry_after_of(response))
    else:
        body = check(response, (202,))
    retry_after = retry_after_of(response)
    return _job_result(
        0,
        body,
        _replayed(response),
        response.headers.get(REASON_CODE),
        None if retry_after is None else int(retry_after),
    )


def _partial_answer(response: httpx.Response) -> BatchResult:
    """A partial batch's 200: each job's decision with its code and retry_after."""
    replayed = _replayed(response)
    results = check(response)["results"]
    return BatchResult(
        tuple(_job_result(i, item, replayed) for i, item in enumerate(results)),
        atomic=False,
        reason_code=None,
        replayed=replayed,
    )


def _atomic_answer(response: httpx.Response) -> BatchResult:
    """An atomic batch's 202 or 207: the seed's list, with the code of the job that sank the
    batch in a header."""
    replayed = _replayed(response)
    items = check(response, (202, 207))
    return BatchResult(
        tuple(_job_result(i, item, replayed) for i, item in enumerate(items)),
        atomic=True,
        reason_code=response.headers.get(REASON_CODE),
        replayed=replayed,
    )


def _key_header(idempotency_key: str | None) -> dict[str, str]:
    """The Idempotency-Key of one logical call: the caller's, else a new one."""
    return {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}


def submit(
    job: Job,
    *,
    batch_name: str,
    when_limited: WhenLimited | None,
    max_wait_seconds: int | None,
    idempotency_key: str | None,
    source: Source,
) -> Call[JobResult]:
    """POST /{source}/jobs."""
    return Call(
        "POST",
        f"/{source}/jobs",
        _single_answer,
        body={**_request_body(batch_name, when_limited, max_wait_seconds), **job.body()},
        headers=_key_header(idempotency_key),
        keyed=True,
    )


def submit_batch(
    jobs: Sequence[Job],
    *,
    batch_name: str,
    atomic: bool,
    when_limited: WhenLimited | None,
    max_wait_seconds: int | None,
    idempotency_key: str | None,
    source: Source,
) -> Call[BatchResult]:
    """POST /{source}/jobs/batch, or .../batch/atomic."""
    return Call(
        "POST",
        f"/{source}/jobs/batch" + ("/atomic" if atomic else ""),
        _atomic_answer if atomic else _partial_answer,
        body={
            **_request_body(batch_name, when_limited, max_wait_seconds),
            "jobs": [job.body() for job in jobs],
        },
        headers=_key_header(idempotency_key),
        keyed=True,
    )


def _quoted(index: int, item: Mapping[str, Any]) -> QuotedJob:
    return QuotedJob(
        index=index,
        status=_status(item),
        reason=item["reason"],
        reason_code=item["reason_code"],
        retry_after=item["retry_after"],
        estimated_start=moment(item.get("estimated_start")),
        fits_at=moment(item["fits_at"]),
        shadow_status=item["shadow_status"],
        shadow_reason=item["shadow_reason"],
        shadow_reason_code=item["shadow_reason_code"],
    )


def _quote_answer(response: httpx.Response) -> Quote:
    body = check(response)
    return Quote(
        tuple(_quoted(i, item) for i, item in enumerate(body["results"])),
        kind=body["kind"],
        status=body["status"],
        replayed=body["replayed"],
    )


def quote(
    jobs: Job | Sequence[Job],
    *,
    batch_name: str,
    atomic: bool,
    when_limited: WhenLimited | None,
    max_wait_seconds: int | None,
    idempotency_key: str | None,
    source: Source,
) -> Call[Quote]:
    """POST /{source}/jobs/quote, of one job or of a batch (atomic or not)."""
    body = _request_body(batch_name, when_limited, max_wait_seconds)
    if isinstance(jobs, Job):
        body.update(jobs.body())
    else:
        body["jobs"] = [job.body() for job in jobs]
        if atomic:
            body["atomic"] = True
    # A quote stores no key, only looks one up: sent only when the caller gives one.
    headers = None if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    return Call("POST", f"/{source}/jobs/quote", _quote_answer, body=body, headers=headers)


# --- the queue ---


def claim(
    limit: int,
    lease_seconds: int,
    tenant_id: str | None,
    batch_name: str | None,
    dependencies: Sequence[str] | None,
) -> Call[list[ClaimedJob]]:
    """POST /system/jobs/claim."""
    body: dict[str, Any] = {"limit": limit, "lease_seconds": lease_seconds}
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    if batch_name is not None:
        body["batch_name"] = batch_name
    if dependencies is not None:
        body["dependencies"] = list(dependencies)
    return Call(
        "POST",
        "/system/jobs/claim",
        lambda response: [ClaimedJob.from_answer(item) for item in check(response)["jobs"]],
        body=body,
    )


def _lease_call(
    job: ClaimedJob, action: str, body: dict[str, Any], parse: Callable[[Any], R]
) -> Call[R]:
    return Call(
        "POST",
        f"/system/jobs/{job.job_id}/{action}",
        lambda response: parse(check(response, errors=_LEASE_ERRORS)),
        body={"lease_token": job.lease_token, **body},
    )


def _lease_end(body: dict[str, Any]) -> datetime:
    end = moment(body["lease_expires_at"])
    assert end is not None
    return end


def heartbeat(job: ClaimedJob, lease_seconds: int) -> Call[datetime]:
    """POST /system/jobs/{job_id}/heartbeat: the lease's new end."""
    return _lease_call(job, "heartbeat", {"lease_seconds": lease_seconds}, _lease_end)


def complete(
    job: ClaimedJob,
    result: Any,
    actual_costs: dict[str, int] | None,
    upstream_throttled: Sequence[str],
) -> Call[None]:
    """POST /system/jobs/{job_id}/complete."""
    item = Completion(job.job_id, job.lease_token, result, actual_costs, [*upstream_throttled])
    body = {k: v for k, v in item.body().items() if k not in ("job_id", "lease_token")}
    return _lease_call(job, "complete", body, lambda body: None)


def complete_many(items: Sequence[Completion]) -> Call[list[str]]:
    """POST /system/jobs/complete: each item's outcome, in order."""
    return Call(
        "POST",
        "/system/jobs/complete",
        lambda response: [result["outcome"] for result in check(response)["results"]],
        body={"jobs": [item.body() for item in items]},
    )


def fail(
    job: ClaimedJob,
    error: str,
    retry: bool,
    retry_after_seconds: int | None,
    actual_costs: dict[str, int] | None,
    upstream_throttled: Sequence[str],
) -> Call[str]:
    """POST /system/jobs/{job_id}/fail: the job's new state."""
    body: dict[str, Any] = {"error": error[:10_000] or "failed", "retry": retry}
    if retry and retry_after_seconds is not None:
        body["retry_after_seconds"] = min(86_400, max(1, retry_after_seconds))
    if actual_costs is not None:
        body["actual_costs"] = actual_costs
    if upstream_throttled:
        body["upstream_throttled"] = list(upstream_throttled)
    return _lease_call(job, "fail", body, lambda body: str(body["state"]))
