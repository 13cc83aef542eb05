"""The blocking worker's bookkeeping, shared by its threads under one lock: the slots (jobs
whose handler runs), the outcomes on their way to Janus, the leases held, and the
completions waiting to be sent together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from janus_client._runtime import JobView, WorkerSettings, claimable
from janus_client.handlers import Outcome
from janus_client.models import ClaimedJob


class JobContext(JobView):
    """A claimed job as its handler sees it: the job (`job`, and its common fields at hand)
    and `cancelled`, set when the worker will not take the handler's outcome: the lease was
    lost (`lease_lost`), or the worker gave the job back at shutdown. Check it between steps,
    or sleep with `cancelled.wait(seconds)`."""

    def __init__(self, job: ClaimedJob) -> None:
        self.job = job
        self.cancelled = threading.Event()
        self.lease_lost = False


@dataclass(eq=False)
class HeldJob:
    """A job taking one of the worker's slots: its context, when its handler started and
    ended, and when its lease was last granted (time.monotonic(), as the call was sent)."""

    context: JobContext
    started: float
    renewed: float
    running: bool = True
    # A report (complete or fail) is in flight: a heartbeat's 409 is that report's doing.
    reporting: bool = False
    finished: float = 0.0
    # The last heartbeat got no answer (logged once until one does).
    unanswered: bool = False

    @property
    def job(self) -> ClaimedJob:
        """The claimed job."""
        return self.context.job

    @property
    def seconds(self) -> float:
        """How long its handler ran."""
        return (self.finished or time.monotonic()) - self.started


Completion = tuple[HeldJob, Outcome]


class LeaseBook:
    """Who holds what. A slot (a handler thread) is taken from the claim that leases a job
    until its handler returns; the job's outcome is then reported while the slot takes the
    next job, at most twice `concurrency` outcomes at a time on their way to Janus
    (_runtime.claimable()). A lease is renewed until its report is sent, or until it is lost.

    A claimer waits for a claim's worth of free slots, or for any while no claim is in flight
    (so that a long handler's slot does not stay idle, and quick ones are claimed for in
    batches). One lock, two conditions, each notified only when what its waiters wait for
    changes: `slot_freed` (the claimers, woken one at a time, each waking the next while
    another claim can be made), `changed` (the reporter; shutdown looks every 0.1 s). A
    thread woken for nothing costs a no-op job as much as the job itself.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.complete_batch = settings.complete_batch
        # Reentrant: a signal handler (stop()) may run while its thread holds the lock.
        self.lock = threading.RLock()
        self.slot_freed = threading.Condition(self.lock)
        self.changed = threading.Condition(self.lock)
        self.held: dict[str, HeldJob] = {}  # by lease token: a job can come back to us
        self.running = 0  # handlers running: the slots taken, with `reserved`
        self.reserved = 0  # slots the claims in flight asked for
        self.unreported = 0  # outcomes not yet reported
        self.completions: list[Completion] = []
        self.completions_since = 0.0
        # Past the grace period: send what waits at once, and give up at flush_deadline.
        self.flushing = False
        self.flush_deadline = float("inf")

    def notify(self) -> None:
        """Wake every thread waiting on the book (the worker stops or closes)."""
        with self.lock:
            self.slot_freed.notify_all()
            self.changed.notify_all()

    def reserve(self, stopping: threading.Event) -> int:
        """Wait until a claim can be made and reserve its slots; 0 once `stopping` is set."""
        with self.lock:
            while not stopping.is_set():
                wanted = self._claimable()
                if wanted:
                    self.reserved += wanted
                    self._offer()
                    return wanted
                self.slot_freed.wait()
            return 0

    def unreserve(self, count: int) -> None:
        """A claim that got nothing gives its reserved slots back."""
        with self.lock:
            self.reserved -= count
            self._offer()

    def _claimable(self) -> int:
        return claimable(self.settings, self.running, self.reserved, self.unreported)

    def _offer(self) -> None:
        """Wake one claimer if a claim can be made (it wakes the next, if another can)."""
        if self._claimable():
            self.slot_freed.notify()

    def start(self, jobs: list[ClaimedJob], reserved: int, sent: float) -> list[HeldJob]:
        """The jobs a claim sent at `sent` leased, each in a slot it reserved (the rest of
        the reservation is freed)."""
        now = time.monotonic()
        started = [HeldJob(JobContext(job), started=now, renewed=sent) for job in jobs]
        with self.lock:
            self.reserved -= reserved
            self.running += len(started)
            for held in started:
                self.held[held.job.lease_token] = held
            self._offer()
        return started

    def finished(self, held: HeldJob, outcome: Outcome) -> Literal["dropped", "batched", "fail"]:
        """The handler returned: its outcome is dropped (the job was lost or given back
        meanwhile), batched with the completions, or to be sent as a fail by the caller."""
        with self.lock:
            held.running = False
            held.finished = time.monotonic()
            self.running -= 1
            self._offer()
            if self.running == 0:
                self.changed.notify_all()  # nothing else will come soon: send what waits
            if held.context.cancelled.is_set():
                self.held.pop(held.job.lease_token, None)
                return "dropped"
            self.unreported += 1
            if not outcome.completed:
                held.reporting = True
                return "fail"
            if not self.completions:
                self.completions_since = held.finished
                self.changed.notify_all()  # the reporter starts counting the linger
            self.completions.append((held, outcome))
            if len(self.completions) == self.complete_batch:
                self.changed.notify_all()
            return "batched"

    def release(self, done: list[HeldJob]) -> None:
        """These jobs' reports are sent (or given up): their leases are forgotten."""
        with self.lock:
            self.unreported -= len(done)
            for held in done:
                self.held.pop(held.job.lease_token, None)
            self._offer()

    def lose(self, held: HeldJob) -> bool:
        """Mark the job's lease lost, once: whether this call did. Its slot stays taken
        until its handler returns, its report until given up."""
        with self.lock:
            if held.context.cancelled.is_set():
                return False
            held.context.lease_lost = True
            held.context.cancelled.set()
            self.held.pop(held.job.lease_token, None)
            return True

    def take_completions(self, linger: float, closing: threading.Event) -> list[Completion]:
        """Wait until completions should be sent: a batch's worth wait, the oldest waited
        `linger`, no handler runs (no company is coming), or the worker is flushing. []
        once `closing` is set and none waits."""
        with self.lock:
            while True:
                if self.completions:
                    age = time.monotonic() - self.completions_since
                    if len(self.completions) >= self.complete_batch or age >= linger:
                        break
                    if self.running == 0 or self.flushing:
                        break
                    self.changed.wait(linger - age)
                elif closing.is_set():
                    return []
                else:
                    self.changed.wait()
            batch = self.completions[: self.complete_batch]
            del self.completions[: self.complete_batch]
            self.completions_since = time.monotonic()
            for held, _ in batch:
                held.reporting = True
            return batch

    def wait_until(self, done: Callable[[], bool], deadline: float, cut: threading.Event) -> None:
        """Wait, looking every 0.1 s with the book locked, until `done()`, `deadline` or `cut`."""
        with self.lock:
            while not done() and not cut.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(min(left, 0.1))

    def give_back_running(self, flush_s: float) -> list[HeldJob]:
        """The grace period is over: the jobs whose handler still runs, cancelled (their
        leases are the caller's to give back); from now on what waits is sent at once."""
        with self.lock:
            running = [held for held in self.held.values() if held.running]
            for held in running:
                held.context.cancelled.set()
                held.reporting = True
            self.flushing = True
            self.flush_deadline = time.monotonic() + flush_s
            self.changed.notify_all()
            return running

    def forget(self, held: HeldJob) -> None:
        """A lease given back: no more renewals (its slot is freed when its handler ends)."""
        with self.lock:
            self.held.pop(held.job.lease_token, None)

    def due(self, every: float) -> list[HeldJob]:
        """The leases last renewed `every` seconds ago or more."""
        now = time.monotonic()
        with self.lock:
            return [held for held in self.held.values() if now - held.renewed >= every]
