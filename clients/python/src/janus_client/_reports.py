"""How the blocking worker tells Janus what became of each job: completions together, a
failure on its own from its handler's thread, a job given back at shutdown; and what each
answer means for the job's slot, its lease and the counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from janus_client._leases import Completion, HeldJob, LeaseBook
from janus_client._runtime import (
    GIVE_BACK_AFTER_S,
    GIVE_BACK_ERROR,
    TROUBLE_FIRST_S,
    TROUBLE_MAX_S,
    Backoff,
    Counters,
    log_outcome,
    logger,
)
from janus_client.client import JanusClient
from janus_client.errors import (
    BadRequest,
    ConnectionFailed,
    JanusError,
    LeaseLost,
    TooManyRequests,
    Unavailable,
)
from janus_client.handlers import Outcome

# Janus is unavailable, unreachable or asks for a pause: wait and try again.
TROUBLE = (Unavailable, ConnectionFailed, TooManyRequests)


class Reporter:
    """Sends each job's outcome and renews the leases held; `on_fatal` hears of an error
    that means the worker cannot go on (Janus refuses its credential, say)."""

    def __init__(
        self,
        client: JanusClient,
        book: LeaseBook,
        counters: Counters,
        closing: threading.Event,
        on_fatal: Callable[[JanusError], None],
    ) -> None:
        self._client = client
        self._book = book
        self._counters = counters
        self._closing = closing
        self._on_fatal = on_fatal

    def fail(self, held: HeldJob, outcome: Outcome) -> None:
        """Send the job's fail (failures are not batched: there is no call for many)."""
        trouble = Backoff(TROUBLE_FIRST_S, TROUBLE_MAX_S)
        while True:
            try:
                state = self._client.fail(held.job, **outcome.fail_arguments())
            except LeaseLost:
                self._lost(held, outcome)
            except BadRequest as error:
                if outcome.actual_costs is None and not outcome.upstream_throttled:
                    self._on_fatal(error)
                    break
                # What the handler reported is not what Janus takes: fail the job without it.
                outcome = outcome.without_report(f"report refused: {error}")
                continue
            except TROUBLE as error:
                if self._gave_up(held, error, trouble):
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
        self._book.release([held])

    def complete(self, batch: list[Completion]) -> None:
        """Send a batch of completions in one call; each answer settles its job."""
        # A lease lost while its completion waited: the outcome is dropped, not reported.
        self._book.release([held for held, _ in batch if held.context.cancelled.is_set()])
        batch = [(held, outcome) for held, outcome in batch if not held.context.cancelled.is_set()]
        if not batch:
            return
        trouble = Backoff(TROUBLE_FIRST_S, TROUBLE_MAX_S)
        items = [outcome.completion(held.job) for held, outcome in batch]
        while True:
            try:
                answers = self._client.complete_many(items)
            except BadRequest:
                # One item Janus does not take refuses them all: send them one by one.
                for held, outcome in batch:
                    self._complete_one(held, outcome)
                return
            except TROUBLE as error:
                if self._gave_up(batch[0][0], error, trouble):
                    break
                continue
            except JanusError as error:
                self._on_fatal(error)
                break
            completed = []
            for (held, outcome), answer in zip(batch, answers, strict=True):
                self._settle(held, outcome, answer)
                if answer == "completed":
                    completed.append(outcome)
            self._count_completed(completed)
            break
        self._book.release([held for held, _ in batch])

    def give_back(self, held: HeldJob) -> None:
        """Fail a job still running at the end of the grace period, to be tried again soon."""
        try:
            self._client.fail(
                held.job, GIVE_BACK_ERROR, retry=True, retry_after_seconds=GIVE_BACK_AFTER_S
            )
        except JanusError as error:
            logger.warning(
                "job=%s not given back (its lease will expire): %s", held.job.job_id, error
            )
        else:
            self._counters.add("given_back")
            log_outcome(held.job, "given_back", held.seconds)
        self._book.forget(held)

    def _complete_one(self, held: HeldJob, outcome: Outcome) -> None:
        try:
            self._client.complete(
                held.job,
                outcome.result,
                actual_costs=None if outcome.actual_costs is None else dict(outcome.actual_costs),
                upstream_throttled=outcome.upstream_throttled,
            )
        except LeaseLost:
            self._settle(held, outcome, "stale_lease")
        except JanusError as error:
            # Sent again, the same report would be refused again: fail the job for good.
            self.fail(held, Outcome(False, error=f"completion refused: {error}", retry=False))
            return
        else:
            self._settle(held, outcome, "completed")
            self._count_completed([outcome])
        self._book.release([held])

    def _count_completed(self, outcomes: list[Outcome]) -> None:
        self._counters.add("completed", len(outcomes))
        throttled = sum(outcome.throttled for outcome in outcomes)
        if throttled:
            self._counters.add("throttled", throttled)

    def _settle(self, held: HeldJob, outcome: Outcome, answer: str) -> None:
        """Log what Janus answered a completion (the caller counts the completed)."""
        if answer == "completed":
            log_outcome(held.job, "completed", held.seconds, outcome)
        elif answer == "stale_lease":
            self._lost(held, outcome)
        else:
            logger.warning("job=%s completion answered %s", held.job.job_id, answer)

    def _lost(self, held: HeldJob, outcome: Outcome | None = None) -> None:
        if self._book.lose(held):
            self._counters.add("lease_lost")
            log_outcome(held.job, "lease_lost", held.seconds, outcome)

    def _gave_up(self, held: HeldJob, error: JanusError, trouble: Backoff) -> bool:
        """After a report found Janus unavailable: whether to stop trying (the lease was lost
        meanwhile, or the worker stops and its flush is overdue); else wait, then try again."""
        if held.context.cancelled.is_set() or time.monotonic() > self._book.flush_deadline:
            logger.warning("job=%s report not sent: %s", held.job.job_id, error)
            return True
        self._closing.wait(min(trouble.next(), self._book.flush_deadline - time.monotonic()))
        return False

    def renew(self, every: float, lease_seconds: int) -> None:
        """The one heartbeat thread: renew each lease once `every` seconds have passed since
        its last renewal; a lease Janus refuses, or not renewed within its length, is lost.
        Lost a look early (`tick`), so the handler hears it before Janus can hand the job out
        again: the lease's end counts from when its call was sent, before Janus granted it."""
        tick = min(1.0, every / 4)
        while not self._closing.wait(tick):
            for held in self._book.due(every):
                if time.monotonic() - held.renewed >= lease_seconds - tick:
                    self._lost(held)
                    continue
                sent = time.monotonic()
                try:
                    self._client.heartbeat(held.job, lease_seconds)
                except LeaseLost:
                    if not held.reporting:
                        self._lost(held)
                except JanusError as error:
                    if not held.unanswered:
                        logger.warning("job=%s heartbeat: %s", held.job.job_id, error)
                    held.unanswered = True
                else:
                    held.renewed, held.unanswered = sent, False
