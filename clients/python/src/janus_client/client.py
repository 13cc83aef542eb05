"""JanusClient: the blocking client, one httpx.Client (its connections reused) per instance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from janus_client._core import (
    DEFAULT_TIMEOUT_S,
    Credentials,
    RetryPolicy,
    base_url_from_env,
    check,
    retry_after_of,
)
from janus_client.errors import Conflict, ConnectionFailed, LeaseLost
from janus_client.models import ClaimedJob, Completion, moment


class JanusClient:
    """Calls to one Janus as one user. The URL and credential come from the environment
    (JANUS_URL; JANUS_API_KEY, else JANUS_USER_ID) unless given. Use it as a context manager,
    or close() it, to close its connections."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        user_id: str | None = None,
        service_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        given = api_key is not None or user_id is not None
        credentials = (
            Credentials(api_key, user_id, service_token) if given else Credentials.from_env()
        )
        self._retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=base_url or base_url_from_env(),
            headers=credentials.headers(),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> JanusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections."""
        self._http.close()

    # --- the queue: what a worker calls ---

    def claim(
        self,
        limit: int = 1,
        lease_seconds: int = 60,
        *,
        tenant_id: str | None = None,
        batch_name: str | None = None,
        dependencies: Sequence[str] | None = None,
    ) -> list[ClaimedJob]:
        """Lease up to `limit` jobs for `lease_seconds`; [] when none is ready."""
        body: dict[str, Any] = {"limit": limit, "lease_seconds": lease_seconds}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        if batch_name is not None:
            body["batch_name"] = batch_name
        if dependencies is not None:
            body["dependencies"] = list(dependencies)
        answer = self._call("POST", "/system/jobs/claim", body)
        return [ClaimedJob.from_answer(item) for item in answer["jobs"]]

    def heartbeat(self, job: ClaimedJob, lease_seconds: int = 60) -> Any:
        """Extend the job's lease to `lease_seconds` from now; its new end. LeaseLost when
        the lease is no longer the job's."""
        answer = self._lease_call(job, "heartbeat", {"lease_seconds": lease_seconds})
        return moment(answer["lease_expires_at"])

    def complete(
        self,
        job: ClaimedJob,
        result: Any = None,
        *,
        actual_costs: dict[str, int] | None = None,
        upstream_throttled: Sequence[str] = (),
    ) -> None:
        """End the job's lease, completed. LeaseLost when the lease is no longer the job's."""
        item = Completion(job.job_id, job.lease_token, result, actual_costs, [*upstream_throttled])
        self._lease_call(job, "complete", {k: v for k, v in item.body().items() if k != "job_id"})

    def complete_many(self, items: Sequence[Completion]) -> list[str]:
        """Complete many jobs in one call and one transaction; each item's outcome, in order:
        "completed", "stale_lease" (its lease was lost) or "not_found"."""
        answer = self._call(
            "POST", "/system/jobs/complete", {"jobs": [item.body() for item in items]}
        )
        return [result["outcome"] for result in answer["results"]]

    def fail(
        self,
        job: ClaimedJob,
        error: str,
        *,
        retry: bool = True,
        retry_after_seconds: int | None = None,
        actual_costs: dict[str, int] | None = None,
        upstream_throttled: Sequence[str] = (),
    ) -> str:
        """End the job's lease as a failure; its new state ("waiting" to be tried again, or
        "failed"). LeaseLost when the lease is no longer the job's."""
        body: dict[str, Any] = {"error": error[:10_000] or "failed", "retry": retry}
        if retry and retry_after_seconds is not None:
            body["retry_after_seconds"] = min(86_400, max(1, retry_after_seconds))
        if actual_costs is not None:
            body["actual_costs"] = actual_costs
        if upstream_throttled:
            body["upstream_throttled"] = list(upstream_throttled)
        state: str = self._lease_call(job, "fail", body)["state"]
        return state

    # --- sending ---

    def _lease_call(self, job: ClaimedJob, action: str, body: dict[str, Any]) -> Any:
        try:
            return self._call(
                "POST",
                f"/system/jobs/{job.job_id}/{action}",
                {"lease_token": job.lease_token, **body},
            )
        except Conflict as conflict:
            raise LeaseLost(conflict.status, conflict.body) from None

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        """One call, sent again after a 503 or no answer, within the retry policy."""
        return check(self._send(method, path, body, params=params, headers=headers), ok)

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The answer to the call, after the retries the policy allows: a 503 or no answer is
        sent again (Retry-After, or a backoff); the last 503 is returned, no answer raised."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            failure: Exception | None = None
            retry_after: float | None = None
            try:
                response = self._http.request(
                    method, path, json=body, params=params, headers=headers
                )
            except httpx.TransportError as error:
                failure = error
            else:
                if response.status_code != 503:
                    return response
                retry_after = retry_after_of(response)
            wait = self._retry.delay(attempt, retry_after)
            spent = time.monotonic() - started
            if attempt >= self._retry.max_attempts or spent + wait > self._retry.within_s:
                if failure is not None:
                    raise ConnectionFailed(
                        f"{method} {path}: no answer after {attempt} attempts: {failure}"
                    ) from failure
                return response
            time.sleep(wait)
