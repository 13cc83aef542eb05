"""AsyncJanusClient: JanusClient's calls for asyncio, one httpx.AsyncClient (its connections
reused) per instance. Each method builds its call in calls.py, as JanusClient's do: only the
sending differs (awaited, and asyncio.sleep between attempts)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import httpx

from janus_client import admin, calls
from janus_client._core import DEFAULT_TIMEOUT_S, Call, RetryPolicy, next_wait, no_answer, options
from janus_client.admin import PAGE_SIZE
from janus_client.models import ClaimedJob, Completion, Job, Source, WhenLimited
from janus_client.records import (
    ActiveConfig,
    ConfigVersion,
    JobDetail,
    JobRecord,
    Page,
    PauseChange,
    PauseState,
    Quotas,
)
from janus_client.results import BatchResult, JobResult, Quote

T = TypeVar("T")


class AsyncJanusClient:
    """JanusClient's calls, awaited (the listings are async iterators). Use it as an async
    context manager, or aclose() it, to close its connections."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        user_id: str | None = None,
        service_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            transport=transport,
            **options(base_url, api_key, user_id, service_token, timeout),
        )

    async def __aenter__(self) -> AsyncJanusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._http.aclose()

    # --- submitting: what a producer calls ---

    async def submit(
        self,
        job: Job,
        *,
        batch_name: str,
        when_limited: WhenLimited | None = None,
        max_wait_seconds: int | None = None,
        idempotency_key: str | None = None,
        source: Source = "system",
    ) -> JobResult:
        """Submit one job: accepted, waiting or rejected (a rejection is a result; a 429 of
        the user's share is TooManyRequests). Sent again, with the same Idempotency-Key, after
        a 503 or no answer; never after a 429."""
        return await self._run(
            calls.submit(
                job,
                batch_name=batch_name,
                when_limited=when_limited,
                max_wait_seconds=max_wait_seconds,
                idempotency_key=idempotency_key,
                source=source,
            )
        )

    async def submit_batch(
        self,
        jobs: Sequence[Job],
        *,
        batch_name: str,
        atomic: bool = False,
        when_limited: WhenLimited | None = None,
        max_wait_seconds: int | None = None,
        idempotency_key: str | None = None,
        source: Source = "system",
    ) -> BatchResult:
        """Submit a batch, partial (each job decided alone) or atomic (all or none). Read
        `.rejected`, or call raise_for_rejections(): refused jobs raise nothing here."""
        return await self._run(
            calls.submit_batch(
                jobs,
                batch_name=batch_name,
                atomic=atomic,
                when_limited=when_limited,
                max_wait_seconds=max_wait_seconds,
                idempotency_key=idempotency_key,
                source=source,
            )
        )

    async def quote(
        self,
        jobs: Job | Sequence[Job],
        *,
        batch_name: str,
        atomic: bool = False,
        when_limited: WhenLimited | None = None,
        max_wait_seconds: int | None = None,
        idempotency_key: str | None = None,
        source: Source = "system",
    ) -> Quote:
        """What submitting `jobs` (one Job, or a batch) would get now; nothing is stored."""
        return await self._run(
            calls.quote(
                jobs,
                batch_name=batch_name,
                atomic=atomic,
                when_limited=when_limited,
                max_wait_seconds=max_wait_seconds,
                idempotency_key=idempotency_key,
                source=source,
            )
        )

    # --- the queue: what a worker calls ---

    async def claim(
        self,
        limit: int = 1,
        lease_seconds: int = 60,
        *,
        tenant_id: str | None = None,
        batch_name: str | None = None,
        dependencies: Sequence[str] | None = None,
    ) -> list[ClaimedJob]:
        """Lease up to `limit` jobs for `lease_seconds`; [] when none is ready."""
        return await self._run(
            calls.claim(limit, lease_seconds, tenant_id, batch_name, dependencies)
        )

    async def heartbeat(self, job: ClaimedJob, lease_seconds: int = 60) -> datetime:
        """Extend the job's lease to `lease_seconds` from now; its new end. LeaseLost when
        the lease is no longer the job's."""
        return await self._run(calls.heartbeat(job, lease_seconds))

    async def complete(
        self,
        job: ClaimedJob,
        result: Any = None,
        *,
        actual_costs: dict[str, int] | None = None,
        upstream_throttled: Sequence[str] = (),
    ) -> None:
        """End the job's lease, completed. LeaseLost when the lease is no longer the job's."""
        await self._run(calls.complete(job, result, actual_costs, upstream_throttled))

    async def complete_many(self, items: Sequence[Completion]) -> list[str]:
        """Complete many jobs in one call and one transaction; each item's outcome, in order:
        "completed", "stale_lease" (its lease was lost) or "not_found"."""
        return await self._run(calls.complete_many(items))

    async def fail(
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
        return await self._run(
            calls.fail(job, error, retry, retry_after_seconds, actual_costs, upstream_throttled)
        )

    # --- config and pause: what an admin script calls ---

    async def get_config(self) -> ActiveConfig:
        """The config in force, with its version and ETag; NotFound when there is none."""
        return await self._run(admin.get_config())

    async def put_config(
        self, config: Mapping[str, Any], *, if_match: int | str | None = None
    ) -> ActiveConfig:
        """Store `config` as the next version and activate it. With `if_match` (the version
        read, its ETag, or "*"), PreconditionFailed when another version is active now."""
        return await self._run(admin.put_config(config, if_match))

    async def activate_config(self, version: int) -> ActiveConfig:
        """Make an earlier version the active one again (roll back)."""
        return await self._run(admin.activate_config(version))

    def config_versions(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[ConfigVersion]:
        """Every version of the config, newest first, fetched a page at a time."""
        return self._items(lambda cursor: admin.config_versions_page(page_size, cursor))

    async def pause(self) -> PauseState:
        """Refuse every job of the user (403) until resume(); workers still drain the queue."""
        return await self._run(admin.pause(True))

    async def resume(self) -> PauseState:
        """Admit the user's jobs again."""
        return await self._run(admin.pause(False))

    def pause_history(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[PauseChange]:
        """Every pause and resume, newest first, fetched a page at a time."""
        return self._items(lambda cursor: admin.pause_history_page(page_size, cursor))

    # --- history and quotas ---

    def jobs(
        self,
        *,
        status: str | None = None,
        state: str | None = None,
        tenant_id: str | None = None,
        batch_name: str | None = None,
        source: Source | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[JobRecord]:
        """The user's jobs matching every filter given, newest first, through every page
        (short and empty pages included) until the last."""
        filters = {
            "status": status,
            "state": state,
            "tenant_id": tenant_id,
            "batch_name": batch_name,
            "source": source,
            "since": since,
            "until": until,
        }
        return self._items(lambda cursor: admin.jobs_page(filters, page_size, cursor))

    async def get_job(self, job_id: str | UUID) -> JobDetail:
        """Everything stored about one job; NotFound for a job the user does not have."""
        return await self._run(admin.get_job(str(job_id)))

    async def cancel_job(self, job_id: str | UUID) -> str:
        """Take a queued or waiting job out of the queue; its state ("cancelled"). Conflict
        when it is running or has ended."""
        return await self._run(admin.cancel_job(str(job_id)))

    async def retry_job(self, job_id: str | UUID) -> str:
        """Send a failed, expired or cancelled job back to wait; its state ("waiting").
        Conflict when it has not ended or has completed."""
        return await self._run(admin.retry_job(str(job_id)))

    async def quotas(self) -> Quotas:
        """The user's buckets as of now, and the tenant buckets closest to their limit."""
        return await self._run(admin.quotas())

    # --- sending ---

    async def _items(self, page: Callable[[str | None], Call[Page[T]]]) -> AsyncIterator[T]:
        """Every item of a listing, following each page's `next` until it is None."""
        cursor: str | None = None
        while True:
            found = await self._run(page(cursor))
            for item in found.items:
                yield item
            if found.next is None:
                return
            cursor = found.next

    async def _run(self, call: Call[T]) -> T:
        """Send the call, again after a 503 or no answer as the retry policy allows, and read
        its answer."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.request(
                    call.method, call.path, json=call.body, params=call.params, headers=call.headers
                )
            except httpx.TransportError as error:
                outcome = error
            wait = next_wait(self._retry, call, attempt, time.monotonic() - started, outcome)
            if wait is None:
                if isinstance(outcome, httpx.TransportError):
                    raise no_answer(call, attempt, outcome) from outcome
                return call.parse(outcome)
            await asyncio.sleep(wait)
