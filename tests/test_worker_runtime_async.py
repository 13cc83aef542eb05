"""The asyncio worker runtime (janus_client.aio_worker) against the real service under
gunicorn, as tests/test_worker_runtime.py runs the threaded one (its SIGTERM test runs
`janus-worker` on a coroutine handler too): draining a queue with failures and throttling,
a lease outlived by heartbeats, a lease lost and its handler cancelled."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from devtools.service import Service
from janus_client import AsyncJanusClient, RetryPolicy
from janus_client.aio_worker import AsyncJobContext, AsyncWorker
from tests.support.factories import user_with_config
from tests.support.worker_handlers import mixed_async
from tests.support.worker_service import states, submit_jobs, unfinished, wait_for

pytestmark = pytest.mark.concurrency


@contextmanager
def running(worker: AsyncWorker, client: AsyncJanusClient) -> Iterator[AsyncWorker]:
    """The worker's run() on an event loop in a thread of its own, stopped on leaving."""
    loop = asyncio.new_event_loop()
    failures: list[BaseException] = []

    async def run() -> None:
        try:
            await worker.run()
        except BaseException as error:
            failures.append(error)
        finally:
            await client.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),))
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(30)
        loop.close()
    assert not thread.is_alive()
    assert failures == []


def test_the_async_worker_drains_a_queue_with_failures_and_upstream_throttling(
    worker_service: Service, worker_db: psycopg.Connection
) -> None:
    user = user_with_config(worker_db, {"openai": {"capacity": 10_000, "refill_per_second": 1}})
    kinds = ["ok"] * 20 + ["raises"] * 2 + ["refuses"] * 2 + ["throttled"] * 2 + ["bad_result"]
    ids = submit_jobs(worker_service, user, [{"kind": k, "n": n} for n, k in enumerate(kinds)])
    client = AsyncJanusClient(worker_service.url, user_id=str(user))
    worker = AsyncWorker(mixed_async, concurrency=4, client=client, lease_seconds=10)
    with running(worker, client):
        wait_for(lambda: unfinished(worker_db, user) == 0)

    found = states(worker_db, user)
    expected = {
        "ok": ("completed", 1),
        "raises": ("failed", 3),
        "refuses": ("failed", 1),
        "throttled": ("completed", 2),
        "bad_result": ("failed", 1),
    }
    assert [found[job_id][:2] for job_id in ids] == [expected[kind] for kind in kinds]
    assert found[ids[0]][2] == {"n": 0}
    assert worker.counters.as_dict() == {
        "claimed": 20 + 2 * 3 + 2 + 2 * 2 + 1,
        "completed": 22,
        "failed": 2 * 3 + 2 + 2 + 1,
        "throttled": 2,
        "lease_lost": 0,
        "given_back": 0,
    }


def test_an_async_handler_slower_than_its_lease_keeps_it_by_heartbeats(
    worker_service: Service, worker_db: psycopg.Connection
) -> None:
    user = user_with_config(worker_db, {"openai": {"capacity": 100, "refill_per_second": 0}})
    [job_id] = submit_jobs(worker_service, user, [{"kind": "sleep", "seconds": 3.5}])
    client = AsyncJanusClient(worker_service.url, user_id=str(user))
    worker = AsyncWorker(mixed_async, concurrency=2, client=client, lease_seconds=2)
    with running(worker, client):
        wait_for(lambda: unfinished(worker_db, user) == 0)
    assert states(worker_db, user)[job_id][:3] == ("completed", 1, {"slept": True})
    assert worker.counters.lease_lost == 0


class DropHeartbeats(httpx.AsyncHTTPTransport):
    """The network between a worker and Janus losing every heartbeat, and nothing else."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/heartbeat"):
            raise httpx.ConnectError("heartbeat lost on the way", request=request)
        return await super().handle_async_request(request)


def test_an_async_handler_whose_lease_is_lost_is_cancelled_and_the_job_claimed_again(
    worker_service: Service, worker_db: psycopg.Connection
) -> None:
    user = user_with_config(worker_db, {"openai": {"capacity": 100, "refill_per_second": 0}})
    [job_id] = submit_jobs(worker_service, user, [{"kind": "slow"}])
    seen: dict[str, Any] = {}

    async def slow(job: AsyncJobContext) -> Any:  # ten times its lease: cancelled first
        slow_worker.stop()  # after this job: the quick worker is to get it back
        try:
            await asyncio.sleep(20)
        except asyncio.CancelledError:
            seen["cancelled_at"], seen["lease_lost"] = time.monotonic(), job.lease_lost
            raise
        return {"by": "slow"}

    async def quick(job: AsyncJobContext) -> Any:
        seen["quick_started_at"] = time.monotonic()
        return {"by": "quick"}

    cut_off = AsyncJanusClient(
        worker_service.url,
        user_id=str(user),
        transport=DropHeartbeats(),
        retry=RetryPolicy(max_attempts=1),
    )
    client = AsyncJanusClient(worker_service.url, user_id=str(user))
    slow_worker = AsyncWorker(slow, concurrency=1, client=cut_off, lease_seconds=2)
    quick_worker = AsyncWorker(quick, concurrency=1, client=client, lease_seconds=2)
    with running(slow_worker, cut_off):
        wait_for(lambda: states(worker_db, user)[job_id][0] == "running")
        with running(quick_worker, client):
            wait_for(lambda: unfinished(worker_db, user) == 0)
            wait_for(lambda: "cancelled_at" in seen)

    assert states(worker_db, user)[job_id][:3] == ("completed", 2, {"by": "quick"})
    assert seen["lease_lost"] and seen["cancelled_at"] <= seen["quick_started_at"]
    assert (slow_worker.counters.lease_lost, slow_worker.counters.completed) == (1, 0)
    assert quick_worker.counters.completed == 1
