"""The blocking worker's bookkeeping, shared by its threads under one condition: the slots
(jobs whose handler runs or whose outcome is being reported), the leases held, and the
completions waiting to be sent together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from janus_client.handlers import Outcome
from janus_client.models import ClaimedJob


class JobContext:
    """A claimed job as its handler sees it: the job (`job`, and its common fields at hand)
    and `cancelled`, set when the worker will not take the handler's outcome: the lease was
    lost (`lease_lost`), or the worker gave the job back at shutdown. Check it between steps,
    or sleep with `cancelled.wait(seconds)`."""

    def __init__(self, job: ClaimedJob) -> None:
        self.job = job
        self.cancelled = threading.Event()
        self.lease_lost = False

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.job.job_id

    @property
    def payload(self) -> Any:
        """The producer's payload, parsed."""
        return self.job.payload

    @property
    def attempt(self) -> int:
        """Which attempt this is, from 1."""
        return self.job.attempt

    @property
    def dependencies(self) -> dict[str, int]:
        """The tokens the job was charged per dependency (its estimate)."""
        return self.job.dependencies


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
    """Who holds what. A slot is taken from the claim that leases a job until the job's
    report is sent (so the worker never holds more than `concurrency` leases); a lease is
    renewed until then, or until it is lost."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.cond = threading.Condition()
        self.held: dict[str, HeldJob] = {}  # by lease token: a job can come back to us
        self.busy = 0
        self.running = 0
        self.reserved = 0
        self.completions: list[Completion] = []
        self.completions_since = 0.0
        # Past the grace period: send what waits at once, and give up at flush_deadline.
        self.flushing = False
        self.flush_deadline = float("inf")

    def notify(self) -> None:
        """Wake every thread waiting on the book."""
        with self.cond:
            self.cond.notify_all()

    def reserve(self, most: int, stopping: threading.Event) -> int:
        """Wait for a free slot and reserve up to `most`; 0 once `stopping` is set."""
        with self.cond:
            while not stopping.is_set():
                free = self.concurrency - self.busy - self.reserved
                if free > 0:
                    self.reserved += min(free, most)
                    return min(free, most)
                self.cond.wait()
            return 0

    def unreserve(self, count: int) -> None:
        """A claim that got nothing gives its reserved slots back."""
        with self.cond:
            self.reserved -= count
            self.cond.notify_all()

    def start(self, jobs: list[ClaimedJob], reserved: int, sent: float) -> list[HeldJob]:
        """The jobs a claim sent at `sent` leased, each in a slot it reserved."""
        now = time.monotonic()
        started = [HeldJob(JobContext(job), started=now, renewed=sent) for job in jobs]
        with self.cond:
            self.reserved -= reserved
            self.busy += len(started)
            self.running += len(started)
            for held in started:
                self.held[held.job.lease_token] = held
            self.cond.notify_all()
        return started

    def finished(self, held: HeldJob, outcome: Outcome) -> Literal["dropped", "batched", "fail"]:
        """The handler returned: its outcome is dropped (the job was lost or given back
        meanwhile), batched with the completions, or to be sent as a fail by the caller."""
        with self.cond:
            held.running = False
            held.finished = time.monotonic()
            self.running -= 1
            if held.context.cancelled.is_set():
                self.busy -= 1
                self.held.pop(held.job.lease_token, None)
                self.cond.notify_all()
                return "dropped"
            if not outcome.completed:
                held.reporting = True
                return "fail"
            if not self.completions:
                self.completions_since = held.finished
            self.completions.append((held, outcome))
            self.cond.notify_all()
            return "batched"

    def release(self, held: HeldJob) -> None:
        """The job's report is sent (or given up): its slot is free, its lease forgotten."""
        with self.cond:
            self.busy -= 1
            self.held.pop(held.job.lease_token, None)
            self.cond.notify_all()

    def lose(self, held: HeldJob) -> bool:
        """Mark the job's lease lost, once: whether this call did. Its slot stays taken
        until its handler returns or its report is given up."""
        with self.cond:
            if held.context.cancelled.is_set():
                return False
            held.context.lease_lost = True
            held.context.cancelled.set()
            self.held.pop(held.job.lease_token, None)
            self.cond.notify_all()
            return True

    def take_completions(
        self, most: int, linger: float, closing: threading.Event
    ) -> list[Completion]:
        """Wait until completions should be sent: `most` wait, the oldest waited `linger`,
        no handler runs (no company is coming), or the worker is flushing. [] once
        `closing` is set and none waits."""
        with self.cond:
            while True:
                if self.completions:
                    age = time.monotonic() - self.completions_since
                    if len(self.completions) >= most or age >= linger:
                        break
                    if self.running == 0 or self.flushing:
                        break
                    self.cond.wait(linger - age)
                elif closing.is_set():
                    return []
                else:
                    self.cond.wait()
            batch = self.completions[:most]
            del self.completions[:most]
            self.completions_since = time.monotonic()
            for held, _ in batch:
                held.reporting = True
            return batch

    def wait_until(self, done: Callable[[], bool], deadline: float, cut: threading.Event) -> None:
        """Wait, the book locked between looks, until `done()`, `deadline` or `cut`."""
        with self.cond:
            while not done() and not cut.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(min(left, 0.1))

    def give_back_running(self, flush_s: float) -> list[HeldJob]:
        """The grace period is over: the jobs whose handler still runs, cancelled (their
        leases are the caller's to give back); from now on what waits is sent at once."""
        with self.cond:
            running = [held for held in self.held.values() if held.running]
            for held in running:
                held.context.cancelled.set()
                held.reporting = True
            self.flushing = True
            self.flush_deadline = time.monotonic() + flush_s
            self.cond.notify_all()
            return running

    def forget(self, held: HeldJob) -> None:
        """A lease given back: no more renewals (its slot is freed when its handler ends)."""
        with self.cond:
            self.held.pop(held.job.lease_token, None)
            self.cond.notify_all()

    def due(self, every: float) -> list[HeldJob]:
        """The leases last renewed `every` seconds ago or more."""
        now = time.monotonic()
        with self.cond:
            return [held for held in self.held.values() if now - held.renewed >= every]
