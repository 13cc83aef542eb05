"""Worker clients for the fault scenarios: threads that claim jobs and complete them over HTTP.

Each worker claims a few jobs of its user (a short lease, so that a job whose completion was
lost comes back to the queue within seconds), then completes them, every other worker with one
batch complete (`POST /system/jobs/complete`), the others one job at a time. A completion
that got no real answer (503, a dropped connection) is sent again a few times, as a worker
would, and then given up: the lease expires and the job goes back to the queue. A pool may
also fail one lease in N with retry instead (`fail_one_in`), as the pacing scenario does, and
send each lease a heartbeat before completing it (`heartbeat`), as the deploy scenario does.

Everything the workers were told is recorded (WorkerLog), so that the scenario can check it
against the database: which worker got which job at which attempt with which lease token,
which completions were acknowledged to which worker, and every answer, to hold them to the
shared invariants (no 5xx but 503, every 503 with Retry-After, no hang).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.faults.harness import Clock, Reply, send

# Jobs leased per claim, and for how long: short, so an abandoned job is claimable again soon.
CLAIM_LIMIT = 5
LEASE_S = 3
# An unanswered completion (503, dropped, refused) is sent again this often, then given up.
COMPLETE_TRIES = 4
RETRY_PAUSE_S = 0.1
# A claim that leased nothing waits this long before claiming again (there is no long poll).
EMPTY_PAUSE_S = 0.05


@dataclass(frozen=True)
class Lease:
    """A job leased to a worker by one claim."""

    worker: int
    job_id: str
    attempt: int
    lease_token: str


@dataclass(frozen=True)
class Answer:
    """One queue request a worker sent and what came back, on the scenario's clock."""

    route: str  # "claim", "heartbeat", "complete" (one job), "complete-batch" or "fail"
    sent_at: float
    answered_at: float
    reply: Reply

    @property
    def kind(self) -> str:
        """The status code as text, or the failure (refused, dropped, timeout)."""
        return self.reply.kind


@dataclass
class WorkerLog:
    """What every worker did, appended to under a lock."""

    leases: list[Lease] = field(default_factory=list)
    # (job_id, worker): a completion the service acknowledged as done to that worker.
    acknowledged: list[tuple[str, int]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    # Jobs whose failure (with retry) the service acknowledged.
    failed: list[str] = field(default_factory=list)
    # Completions a worker gave up on after COMPLETE_TRIES unanswered tries.
    given_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict[str, dict[str, int]]:
        """Answers by route and kind."""
        by_route: dict[str, Counter[str]] = {}
        for answer in self.answers:
            by_route.setdefault(answer.route, Counter())[answer.kind] += 1
        return {route: dict(kinds) for route, kinds in sorted(by_route.items())}


class Worker(threading.Thread):
    """One worker: claim, complete, again, until stopped."""

    def __init__(
        self,
        number: int,
        base_url: str,
        user_id: str,
        clock: Clock,
        log: WorkerLog,
        stopping: threading.Event,
        fail_one_in: int = 0,
        heartbeat: bool = False,
    ) -> None:
        super().__init__(name=f"worker-{number}", daemon=True)
        self.number = number
        self._base_url = base_url
        self._headers = {"X-User-ID": user_id}
        self._clock = clock
        self._log = log
        self._stopping = stopping
        # Workers take users in turn (WorkerPool): 0 and 1 send batches, 2 and 3 single
        # completions, and so on, so each user has workers of both kinds.
        self.batch = (number // 2) % 2 == 0
        # Every fail_one_in-th lease of this worker is failed with retry (0: none is).
        self._fail_one_in = fail_one_in
        self._leased = 0
        self._heartbeat = heartbeat

    def _post(self, route: str, path: str, body: Any) -> Reply:
        sent_at = self._clock.now()
        reply = send(self._base_url, "POST", path, body=body, headers=self._headers)
        answer = Answer(route, sent_at, self._clock.now(), reply)
        with self._log.lock:
            self._log.answers.append(answer)
        return reply

    def run(self) -> None:
        while not self._stopping.is_set():
            reply = self._post(
                "claim", "/system/jobs/claim", {"limit": CLAIM_LIMIT, "lease_seconds": LEASE_S}
            )
            if reply.status != 200 or not isinstance(reply.body, dict):
                time.sleep(RETRY_PAUSE_S)
                continue
            leases = [
                Lease(self.number, str(job["job_id"]), int(job["attempt"]), job["lease_token"])
                for job in reply.body["jobs"]
            ]
            with self._log.lock:
                self._log.leases.extend(leases)
            if not leases:
                time.sleep(EMPTY_PAUSE_S)
                continue
            leases = [lease for lease in leases if not self._failed(lease)]
            if not leases:
                continue
            for lease in leases if self._heartbeat else []:
                body = {"lease_token": lease.lease_token, "lease_seconds": LEASE_S}
                self._post("heartbeat", f"/system/jobs/{lease.job_id}/heartbeat", body)
            if self.batch:
                self._complete_batch(leases)
            else:
                for lease in leases:
                    self._complete_one(lease)

    def _failed(self, lease: Lease) -> bool:
        """Fail `lease` with retry if it is this worker's fail_one_in-th; whether it was."""
        self._leased += 1
        if not self._fail_one_in or self._leased % self._fail_one_in:
            return False
        body = {"lease_token": lease.lease_token, "error": "failed on purpose", "retry": True}
        for reply in self._tries("fail", f"/system/jobs/{lease.job_id}/fail", body):
            if reply.status == 200:
                with self._log.lock:
                    self._log.failed.append(lease.job_id)
        return True

    def _tries(self, route: str, path: str, body: Any) -> Iterator[Reply]:
        """The answers to `body` sent again while it gets no real answer, COMPLETE_TRIES at most."""
        for _ in range(COMPLETE_TRIES):
            reply = self._post(route, path, body)
            yield reply
            if reply.status is not None and reply.status != 503:
                return
            time.sleep(RETRY_PAUSE_S)
        with self._log.lock:
            self._log.given_up += 1

    def _complete_batch(self, leases: Sequence[Lease]) -> None:
        body = {
            "jobs": [
                {"job_id": lease.job_id, "lease_token": lease.lease_token, "result": _result(lease)}
                for lease in leases
            ]
        }
        for reply in self._tries("complete-batch", "/system/jobs/complete", body):
            if reply.status == 200 and isinstance(reply.body, dict):
                done = [
                    (str(item["job_id"]), self.number)
                    for item in reply.body["results"]
                    if item["outcome"] == "completed"
                ]
                with self._log.lock:
                    self._log.acknowledged.extend(done)

    def _complete_one(self, lease: Lease) -> None:
        body = {"lease_token": lease.lease_token, "result": _result(lease)}
        path = f"/system/jobs/{lease.job_id}/complete"
        for reply in self._tries("complete", path, body):
            if reply.status == 200:
                with self._log.lock:
                    self._log.acknowledged.append((lease.job_id, self.number))


def _result(lease: Lease) -> dict[str, Any]:
    """What a worker stores as the job's result: who did it, under which lease."""
    return {"worker": lease.worker, "attempt": lease.attempt, "lease_token": lease.lease_token}


class WorkerPool:
    """Worker threads, one user each in turn, running until stop()."""

    def __init__(
        self,
        base_url: str,
        user_ids: Sequence[str],
        clock: Clock,
        count: int,
        *,
        fail_one_in: int = 0,
        heartbeat: bool = False,
    ) -> None:
        self.log = WorkerLog()
        self._stopping = threading.Event()
        self._workers = [
            Worker(
                n,
                base_url,
                user_ids[n % len(user_ids)],
                clock,
                self.log,
                self._stopping,
                fail_one_in,
                heartbeat,
            )
            for n in range(count)
        ]

    def start(self) -> WorkerPool:
        """Start every worker."""
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> WorkerLog:
        """Stop claiming; wait for the completions in flight."""
        self._stopping.set()
        for worker in self._workers:
            worker.join(timeout=60)
        return self.log
