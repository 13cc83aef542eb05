"""Worker: runs a handler on every job Janus hands out, in threads, with everything around it
done for it: claims sized to the free threads, one heartbeat thread for every lease held,
completions sent together, failures and throttling reported, backoff when the queue is empty
or Janus unavailable, and a graceful stop on SIGTERM or SIGINT.

    def handle(job: JobContext) -> dict | Done | None: ...
    Worker(handle, concurrency=8).run()       # or: janus-worker app.tasks:handle -c 8

A handler cannot be killed from outside its thread: when its lease is lost (or the worker
gives the job back at shutdown), `job.cancelled` is set, and whatever it returns is dropped.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from janus_client._leases import HeldJob, JobContext, LeaseBook
from janus_client._reports import TROUBLE, Reporter
from janus_client._runtime import (
    FLUSH_TIMEOUT_S,
    IDLE_FIRST_S,
    IDLE_MAX_S,
    TROUBLE_FIRST_S,
    TROUBLE_MAX_S,
    Backoff,
    Counters,
    WorkerSettings,
    log_outcome,
    logger,
)
from janus_client.client import JanusClient
from janus_client.errors import JanusError
from janus_client.handlers import outcome_of_error, outcome_of_return

__all__ = ["Handler", "JobContext", "Worker"]

Handler = Callable[[JobContext], Any]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Worker:
    """Runs `handler` on the jobs of one Janus user, `concurrency` at a time, until stopped.

    The client is JanusClient() (JANUS_URL, JANUS_API_KEY or JANUS_USER_ID) unless given;
    the other keyword arguments are WorkerSettings' (claim_limit, claimers, tenant_id,
    batch_name, dependencies, grace_seconds, complete_batch, complete_linger,
    stats_interval). `run()` blocks until `stop()`, SIGTERM or SIGINT; `counters` says what
    it did so far.
    """

    def __init__(
        self,
        handler: Handler,
        concurrency: int = 8,
        client: JanusClient | None = None,
        lease_seconds: int = 60,
        **settings: Any,
    ) -> None:
        self.settings = WorkerSettings(
            concurrency=concurrency, lease_seconds=lease_seconds, **settings
        )
        self.counters = Counters()
        self._handler = handler
        self._owns_client = client is None
        self._client = client or JanusClient()
        self._book = LeaseBook(self.settings)
        self._tasks: queue.SimpleQueue[HeldJob | None] = queue.SimpleQueue()
        self._stopping = threading.Event()  # no more claims
        self._cut = threading.Event()  # a second signal: the grace period ends now
        self._closing = threading.Event()  # the heartbeat and the reporter stop
        self._fatal: JanusError | None = None
        self._reporter = Reporter(
            self._client, self._book, self.counters, self._closing, self._fail_worker
        )

    def stop(self) -> None:
        """Stop claiming; run() then finishes or gives back what it holds, and returns."""
        self._stopping.set()
        self._book.notify()

    def run(self) -> None:
        """Claim and run jobs until stop(), SIGTERM or SIGINT; then let running handlers
        finish for `grace_seconds`, give back the jobs still running, report every outcome
        and return. Raises the JanusError that made it stop when it cannot go on (a key
        Janus refuses, a filter it does not take)."""
        settings = self.settings
        handlers = [self._thread(self._run_handlers) for _ in range(settings.concurrency)]
        self._thread(
            lambda: self._reporter.renew(settings.heartbeat_every_s, settings.lease_seconds)
        )
        reporter = self._thread(self._send_completions)
        claimers = [self._thread(self._claim_jobs) for _ in range(settings.claims_in_flight)]
        logger.info(
            "worker started: concurrency=%d lease_seconds=%d claim_limit=%d claimers=%d",
            settings.concurrency,
            settings.lease_seconds,
            settings.jobs_per_claim,
            len(claimers),
        )
        with self._signals_stop():
            while not self._stopping.wait(settings.stats_interval):
                logger.info("worker stats: %s", self.counters.line())
            self._shut_down(claimers)
        self._closing.set()
        self._book.notify()
        reporter.join(FLUSH_TIMEOUT_S)
        for _ in handlers:
            self._tasks.put(None)
        if self._owns_client:
            self._client.close()
        logger.info("worker stopped: %s", self.counters.line())
        if self._fatal is not None:
            raise self._fatal

    def _shut_down(self, claimers: list[threading.Thread]) -> None:
        """Within the grace period no more claims, and running handlers finish; then what
        still runs is given back, and every outcome is reported."""
        book = self._book
        deadline = time.monotonic() + self.settings.grace_seconds
        logger.info("worker stopping: %d jobs held", len(book.held))
        for claimer in claimers:
            claimer.join(max(0.0, deadline - time.monotonic()))
        book.wait_until(
            lambda: not any(held.running for held in book.held.values()), deadline, self._cut
        )
        for held in book.give_back_running(FLUSH_TIMEOUT_S):
            self._reporter.give_back(held)
        book.wait_until(lambda: not book.held, book.flush_deadline, threading.Event())

    @contextmanager
    def _signals_stop(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the worker; a second one ends the grace period at once.
        Only the main thread may catch signals: elsewhere, stop() is the way."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(number: int, frame: FrameType | None) -> None:
            logger.info("worker: %s received", signal.Signals(number).name)
            if self._stopping.is_set():
                self._cut.set()
            self.stop()

        previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _thread(self, target: Callable[[], None]) -> threading.Thread:
        # Daemon threads: a handler that ignores `cancelled` must not keep the process alive.
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    def _fail_worker(self, error: JanusError) -> None:
        logger.error("worker: cannot go on: %s", error)
        if self._fatal is None:
            self._fatal = error
        self.stop()

    def _claim_jobs(self) -> None:
        """One claimer: lease as many jobs as slots are free, hand them to the handlers."""
        idle = Backoff(IDLE_FIRST_S, IDLE_MAX_S)
        trouble = Backoff(TROUBLE_FIRST_S, TROUBLE_MAX_S)
        arguments = self.settings.claim_arguments()
        while wanted := self._book.reserve(self._stopping):
            sent = time.monotonic()
            try:
                jobs = self._client.claim(wanted, **arguments)
            except TROUBLE as error:
                self._book.unreserve(wanted)
                wait = getattr(error, "retry_after", None) or trouble.next()
                logger.warning("claim: %s; again in %.1f s", error, wait)
                self._stopping.wait(wait)
                continue
            except JanusError as error:
                self._book.unreserve(wanted)
                self._fail_worker(error)
                return
            trouble.reset()
            started = self._book.start(jobs, wanted, sent)
            if started:
                self.counters.add("claimed", len(started))
                idle.reset()
            for held in started:
                self._tasks.put(held)
            if not started:
                self._stopping.wait(idle.next())

    def _run_handlers(self) -> None:
        while (held := self._tasks.get()) is not None:
            try:
                outcome = outcome_of_return(self._handler(held.context))
            except BaseException as error:  # any error fails the attempt
                outcome = outcome_of_error(error)
            verdict = self._book.finished(held, outcome)
            if verdict == "dropped":  # its line was logged when its lease was lost or given back
                log_outcome(held.job, "dropped", held.seconds, level=logging.DEBUG)
            elif verdict == "fail":
                self._reporter.fail(held, outcome)

    def _send_completions(self) -> None:
        """The reporter thread: completions together, as LeaseBook.take_completions says."""
        while batch := self._book.take_completions(self.settings.complete_linger, self._closing):
            self._reporter.complete(batch)
