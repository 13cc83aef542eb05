"""The worker runtime (janus_client.worker, `janus-worker`) against the real service under
gunicorn: draining a queue with failures and upstream throttling, leases outlived and lost,
and a SIGTERM in the middle of the work, with nothing lost and nothing done twice at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from devtools.service import Service
from janus_client import JanusClient, RetryPolicy
from janus_client._runtime import GIVE_BACK_ERROR
from janus_client.worker import JobContext, Worker
from tests.conftest import REPO_ROOT
from tests.support.factories import user_with_config
from tests.support.worker_handlers import mixed
from tests.support.worker_service import states, submit_jobs, unfinished, wait_for

pytestmark = pytest.mark.concurrency

ADAPTIVE = {"decrease": 0.5, "floor": 0.25, "recovery_per_minute": 0.05}
JANUS_WORKER = Path(sys.executable).parent / "janus-worker"


def worker_user(db: psycopg.Connection, *, adaptive: bool = False) -> UUID:
    limits: dict[str, Any] = {"capacity": 10_000, "refill_per_second": 1}
    if adaptive:
        limits["adaptive"] = ADAPTIVE
    return user_with_config(db, {"openai": limits})


def client_of(server: Service, user: UUID, **options: Any) -> JanusClient:
    return JanusClient(server.url, user_id=str(user), **options)


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """The worker running in a thread of its own (no signals there: stop() stops it)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert failures == []


def recorded(
    handler: Callable[[JobContext], Any], calls: list[tuple[str, int, float]]
) -> Callable[[JobContext], Any]:
    """`handler`, noting each attempt as (job id, attempt, time.monotonic() at its start)."""

    def handle(job: JobContext) -> Any:
        calls.append((job.job_id, job.attempt, time.monotonic()))
        return handler(job)

    return handle


def test_the_worker_drains_a_queue_with_failures_and_upstream_throttling(
    worker_service: Service, worker_db: psycopg.Connection
) -> None:
    user = worker_user(worker_db, adaptive=True)
    kinds = ["ok"] * 20 + ["raises"] * 2 + ["refuses"] * 2 + ["throttled"] * 2 + ["bad_result"]
    ids = submit_jobs(worker_service, user, [{"kind": k, "n": n} for n, k in enumerate(kinds)], 2)
    calls: list[tuple[str, int, float]] = []
    with client_of(worker_service, user) as client:
        worker = Worker(recorded(mixed, calls), concurrency=4, client=client, lease_seconds=10)
        with running(worker):
            wait_for(lambda: unfinished(worker_db, user) == 0)

    found = states(worker_db, user)
    for n, (job_id, kind) in enumerate(zip(ids, kinds, strict=True)):
        state, attempts, result, error = found[job_id]
        if kind == "ok":
            assert (state, attempts, result, error) == ("completed", 1, {"n": n}, None)
        elif kind == "raises":  # retried while attempts remained (max_attempts 3)
            assert (state, attempts, result) == ("failed", 3, None)
            assert error is not None and error.endswith(f"RuntimeError: job {n} went wrong")
            assert "Traceback" in error
        elif kind == "refuses":
            assert (state, attempts, error) == ("failed", 1, "this job can never succeed")
        elif kind == "throttled":
            assert (state, attempts) == ("completed", 2)
            assert result == {"n": n, "after_throttling": True}
        else:
            assert (state, attempts) == ("failed", 1)
            assert error == "the handler returned a str, not a JSON object (a dict) or None"
    # A throttled job waited the upstream's Retry-After (1 s) before its second attempt.
    for job_id in (i for i, k in zip(ids, kinds, strict=True) if k == "throttled"):
        first, second = (t for j, _, t in sorted(calls, key=lambda c: c[1]) if j == job_id)
        assert second - first >= 0.9
    assert worker.counters.as_dict() == {
        "claimed": 20 + 2 * 3 + 2 + 2 * 2 + 1,
        "completed": 22,
        "failed": 2 * 3 + 2 + 2 + 1,
        "throttled": 2,
        "lease_lost": 0,
        "given_back": 0,
    }
    # The real costs were settled (1 of the 2 charged), and openai heard of its throttling.
    costs = worker_db.execute(
        "SELECT DISTINCT actual_costs FROM jobs WHERE user_id = %s AND state = 'completed'"
        " AND attempts = 1",
        [user],
    ).fetchall()
    assert costs == [({"openai": 1},)]
    throttled = worker_db.execute(
        "SELECT throttled_at IS NOT NULL, effective_refill_per_second < refill_per_second"
        " FROM token_buckets WHERE user_id = %s AND dependency = 'openai'",
        [user],
    ).fetchone()
    assert throttled == (True, True)


def test_a_report_janus_refuses_fails_its_job_and_only_its_job(
    worker_service: Service, worker_db: psycopg.Connection
) -> None:
    user = worker_user(worker_db)
    kinds = ["ok", "bad_costs", "ok", "refuses_bad_costs", "ok"]
    ids = submit_jobs(worker_service, user, [{"kind": k, "n": n} for n, k in enumerate(kinds)])
    with client_of(worker_service, user) as client:
        worker = Worker(mixed, concurrency=5, client=client, lease_seconds=10)
        with running(worker):
            wait_for(lambda: unfinished(worker_db, user) == 0)

    found = states(worker_db, user)
    assert [found[job_id][:2] for job_id in ids] == [
        ("completed", 1), ("failed", 1), ("completed", 1), ("failed", 1), ("completed", 1),
    ]  # fmt: skip
    assert (found[ids[1]][3] or "").startswith("completion refused: ")
    assert (found[ids[3]][3] or "").startswith("this job can never succeed\n(report refused: ")
    assert (worker.counters.completed, worker.counters.failed) == (3, 2)


def test_a_handler_slower_than_its_lease_keeps_it_by_heartbeats(
    worker_service: Service, worker_db: psycopg.Connection
) -> None:
    user = worker_user(worker_db)
    [job_id] = submit_jobs(worker_service, user, [{"kind": "sleep", "seconds": 3.5}])
    with client_of(worker_service, user) as client:
        worker = Worker(mixed, concurrency=2, client=client, lease_seconds=2)
        with running(worker):
            wait_for(lambda: unfinished(worker_db, user) == 0)
    assert states(worker_db, user)[job_id][:3] == ("completed", 1, {"slept": True})
    assert worker.counters.lease_lost == 0


class DropHeartbeats(httpx.HTTPTransport):
    """The network between a worker and Janus losing every heartbeat, and nothing else."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/heartbeat"):
            raise httpx.ConnectError("heartbeat lost on the way", request=request)
        return super().handle_request(request)


def test_a_lease_lost_under_a_slow_handler_goes_to_another_claim_and_its_outcome_is_dropped(
    worker_service: Service, worker_db: psycopg.Connection
) -> None:
    user = worker_user(worker_db)
    [job_id] = submit_jobs(worker_service, user, [{"kind": "slow"}])
    seen: dict[str, Any] = {}

    def slow(job: JobContext) -> Any:  # ten times its lease, unless told to stop
        slow_worker.stop()  # after this job: the quick worker is to get it back
        seen["cancelled"] = job.cancelled.wait(20)
        seen["cancelled_at"], seen["lease_lost"] = time.monotonic(), job.lease_lost
        return {"by": "slow"}

    def quick(job: JobContext) -> Any:
        seen["quick_started_at"] = time.monotonic()
        return {"by": "quick"}

    cut_off = client_of(
        worker_service, user, transport=DropHeartbeats(), retry=RetryPolicy(max_attempts=1)
    )
    with cut_off, client_of(worker_service, user) as client:
        slow_worker = Worker(slow, concurrency=1, client=cut_off, lease_seconds=2)
        with running(slow_worker):
            wait_for(lambda: states(worker_db, user)[job_id][0] == "running")
            quick_worker = Worker(quick, concurrency=1, client=client, lease_seconds=2)
            with running(quick_worker):
                wait_for(lambda: unfinished(worker_db, user) == 0)
                wait_for(lambda: "cancelled_at" in seen)

    assert states(worker_db, user)[job_id][:3] == ("completed", 2, {"by": "quick"})
    assert seen["cancelled"] and seen["lease_lost"]
    # The slow handler was told before its job was handed out again: never both at once
    # under a lease either believed it held.
    assert seen["cancelled_at"] <= seen["quick_started_at"]
    assert slow_worker.counters.as_dict() == {
        "claimed": 1,
        "completed": 0,
        "failed": 0,
        "throttled": 0,
        "lease_lost": 1,
        "given_back": 0,
    }
    assert quick_worker.counters.completed == 1


STOPPED = re.compile(r"worker stopped: (.*)$", re.MULTILINE)


def start_janus_worker(
    server: Service, user: UUID, log: Path, target: str, *options: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JANUS_URL": server.url, "JANUS_USER_ID": str(user)}
    env.pop("JANUS_API_KEY", None)
    with log.open("ab") as output:
        return subprocess.Popen(
            [str(JANUS_WORKER), target, *options], cwd=REPO_ROOT, env=env, stderr=output
        )


def final_counters(log: str) -> list[dict[str, int]]:
    """Each run's counters, from its `worker stopped:` line."""
    return [
        {key: int(value) for key, value in (pair.split("=") for pair in line.split())}
        for line in STOPPED.findall(log)
    ]


@pytest.mark.parametrize("target", ["mixed", "mixed_async"])
def test_sigterm_mid_batch_loses_nothing_and_completes_nothing_twice(
    worker_service: Service, worker_db: psycopg.Connection, tmp_path: Path, target: str
) -> None:
    user = worker_user(worker_db)
    # Every third job sleeps far past the grace period on its first attempt: given back.
    payloads = [{"kind": "sleep", "seconds": 20 if n % 3 == 0 else 0.3, "n": n} for n in range(24)]
    ids = submit_jobs(worker_service, user, payloads)
    log = tmp_path / "worker.log"
    options = ("-c", "8", "--grace-seconds", "1")
    handlers = "tests.support.worker_handlers"
    worker = start_janus_worker(worker_service, user, log, f"{handlers}:{target}", *options)
    try:
        wait_for(lambda: sum(s[0] == "completed" for s in states(worker_db, user).values()) >= 6)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0, log.read_text()
    finally:
        worker.kill()
    first = states(worker_db, user)
    # Nothing is left running: each job completed, or back in the queue.
    assert {state for state, *_ in first.values()} <= {"completed", "waiting", "queued"}
    given_back = [i for i, (state, _, _, error) in first.items() if error == GIVE_BACK_ERROR]
    assert given_back and all(first[i][:2] == ("waiting", 1) for i in given_back)
    [counted] = final_counters(log.read_text())
    completed = sum(state == "completed" for state, *_ in first.values())
    assert (counted["completed"], counted["given_back"]) == (completed, len(given_back))
    assert counted["lease_lost"] == counted["failed"] == 0

    # Started again, on a handler that does nothing, it drains the rest.
    nothing = "nothing_async" if target == "mixed_async" else "nothing"
    quick = start_janus_worker(worker_service, user, log, f"{handlers}:{nothing}", *options)
    try:
        wait_for(lambda: unfinished(worker_db, user) == 0)
        quick.send_signal(signal.SIGTERM)
        assert quick.wait(15) == 0, log.read_text()
    finally:
        quick.kill()
    last = states(worker_db, user)
    assert all(last[i][0] == "completed" for i in ids)
    assert all(last[i][1] == (2 if i in given_back else 1) for i in ids)
    assert log.read_text().count("outcome=given_back") == len(given_back)
    runs = final_counters(log.read_text())
    assert sum(run["completed"] for run in runs) == len(ids)
    assert "Traceback" not in log.read_text()


def test_janus_worker_refuses_a_bad_target_and_a_key_janus_does_not_know(
    worker_service: Service, tmp_path: Path
) -> None:
    env = {**os.environ, "JANUS_URL": worker_service.url, "JANUS_API_KEY": "jk_not_a_key"}
    bad_target = subprocess.run(
        [str(JANUS_WORKER), "tests.support.worker_handlers:nothing_here"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad_target.returncode == 2
    assert "has no function nothing_here" in bad_target.stderr
    refused = subprocess.run(
        [str(JANUS_WORKER), "tests.support.worker_handlers:mixed"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert "janus-worker: " in refused.stderr
