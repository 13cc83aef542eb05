"""The asyncio worker's bookkeeping and reports (the blocking worker's are _leases.py and
_reports.py; the rules are the same): the leases held, their renewal from one task,
completions sent together from one task, a failure from its job's own task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from janus_client._runtime import (
    GIVE_BACK_AFTER_S,
    GIVE_BACK_ERROR,
    TROUBLE_FIRST_S,
    TROUBLE_MAX_S,
    Backoff,
    Counters,
    JobView,
    WorkerSettings,
    log_outcome,
    logger,
)
from janus_client.aio import AsyncJanusClient
from janus_client.errors import (
    BadRequest,
    ConnectionFailed,
    JanusError,
    LeaseLost,
    TooManyRequests,
    Unavailable,
)
from janus_client.handlers import Outcome
from janus_client.models import ClaimedJob

# Janus is unavailable, unreachable or asks for a pause: wait and try again.
TROUBLE = (Unavailable, ConnectionFailed, TooManyRequests)


class AsyncJobContext(JobView):
    """A claimed job as a coroutine handler sees it: the job (`job`, and its common fields at
    hand), and `cancelled`, set when the worker will not take the handler's outcome (the
    lease was lost: `lease_lost`; or the job was given back at shutdown). The handler's task
    is cancelled then too."""

    def __init__(self, job: ClaimedJob) -> None:
        self.job = job
        self.cancelled = asyncio.Event()
        self.lease_lost = False


@dataclass(eq=False)
class AsyncHeld:
    """A job of this worker: its context and task, when its handler started and ended, and
    when its lease was last granted (time.monotonic(), as the call was sent)."""

    context: AsyncJobContext
    started: float
    renewed: float
    task: asyncio.Task[None] | None = None
    running: bool = True
    reporting: bool = False
    finished: float = 0.0
    unanswered: bool = False

    @property
    def job(self) -> ClaimedJob:
        """The claimed job."""
        return self.context.job

    @property
    def seconds(self) -> float:
        """How long its handler ran."""
        return (self.finished or time.monotonic()) - self.started


class AsyncReporter:
    """The leases held and every report; one event loop, so no locks."""

    def __init__(
        self,
        client: AsyncJanusClient,
        settings: WorkerSettings,
        counters: Counters,
        on_fatal: Callable[[JanusError], None],
    ) -> None:
        self._client, self._settings, self._counters = client, settings, counters
        self._on_fatal = on_fatal
        self.held: dict[str, AsyncHeld] = {}  # by lease token
        self.running = 0
        self.unreported = 0
        self.completions: list[tuple[AsyncHeld, Outcome]] = []
        self.completions_since = 0.0
        self.slot_freed = asyncio.Event()
        self.completions_ready = asyncio.Event()
        self.closing = asyncio.Event()
        self.flushing = False
        self.flush_deadline = float("inf")

    def hold(self, held: AsyncHeld) -> None:
        """A job a claim leased, about to run."""
        self.held[held.job.lease_token] = held
        self.running += 1

    async def finished(self, held: AsyncHeld, outcome: Outcome | None) -> None:
        """The handler returned (`outcome`), or was cancelled (None): drop, batch or fail."""
        held.running, held.finished = False, time.monotonic()
        self.running -= 1
        self.slot_freed.set()
        if self.running == 0:
            self.completions_ready.set()
        if outcome is None or held.context.cancelled.is_set():
            self.held.pop(held.job.lease_token, None)
            return
        self.unreported += 1
        if outcome.completed:
            if not self.completions:
                self.completions_since = held.finished
                self.completions_ready.set()
            self.completions.append((held, outcome))
            if len(self.completions) >= self._settings.complete_batch:
                self.completions_ready.set()
            return
        held.reporting = True
        await self.fail(held, outcome)

    def release(self, done: list[AsyncHeld]) -> None:
        """These jobs' reports are sent (or given up)."""
        self.unreported -= len(done)
        for held in done:
            self.held.pop(held.job.lease_token, None)
        self.slot_freed.set()

    def lose(self, held: AsyncHeld, outcome: Outcome | None = None) -> None:
        """The job's lease is lost: its handler is cancelled, its outcome dropped (once)."""
        if held.context.cancelled.is_set():
            return
        held.context.lease_lost = True
        held.context.cancelled.set()
        if held.running and held.task is not None:
            held.task.cancel()
        self.held.pop(held.job.lease_token, None)
        self._counters.add("lease_lost")
        log_outcome(held.job, "lease_lost", held.seconds, outcome)

    async def fail(self, held: AsyncHeld, outcome: Outcome) -> None:
        """Send the job's fail, from its own task."""
        trouble = Backoff(TROUBLE_FIRST_S, TROUBLE_MAX_S)
        while True:
            try:
                state = await self._client.fail(held.job, **outcome.fail_arguments())
            except LeaseLost:
                self.lose(held, outcome)
            except BadRequest as error:
                if outcome.actual_costs is None and not outcome.upstream_throttled:
                    self._on_fatal(error)
                    break
                # What the handler reported is not what Janus takes: fail the job without it.
                outcome = outcome.without_report(f"report refused: {error}")
                continue
            except TROUBLE as error:
                if await self._gave_up(held, error, trouble):
                    break
                continue
            except JanusError as error:
                self._on_fatal(error)
            else:
                self._counters.add("failed")
                if outcome.throttled:
                    self._counters.add("throttled")
                what = "retried" if state == "waiting" else "failed"
                log_outcome(held.job, what, held.seconds, outcome)
            break
        self.release([held])

    async def send_completions(self) -> None:
        """The reporter task: completions together, when a batch is full, the oldest has
        waited complete_linger, no handler runs, or the worker flushes."""
        settings = self._settings
        while True:
            if self.completions:
                age = time.monotonic() - self.completions_since
                if (
                    len(self.completions) < settings.complete_batch
                    and age < settings.complete_linger
                    and self.running
                    and not self.flushing
                ):
                    self.completions_ready.clear()
                    await _wait(self.completions_ready, settings.complete_linger - age)
                    continue
                batch = self.completions[: settings.complete_batch]
                del self.completions[: settings.complete_batch]
                self.completions_since = time.monotonic()
                await self._complete(batch)
            elif self.closing.is_set():
                return
            else:
                self.completions_ready.clear()
                await self.completions_ready.wait()

    async def _complete(self, batch: list[tuple[AsyncHeld, Outcome]]) -> None:
        for held, _ in batch:
            held.reporting = True
        self.release([held for held, _ in batch if held.context.cancelled.is_set()])
        batch = [(held, outcome) for held, outcome in batch if not held.context.cancelled.is_set()]
        trouble = Backoff(TROUBLE_FIRST_S, TROUBLE_MAX_S)
        while batch:
            try:
                answers = await self._client.complete_many(
                    [outcome.completion(held.job) for held, outcome in batch]
                )
            except BadRequest:
                # One item Janus does not take refuses them all: send them one by one.
                for held, outcome in batch:
                    await self._complete_one(held, outcome)
                return
            except TROUBLE as error:
                if await self._gave_up(batch[0][0], error, trouble):
                    break
                continue
            except JanusError as error:
                self._on_fatal(error)
                break
            for (held, outcome), answer in zip(batch, answers, strict=True):
                self._settle(held, outcome, answer)
            break
        self.release([held for held, _ in batch])

    async def _complete_one(self, held: AsyncHeld, outcome: Outcome) -> None:
        try:
            await self._client.complete(
                held.job,
                outcome.result,
                actual_costs=None if outcome.actual_costs is None else dict(outcome.actual_costs),
                upstream_throttled=outcome.upstream_throttled,
            )
        except LeaseLost:
            self._settle(held, outcome, "stale_lease")
        except JanusError as error:
            # Sent again, the same report would be refused again: fail the job for good.
            await self.fail(held, Outcome(False, error=f"completion refused: {error}", retry=False))
            return
        else:
            self._settle(held, outcome, "completed")
        self.release([held])

    def _settle(self, held: AsyncHeld, outcome: Outcome, answer: str) -> None:
        if answer == "completed":
            self._counters.add("completed")
            if outcome.throttled:
                self._counters.add("throttled")
            log_outcome(held.job, "completed", held.seconds, outcome)
        elif answer == "stale_lease":
            self.lose(held, outcome)
        else:
            logger.warning("job=%s completion answered %s", held.job.job_id, answer)

    async def _gave_up(self, held: AsyncHeld, error: JanusError, trouble: Backoff) -> bool:
        if held.context.cancelled.is_set() or time.monotonic() > self.flush_deadline:
            logger.warning("job=%s report not sent: %s", held.job.job_id, error)
            return True
        await _wait(self.closing, min(trouble.next(), self.flush_deadline - time.monotonic()))
        return False

    async def give_back(self, held: AsyncHeld) -> None:
        """Cancel a job still running at the end of the grace period, and fail it to be
        tried again soon."""
        held.context.cancelled.set()
        held.reporting = True
        if held.task is not None:
            held.task.cancel()
        try:
            await self._client.fail(
                held.job, GIVE_BACK_ERROR, retry=True, retry_after_seconds=GIVE_BACK_AFTER_S
            )
        except JanusError as error:
            logger.warning(
                "job=%s not given back (its lease will expire): %s", held.job.job_id, error
            )
        else:
            self._counters.add("given_back")
            log_outcome(held.job, "given_back", held.seconds)
        self.held.pop(held.job.lease_token, None)

    async def renew(self) -> None:
        """The one heartbeat task (see _reports.Reporter.renew: the same rules)."""
        every = self._settings.heartbeat_every_s
        lease_seconds = self._settings.lease_seconds
        tick = min(1.0, every / 4)
        while not await _wait(self.closing, tick):
            now = time.monotonic()
            for held in [h for h in self.held.values() if now - h.renewed >= every]:
                if time.monotonic() - held.renewed >= lease_seconds - tick:
                    self.lose(held)
                    continue
                sent = time.monotonic()
                try:
                    await self._client.heartbeat(held.job, lease_seconds)
                except LeaseLost:
                    if not held.reporting:
                        self.lose(held)
                except JanusError as error:
                    if not held.unanswered:
                        logger.warning("job=%s heartbeat: %s", held.job.job_id, error)
                    held.unanswered = True
                else:
                    held.renewed, held.unanswered = sent, False


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; whether it is set."""
    try:
        await asyncio.wait_for(event.wait(), max(0.0, seconds))
    except TimeoutError:
        return False
    return True
