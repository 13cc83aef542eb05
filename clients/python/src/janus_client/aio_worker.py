"""AsyncWorker: the worker runtime for coroutine handlers, each job an asyncio task, on
AsyncJanusClient. It claims, heartbeats, reports and stops as Worker does (see worker.py);
what differs is that a handler whose lease is lost, or that is still running at the end of
the grace period, is cancelled: its task gets CancelledError at its next await.

    async def handle(job: AsyncJobContext) -> dict | Done | None: ...
    asyncio.run(AsyncWorker(handle, concurrency=100).run())  # or: janus-worker app:handle
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from janus_client._aio_reports import TROUBLE, AsyncHeld, AsyncJobContext, AsyncReporter
from janus_client._runtime import (
    FLUSH_TIMEOUT_S,
    IDLE_FIRST_S,
    IDLE_MAX_S,
    TROUBLE_FIRST_S,
    TROUBLE_MAX_S,
    Backoff,
    Counters,
    WorkerSettings,
    claimable,
    logger,
)
from janus_client.aio import AsyncJanusClient
from janus_client.errors import JanusError
from janus_client.handlers import outcome_of_error, outcome_of_return
from janus_client.models import ClaimedJob

__all__ = ["AsyncHandler", "AsyncJobContext", "AsyncWorker"]

AsyncHandler = Callable[[AsyncJobContext], Awaitable[Any]]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class AsyncWorker:
    """Runs the coroutine `handler` on the jobs of one Janus user, `concurrency` at a time,
    until stopped. Its arguments are Worker's; `await run()` returns after `stop()`, SIGTERM
    or SIGINT (caught when run from the main thread's event loop)."""

    def __init__(
        self,
        handler: AsyncHandler,
        concurrency: int = 8,
        client: AsyncJanusClient | None = None,
        lease_seconds: int = 60,
        **settings: Any,
    ) -> None:
        self.settings = WorkerSettings(
            concurrency=concurrency, lease_seconds=lease_seconds, **settings
        )
        self.counters = Counters()
        self._handler = handler
        self._owns_client = client is None
        self._client = client or AsyncJanusClient()
        self._reporter = AsyncReporter(self._client, self.settings, self.counters, self._fail)
        self._reserved = 0
        self._stopping = asyncio.Event()
        self._cut = asyncio.Event()  # a second signal: the grace period ends now
        self._fatal: JanusError | None = None

    def stop(self) -> None:
        """Stop claiming; run() then finishes or gives back what it holds, and returns."""
        self._stopping.set()
        self._reporter.slot_freed.set()

    async def run(self) -> None:
        """Claim and run jobs until stopped; then let running handlers finish for
        `grace_seconds`, cancel and give back the rest, report every outcome and return.
        Raises the JanusError that made it stop when it cannot go on."""
        settings, reporter = self.settings, self._reporter
        background = [
            asyncio.create_task(reporter.renew()),
            asyncio.create_task(reporter.send_completions()),
        ]
        claimers = [
            asyncio.create_task(self._claim_jobs()) for _ in range(settings.claims_in_flight)
        ]
        logger.info(
            "worker started: concurrency=%d lease_seconds=%d claim_limit=%d claimers=%d",
            settings.concurrency,
            settings.lease_seconds,
            settings.jobs_per_claim,
            len(claimers),
        )
        signals = self._catch_signals()
        try:
            while not await _waited(self._stopping, settings.stats_interval):
                logger.info("worker stats: %s", self.counters.line())
            await self._shut_down(claimers)
        finally:
            for number in signals:
                asyncio.get_running_loop().remove_signal_handler(number)
            reporter.closing.set()
            reporter.completions_ready.set()
            await asyncio.wait(background, timeout=FLUSH_TIMEOUT_S)
            for task in [*background, *claimers]:
                task.cancel()
            if self._owns_client:
                await self._client.aclose()
        logger.info("worker stopped: %s", self.counters.line())
        if self._fatal is not None:
            raise self._fatal

    async def _shut_down(self, claimers: list[asyncio.Task[None]]) -> None:
        reporter = self._reporter
        deadline = time.monotonic() + self.settings.grace_seconds
        logger.info("worker stopping: %d jobs held", len(reporter.held))
        await asyncio.wait(claimers, timeout=max(0.0, deadline - time.monotonic()))
        while any(held.running for held in reporter.held.values()) and not self._cut.is_set():
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        reporter.flushing = True
        reporter.flush_deadline = time.monotonic() + FLUSH_TIMEOUT_S
        reporter.completions_ready.set()
        running = [held for held in reporter.held.values() if held.running]
        await asyncio.gather(*(reporter.give_back(held) for held in running))
        while reporter.held and time.monotonic() < reporter.flush_deadline:
            await asyncio.sleep(0.05)

    def _catch_signals(self) -> list[int]:
        """SIGTERM and SIGINT stop the worker, a second one ends the grace period; only the
        main thread's loop can catch them."""
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()

        def on_signal(number: int) -> None:
            logger.info("worker: %s received", signal.Signals(number).name)
            if self._stopping.is_set():
                self._cut.set()
            self.stop()

        for number in STOP_SIGNALS:
            loop.add_signal_handler(number, on_signal, number)
        return list(STOP_SIGNALS)

    def _fail(self, error: JanusError) -> None:
        logger.error("worker: cannot go on: %s", error)
        if self._fatal is None:
            self._fatal = error
        self.stop()

    async def _reserve(self) -> int:
        """Wait until a claim can be made and reserve its slots; 0 once stopping."""
        reporter = self._reporter
        while not self._stopping.is_set():
            wanted = claimable(self.settings, reporter.running, self._reserved, reporter.unreported)
            if wanted:
                self._reserved += wanted
                return wanted
            reporter.slot_freed.clear()
            await reporter.slot_freed.wait()
        return 0

    async def _claim_jobs(self) -> None:
        """One claimer: lease as many jobs as slots are free, a task for each."""
        idle = Backoff(IDLE_FIRST_S, IDLE_MAX_S)
        trouble = Backoff(TROUBLE_FIRST_S, TROUBLE_MAX_S)
        arguments = self.settings.claim_arguments()
        while wanted := await self._reserve():
            sent = time.monotonic()
            try:
                jobs = await self._client.claim(wanted, **arguments)
            except TROUBLE as error:
                self._unreserve(wanted)
                wait = getattr(error, "retry_after", None) or trouble.next()
                logger.warning("claim: %s; again in %.1f s", error, wait)
                await _waited(self._stopping, wait)
                continue
            except JanusError as error:
                self._unreserve(wanted)
                self._fail(error)
                return
            trouble.reset()
            self._unreserve(wanted)
            self._start(jobs, sent)
            if jobs:
                idle.reset()
            else:
                await _waited(self._stopping, idle.next())

    def _unreserve(self, count: int) -> None:
        self._reserved -= count
        self._reporter.slot_freed.set()

    def _start(self, jobs: list[ClaimedJob], sent: float) -> None:
        if jobs:
            self.counters.add("claimed", len(jobs))
        now = time.monotonic()
        for job in jobs:
            held = AsyncHeld(AsyncJobContext(job), started=now, renewed=sent)
            self._reporter.hold(held)
            held.task = asyncio.create_task(self._run_one(held))

    async def _run_one(self, held: AsyncHeld) -> None:
        try:
            outcome = outcome_of_return(await self._handler(held.context))
        except asyncio.CancelledError:
            if not held.context.cancelled.is_set():
                raise  # the worker itself is being torn down
            outcome = None
        except Exception as error:  # any error fails the attempt
            outcome = outcome_of_error(error)
        await self._reporter.finished(held, outcome)


async def _waited(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait for `event` at most `seconds` (None: for ever); whether it is set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
