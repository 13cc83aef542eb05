"""JanusClient: the blocking client, one httpx.Client (its connections reused) per instance.
Each method builds its call in calls.py and sends it here; aio.py does the same with asyncio."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class JanusClient:
    """Calls to one Janus as one user. The URL and credential come from the environment
    (JANUS_URL; JANUS_API_KEY, else JANUS_USER_ID, with JANUS_SERVICE_TOKEN) unless given.
    Use it as a context manager, or close() it, to close its connections."""

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
        self._retry = retry or RetryPolicy()
        self._http = httpx.Client(
            transport=transport,
            **options(base_url, api_key, user_id, service_token, timeout),
        )

    def __enter__(self) -> JanusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections."""
        self._http.close()

    # --- submitting: what a producer calls ---

    def submit(
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
        return self._run(
            calls.submit(
                job,
                batch_name=batch_name,
                when_limited=when_limited,
                max_wait_seconds=max_wait_seconds,
                idempotency_key=idempotency_key,
                source=source,
            )
        )

    def submit_batch(
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
        return self._run(
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

    def quote(
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
        return self._run(
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
        return self._run(calls.claim(limit, lease_seconds, tenant_id, batch_name, dependencies))

    def heartbeat(self, job: ClaimedJob, lease_seconds: int = 60) -> datetime:
        """Extend the job's lease to `lease_seconds` from now; its new end. LeaseLost when
        the lease is no longer the job's."""
        return self._run(calls.heartbeat(job, lease_seconds))

    def complete(
        self,
        job: ClaimedJob,
        result: Any = None,
        *,
        actual_costs: dict[str, int] | None = None,
        upstream_throttled: Sequence[str] = (),
    ) -> None:
        """End the job's lease, completed. LeaseLost when the lease is no longer the job's."""
        self._run(calls.complete(job, result, actual_costs, upstream_throttled))

    def complete_many(self, items: Sequence[Completion]) -> list[str]:
        """Complete many jobs in one call and one transaction; each item's outcome, in order:
        "completed", "stale_lease" (its lease was lost) or "not_found"."""
        return self._run(calls.complete_many(items))

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
        return self._run(
            calls.fail(job, error, retry, retry_after_seconds, actual_costs, upstream_throttled)
        )

    # --- config and pause: what an admin script calls ---

    def get_config(self) -> ActiveConfig:
        """The config in force, with its version and ETag; NotFound when there is none."""
        return self._run(admin.get_config())

    def put_config(
        self, config: Mapping[str, Any], *, if_match: int | str | None = None
    ) -> ActiveConfig:
        """Store `config` as the next version and activate it. With `if_match` (the version
        read, its ETag, or "*"), PreconditionFailed when another version is active now."""
        return self._run(admin.put_config(config, if_match))

    def activate_config(self, version: int) -> ActiveConfig:
        """Make an earlier version the active one again (roll back)."""
        return self._run(admin.activate_config(version))

    def config_versions(self, *, page_size: int = PAGE_SIZE) -> Iterator[ConfigVersion]:
        """Every version of the config, newest first, fetched a page at a time."""
        return self._items(lambda cursor: admin.config_versions_page(page_size, cursor))

    def pause(self) -> PauseState:
        """Refuse every job of the user (403) until resume(); workers still drain the queue."""
        return self._run(admin.pause(True))

    def resume(self) -> PauseState:
        """Admit the user's jobs again."""
        return self._run(admin.pause(False))

    def pause_history(self, *, page_size: int = PAGE_SIZE) -> Iterator[PauseChange]:
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
    ) -> Iterator[JobRecord]:
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

    def get_job(self, job_id: str | UUID) -> JobDetail:
        """Everything stored about one job; NotFound for a job the user does not have."""
        return self._run(admin.get_job(str(job_id)))

    def cancel_job(self, job_id: str | UUID) -> str:
        """Take a queued or waiting job out of the queue; its state ("cancelled"). Conflict
        when it is running or has ended."""
        return self._run(admin.cancel_job(str(job_id)))

    def retry_job(self, job_id: str | UUID) -> str:
        """Send a failed, expired or cancelled job back to wait; its state ("waiting").
        Conflict when it has not ended or has completed."""
        return self._run(admin.retry_job(str(job_id)))

    def quotas(self) -> Quotas:
        """The user's buckets as of now, and the tenant buckets closest to their limit."""
        return self._run(admin.quotas())

    # --- sending ---

    def _items(self, page: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        """Every item of a listing, following each page's `next` until it is None."""
        cursor: str | None = None
        while True:
            found = self._run(page(cursor))
            yield from found.items
            if found.next is None:
                return
            cursor = found.next

    def _run(self, call: Call[T]) -> T:
        """Send the call, again after a 503 or no answer as the retry policy allows, and read
        its answer."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._http.request(
                    call.method, call.path, json=call.body, params=call.params, headers=call.headers
                )
            except httpx.TransportError as error:
                outcome = error
            wait = next_wait(self._retry, call, attempt, time.monotonic() - started, outcome)
            if wait is None:
                if isinstance(outcome, httpx.TransportError):
                    raise no_answer(call, attempt, outcome) from outcome
                return call.parse(outcome)
            time.sleep(wait)
