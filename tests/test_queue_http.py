"""The queue over real HTTP and gunicorn: many workers drain it, and a killed worker loses
nothing.

Each worker thread has its own HTTP session, as separate worker processes would; the
invariants are checked against the answers and against the database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests

from tests.conftest import GunicornServer
from tests.support.factories import stored_job, user_with_config

pytestmark = pytest.mark.concurrency

JOBS = 5000
WORKERS = 8
CLAIM_LIMIT = 10
DRAIN_TIMEOUT_S = 120


@pytest.fixture
def producer(db: psycopg.Connection) -> UUID:
    """A user whose openai bucket admits every job of these tests and never refills."""
    return user_with_config(db, {"openai": {"capacity": 10**9, "refill_per_second": 0}})


def post(session: requests.Session, url: str, user: UUID, body: Any) -> requests.Response:
    """POST `body` as JSON as `user`."""
    return session.post(url, json=body, headers={"X-User-ID": str(user)}, timeout=30)


def submit_jobs(base: str, user: UUID, count: int) -> set[str]:
    """Submit `count` jobs through partial batches of 1,000; all must be accepted."""
    accepted: set[str] = set()
    with requests.Session() as session:
        for start in range(0, count, 1000):
            jobs = [
                {
                    "tenant_id": f"tenant-{n % 7}",
                    "priority": 1 + n % 10,
                    "dependencies": {"openai": 1},
                    "payload": {"n": n},
                }
                for n in range(start, min(count, start + 1000))
            ]
            answer = post(
                session, f"{base}/system/jobs/batch", user, {"batch_name": "drain", "jobs": jobs}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == len(jobs)
            accepted.update(result["job_id"] for result in answer.json()["results"])
    return accepted


def test_eight_workers_drain_five_thousand_jobs_each_completed_exactly_once(
    gunicorn_server: GunicornServer, db: psycopg.Connection, producer: UUID
) -> None:
    base = gunicorn_server.url
    submitted = submit_jobs(base, producer, JOBS)
    assert len(submitted) == JOBS
    lock = threading.Lock()
    claims: list[tuple[int, str]] = []  # (worker, job_id), every claim made
    completions: list[tuple[int, str]] = []
    held: dict[str, int] = {}  # job_id -> the worker holding it, until its completion

    def work(worker: int) -> None:
        with requests.Session() as session:
            while True:
                answer = post(
                    session,
                    f"{base}/system/jobs/claim",
                    producer,
                    {"limit": CLAIM_LIMIT, "lease_seconds": 300},
                )
                assert answer.status_code == 200, answer.text
                jobs = answer.json()["jobs"]
                if not jobs:
                    return
                with lock:
                    for job in jobs:
                        claims.append((worker, job["job_id"]))
                        assert job["job_id"] not in held, "a job held by two workers at once"
                        held[job["job_id"]] = worker
                # Half the workers acknowledge a claim's jobs in one request, half one by one.
                if worker % 2 == 0:
                    items = [
                        {"job_id": job["job_id"], "lease_token": job["lease_token"]} for job in jobs
                    ]
                    done = post(session, f"{base}/system/jobs/complete", producer, {"jobs": items})
                    assert done.status_code == 200, done.text
                    outcomes = [result["outcome"] for result in done.json()["results"]]
                    assert outcomes == ["completed"] * len(jobs)
                else:
                    for job in jobs:
                        url = f"{base}/system/jobs/{job['job_id']}/complete"
                        done = post(session, url, producer, {"lease_token": job["lease_token"]})
                        assert done.status_code == 200, done.text
                with lock:
                    completions.extend((worker, job["job_id"]) for job in jobs)
                    # Released only once its completion is acknowledged.
                    for job in jobs:
                        del held[job["job_id"]]

    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as threads:
        for future in [threads.submit(work, worker) for worker in range(WORKERS)]:
            future.result(timeout=DRAIN_TIMEOUT_S)
    assert time.monotonic() - started < DRAIN_TIMEOUT_S

    claimed = Counter(job_id for _, job_id in claims)
    completed = Counter(job_id for _, job_id in completions)
    assert set(claimed) == set(completed) == submitted
    assert set(claimed.values()) == set(completed.values()) == {1}
    # Every worker took part.
    assert len({worker for worker, _ in claims}) == WORKERS
    rows = db.execute(
        "SELECT state, attempts, count(*) FROM jobs WHERE user_id = %s GROUP BY 1, 2", [producer]
    ).fetchall()
    assert rows == [("completed", 1, JOBS)]
    with requests.Session() as session:
        last = post(session, f"{base}/system/jobs/claim", producer, {"limit": 100})
    assert last.json() == {"jobs": []}


# A worker that claims one job and then hangs, as one that died mid-job would: it prints the
# job it got and never calls again. Only the standard library, as a real worker might be.
HANGING_WORKER = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    base, user = sys.argv[1], sys.argv[2]
    request = urllib.request.Request(
        base + "/system/jobs/claim",
        data=json.dumps({"lease_seconds": 2}).encode(),
        headers={"Content-Type": "application/json", "X-User-ID": user},
    )
    with urllib.request.urlopen(request) as answer:
        print(json.dumps(json.load(answer)["jobs"][0]), flush=True)
    time.sleep(600)
    """
)


def test_a_worker_killed_mid_job_loses_nothing(
    gunicorn_server: GunicornServer, db: psycopg.Connection, producer: UUID
) -> None:
    base = gunicorn_server.url
    [job_id] = submit_jobs(base, producer, 1)
    worker = subprocess.Popen(
        [sys.executable, "-c", HANGING_WORKER, base, str(producer)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        first = json.loads(worker.stdout.readline())
    finally:
        worker.kill()
        worker.wait()
    assert (first["job_id"], first["attempt"]) == (job_id, 1)

    with requests.Session() as session:
        # While the lease holds, nobody else gets the job.
        assert post(session, f"{base}/system/jobs/claim", producer, {}).json() == {"jobs": []}
        deadline = time.monotonic() + 10
        while True:
            again = post(session, f"{base}/system/jobs/claim", producer, {}).json()["jobs"]
            if again or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        [second] = again
        assert (second["job_id"], second["attempt"]) == (job_id, 2)
        assert second["payload"] == first["payload"] == {"n": 0}

        # The dead worker's lease token is stale now: its late complete changes nothing.
        late = post(
            session,
            f"{base}/system/jobs/{job_id}/complete",
            producer,
            {"lease_token": first["lease_token"]},
        )
        assert late.status_code == 409, late.text
        assert stored_job(db, job_id, "state") == {"state": "running"}
        done = post(
            session,
            f"{base}/system/jobs/{job_id}/complete",
            producer,
            {"lease_token": second["lease_token"]},
        )
        assert done.status_code == 200, done.text
        assert done.json() == {"job_id": job_id, "state": "completed", "attempt": 2}
