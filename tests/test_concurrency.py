"""Admission under real concurrency: several gunicorn workers, many HTTP clients at once.

Every test drives the service exactly as production runs it (the Procfile's gunicorn, 4 sync
workers, each with its own pool) from a thread pool in which every thread has its own HTTP
session, then checks the invariants against the database through a separate connection:
no bucket gives out more than it holds, every answer matches what was stored, atomic batches
are all-or-nothing, and bucket locks taken by overlapping requests never deadlock.
Refill is 0 wherever a count is asserted exactly, so the outcome does not depend on timing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests

from tests.support.factories import bucket_tokens, user_with_config

pytestmark = pytest.mark.concurrency

WORKERS = 4
CLIENT_THREADS = 24
# A whole burst must finish well inside this; a deadlock or a stuck worker fails the test.
BURST_TIMEOUT_S = 30
SOURCES = ("dashboard", "system")


@dataclass(frozen=True)
class Call:
    """One request of a burst: route, body, and a label the test uses to find it again."""

    path: str
    body: dict[str, Any]
    label: Any = None


@dataclass(frozen=True)
class Answer:
    """What the service said to one `Call`."""

    call: Call
    status: int
    headers: Mapping[str, str]
    body: Any


def rate_limited(dependency: str) -> str:
    """The contract's reason for a job turned away for tokens."""
    return f"dependency '{dependency}' rate limit exceeded"


def single(
    n: int, dependencies: dict[str, int], label: Any = None, *, priority: int | None = None
) -> Call:
    """A single-job request, alternating between the two families of routes."""
    body = {
        "batch_name": f"single-{n}",
        "tenant_id": f"tenant-{n % 7}",
        "priority": 1 + n % 10 if priority is None else priority,
        "dependencies": dependencies,
        "payload": {"n": n},
    }
    return Call(f"/{SOURCES[n % 2]}/jobs", body, label)


def batch(n: int, jobs: Sequence[dict[str, int]], *, atomic: bool, label: Any = None) -> Call:
    """A batch request whose job k needs `jobs[k]`; its batch_name identifies it in the table."""
    body = {
        "batch_name": f"batch-{n}",
        "jobs": [
            {
                "tenant_id": f"tenant-{n}-{k}",
                "priority": 1 + (n + k) % 10,
                "dependencies": dependencies,
                "payload": {"batch": n, "job": k},
            }
            for k, dependencies in enumerate(jobs)
        ],
    }
    route = "batch/atomic" if atomic else "batch"
    return Call(f"/{SOURCES[n % 2]}/jobs/{route}", body, label)


def burst(base_url: str, user_id: UUID, calls: Sequence[Call]) -> list[Answer]:
    """Send every call at once from CLIENT_THREADS threads, each with its own session."""
    local = threading.local()
    sessions: list[requests.Session] = []
    sessions_lock = threading.Lock()
    # Start every thread and its session first, so thread start-up does not pace the burst.
    start = threading.Barrier(CLIENT_THREADS)

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["X-User-ID"] = str(user_id)
            with sessions_lock:
                sessions.append(local.session)
        return local.session

    def wait_for_everyone() -> None:
        session()
        start.wait(timeout=BURST_TIMEOUT_S)

    def send(call: Call) -> Answer:
        response = session().post(base_url + call.path, json=call.body, timeout=BURST_TIMEOUT_S)
        return Answer(call, response.status_code, response.headers, response.json())

    try:
        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            for ready in [pool.submit(wait_for_everyone) for _ in range(CLIENT_THREADS)]:
                ready.result(timeout=BURST_TIMEOUT_S)
            futures = [pool.submit(send, call) for call in calls]
            return [future.result(timeout=BURST_TIMEOUT_S) for future in futures]
    finally:
        for open_session in sessions:
            open_session.close()


def statuses(answers: Iterable[Answer]) -> Counter[int]:
    """How many answers had each status code."""
    return Counter(answer.status for answer in answers)


def stored_jobs(db: psycopg.Connection, user_id: UUID) -> dict[str, tuple[str, str, Any, str]]:
    """Every stored job of the user: job_id -> (status, reason, dependencies, batch_name)."""
    rows = db.execute(
        "SELECT job_id, status, reason, dependencies, batch_name FROM jobs WHERE user_id = %s",
        [user_id],
    ).fetchall()
    return {str(row[0]): (row[1], row[2], row[3], row[4]) for row in rows}


def accepted_cost(db: psycopg.Connection, user_id: UUID, dependency: str) -> int:
    """The sum of `dependency` costs over the user's stored Accepted jobs."""
    row = db.execute(
        """
        SELECT coalesce(sum((dependencies ->> %(dependency)s)::bigint), 0)
          FROM jobs
         WHERE user_id = %(user_id)s AND status = 'Accepted' AND dependencies ? %(dependency)s
        """,
        {"user_id": user_id, "dependency": dependency},
    ).fetchone()
    assert row is not None
    return int(row[0])


def database_now(db: psycopg.Connection) -> float:
    """The database clock, the one admission refills buckets by, in epoch seconds."""
    row = db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
    assert row is not None
    return float(row[0])


def deadlocks_detected(db: psycopg.Connection) -> int:
    """How many deadlocks Postgres has detected in the test database, the service's included.

    The service retries a deadlock (40P01) like a serialization failure, so a client never
    sees one; only the server's counters do. A session reports its counters when it ends, so
    the service's sessions are ended first (its pools replace them on their next use).
    """
    db.execute(
        """
        SELECT pg_terminate_backend(pid)
          FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'janus'
        """
    )
    deadline = time.monotonic() + BURST_TIMEOUT_S
    while db.execute(
        """
        SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'janus'
        """
    ).fetchone() != (0,):
        assert time.monotonic() < deadline, "the service's sessions did not end"
        time.sleep(0.05)
    row = db.execute(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def assert_rejected_for_tokens(
    reason: str, needs: Mapping[str, int], left_at_end: Mapping[str, float]
) -> None:
    """The reason names one of the job's buckets, and that bucket really was short.

    Tokens only go down when refill is 0, so the bucket the reason names still holds less
    than the job's cost at the end of the burst.
    """
    short = [name for name in needs if reason == rate_limited(name)]
    assert len(short) == 1, (reason, needs)
    assert needs[short[0]] > left_at_end[short[0]], (reason, needs, left_at_end)


def assert_no_server_error(answers: Iterable[Answer], server: Any) -> None:
    """No request ended in a 500 (or any 5xx but a 503), and gunicorn logged no traceback."""
    failures = [(a.status, a.body) for a in answers if a.status >= 500 and a.status != 503]
    assert failures == []
    server_log = server.log()
    assert "Traceback" not in server_log, server_log
    assert "unhandled error" not in server_log, server_log


@pytest.fixture
def server(start_gunicorn: Callable[..., Any]) -> Any:
    """The real service, as the Procfile starts it, with WORKERS workers."""
    return start_gunicorn(workers=WORKERS)


def make_user(
    db: psycopg.Connection, capacities: dict[str, int], *, refill: int = 0, reserve: float = 0
) -> UUID:
    """A user with one bucket per entry of `capacities`, all with this refill and reserve."""
    buckets = {name: {"capacity": c, "refill_per_second": refill} for name, c in capacities.items()}
    return user_with_config(db, buckets, priority_reserve=reserve)


def test_one_bucket_admits_exactly_its_capacity(db: psycopg.Connection, server: Any) -> None:
    """4N simultaneous single jobs of cost 1 on a bucket of N: exactly N admitted."""
    capacity = 50
    user_id = make_user(db, {"openai": capacity})

    calls = [single(n, {"openai": 1}) for n in range(4 * capacity)]

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    assert statuses(answers) == {202: capacity, 429: 3 * capacity}
    accepted = {a.body["job_id"] for a in answers if a.status == 202}
    rejected = {a.body["job_id"] for a in answers if a.status == 429}
    assert {(a.body["status"], a.body["reason"]) for a in answers if a.status == 202} == {
        ("Accepted", "")
    }
    assert {(a.body["status"], a.body["reason"]) for a in answers if a.status == 429} == {
        ("Rejected", rate_limited("openai"))
    }
    # Refill 0: waiting cannot help, so no rejection may suggest it.
    assert [a.headers.get("Retry-After") for a in answers if a.status == 429] == [None] * (
        3 * capacity
    )
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == accepted
    assert {job_id for job_id, job in stored.items() if job[0] == "Rejected"} == rejected
    assert len(stored) == 4 * capacity
    assert bucket_tokens(db, user_id, "openai") == 0


def test_refilling_bucket_never_admits_more_than_capacity_plus_refill(
    db: psycopg.Connection, server: Any
) -> None:
    """With refill, a burst takes at most capacity + refill x elapsed, and at least capacity."""
    capacity, refill = 20, 20
    user_id = make_user(db, {"openai": capacity}, refill=refill)
    calls = [single(n, {"openai": 1}) for n in range(300)]

    # The bucket is full before the burst (it was activated full and cannot overfill), so
    # everything it can give beyond its capacity comes from refill during the burst.
    started = database_now(db)
    answers = burst(server.url, user_id, calls)
    elapsed = database_now(db) - started

    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {202, 429}, counts
    admitted = counts[202]
    assert capacity <= admitted <= capacity + refill * elapsed, (admitted, elapsed)
    for answer in answers:
        if answer.status == 429:
            assert answer.body["reason"] == rate_limited("openai")
            assert int(answer.headers.get("Retry-After", 0)) >= 1, answer
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == {
        a.body["job_id"] for a in answers if a.status == 202
    }
    assert accepted_cost(db, user_id, "openai") == admitted


def test_overlapping_multi_dependency_jobs_neither_deadlock_nor_overspend(
    db: psycopg.Connection, server: Any
) -> None:
    """Jobs on {a, b}, {b, c}, {c, a}, ... named in every order: all decided, buckets exact."""
    capacities = {"a": 60, "b": 45, "c": 70, "d": 30}
    user_id = make_user(db, capacities)
    # Each job names its dependencies in a different order in the JSON body; the service must
    # still lock the buckets in one order. Demand is several times every capacity.
    shapes = [
        ("a", "b"),
        ("b", "c", "d"),
        ("c", "a"),
        ("d", "b", "a"),
        ("c", "b"),
        ("a", "d", "c"),
        ("d", "c", "b", "a"),
        ("b", "a"),
        ("a", "b", "c", "d"),
        ("d", "a"),
    ]
    calls = []
    for n in range(400):
        shape = shapes[n % len(shapes)]
        dependencies = {name: 1 + (n + i) % 3 for i, name in enumerate(shape)}
        calls.append(single(n, dependencies, label=dependencies))

    answers = burst(server.url, user_id, calls)

    assert deadlocks_detected(db) == 0
    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) == {202, 429}, counts
    stored = stored_jobs(db, user_id)
    assert len(stored) == len(calls)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == {
        a.body["job_id"] for a in answers if a.status == 202
    }
    left_at_end = {name: bucket_tokens(db, user_id, name) for name in capacities}
    for name, capacity in capacities.items():
        spent = accepted_cost(db, user_id, name)
        assert spent == capacity - left_at_end[name], (name, spent, left_at_end)
        assert 0 <= left_at_end[name] < capacity
    for answer in answers:
        if answer.status == 429:
            assert_rejected_for_tokens(answer.body["reason"], answer.call.label, left_at_end)


def test_concurrent_atomic_batches_are_all_or_nothing(db: psycopg.Connection, server: Any) -> None:
    """20 atomic batches of 5 jobs at once on a bucket of 30: each batch whole or not at all."""
    capacity = 30
    user_id = make_user(db, {"pool": capacity})
    # Batch n costs 5 to 10: job k costs 2 when bit k of n is set.
    costs = {n: [1 + (n >> k & 1) for k in range(5)] for n in range(20)}
    calls = [
        batch(n, [{"pool": cost} for cost in costs[n]], atomic=True, label=n) for n in range(20)
    ]

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {202, 207, 503}, counts
    whole = {a.call.label for a in answers if a.status == 202}
    for answer in answers:
        if answer.status == 202:
            assert [(r["status"], r["reason"]) for r in answer.body] == [("Accepted", "")] * 5
        elif answer.status == 207:
            reasons = [r["reason"] for r in answer.body]
            assert {r["status"] for r in answer.body} == {"Rejected"}
            assert set(reasons) <= {rate_limited("pool"), "batch rejected atomically"}
            assert rate_limited("pool") in reasons, reasons

    debit = capacity - bucket_tokens(db, user_id, "pool")
    assert debit == sum(sum(costs[n]) for n in whole)
    assert 0 < debit <= capacity
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items()} == {
        r["job_id"] for a in answers if a.status == 202 for r in a.body
    }
    assert {job[0] for job in stored.values()} <= {"Accepted"}
    assert Counter(job[3] for job in stored.values()) == {f"batch-{n}": 5 for n in whole}
    # A batch was only turned away when it did not fit in what the bucket kept to the end.
    for answer in answers:
        if answer.status == 207:
            assert sum(costs[answer.call.label]) > capacity - debit, answer.call.label
    # A 503 would be allowed (with Retry-After, taking nothing: checked above), but cannot
    # happen here: only a committed debit makes a waiting SERIALIZABLE batch fail, each such
    # commit fails it at most once, and a bucket of 30 fits at most 5 of these batches, which
    # is no more than the 5 retries a batch gets.
    for answer in answers:
        if answer.status == 503:
            assert int(answer.headers.get("Retry-After", 0)) >= 1, answer
    assert counts[503] == 0, counts


def test_partial_batches_and_single_jobs_mixed_lose_nothing(
    db: psycopg.Connection, server: Any
) -> None:
    """Partial batches and single jobs at once on shared buckets: every token accounted for."""
    capacities = {"x": 120, "y": 80}
    user_id = make_user(db, capacities)
    job_shapes = [
        {"x": 1},
        {"y": 2},
        {"y": 1, "x": 2},
        {"x": 3, "y": 1},
        {"x": 1, "y": 1},
    ]
    calls = []
    for n in range(160):
        if n % 4 == 0:
            jobs = [job_shapes[(n + k) % len(job_shapes)] for k in range(5)]
            calls.append(batch(n, jobs, atomic=False, label=jobs))
        else:
            shape = job_shapes[n % len(job_shapes)]
            calls.append(single(n, shape, label=[shape]))

    answers = burst(server.url, user_id, calls)

    assert deadlocks_detected(db) == 0
    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {200, 202, 429}, counts
    assert counts[200] == 40
    decisions: list[tuple[dict[str, Any], dict[str, int]]] = []
    for answer in answers:
        if answer.status == 200:
            results = answer.body["results"]
            assert len(results) == answer.body["total"] == 5
            accepted = sum(r["status"] == "Accepted" for r in results)
            summary = (answer.body["accepted"], answer.body["rejected"])
            assert summary == (accepted, 5 - accepted)
            decisions.extend(zip(results, answer.call.label, strict=True))
        else:
            assert answer.body["status"] == ("Accepted" if answer.status == 202 else "Rejected")
            decisions.append((answer.body, answer.call.label[0]))
    assert len(decisions) == 40 * 5 + 120

    stored = stored_jobs(db, user_id)
    assert len(stored) == len(decisions)
    for decision, needs in decisions:
        status, reason, dependencies, _ = stored[decision["job_id"]]
        assert (status, reason, dependencies) == (decision["status"], decision["reason"], needs)
    left_at_end = {name: bucket_tokens(db, user_id, name) for name in capacities}
    for name, capacity in capacities.items():
        spent = accepted_cost(db, user_id, name)
        assert spent == capacity - left_at_end[name], (name, spent, left_at_end)
        assert spent == sum(
            needs.get(name, 0) for decision, needs in decisions if decision["status"] == "Accepted"
        )
    for decision, needs in decisions:
        if decision["status"] == "Rejected":
            assert_rejected_for_tokens(decision["reason"], needs, left_at_end)


def test_atomic_partial_and_single_requests_mixed_keep_every_bucket_exact(
    db: psycopg.Connection, server: Any
) -> None:
    """All three kinds of request at once on shared buckets: decisions, rows and tokens agree.

    Here READ COMMITTED writers keep debiting the buckets an atomic batch waits on, so its
    SERIALIZABLE transaction does conflict and is retried; a 503 after the retries is allowed
    (with Retry-After, taking nothing) but must stay rare.
    """
    capacities = {"p": 150, "q": 100}
    user_id = make_user(db, capacities)
    job_shapes = [{"p": 1, "q": 1}, {"q": 1}, {"p": 2}, {"q": 2, "p": 1}]
    calls = []
    for n in range(180):
        jobs = [job_shapes[(n + k) % len(job_shapes)] for k in range(3)]
        if n % 3 == 0:
            calls.append(batch(n, jobs, atomic=True, label=("atomic", jobs)))
        elif n % 3 == 1:
            calls.append(batch(n, jobs, atomic=False, label=("partial", jobs)))
        else:
            calls.append(single(n, jobs[0], label=("single", jobs[:1])))

    answers = burst(server.url, user_id, calls)

    assert deadlocks_detected(db) == 0
    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {200, 202, 207, 429, 503}, counts
    accepted: dict[str, dict[str, int]] = {}
    rejected: dict[str, dict[str, int]] = {}
    reasons: dict[str, str] = {}
    for answer in answers:
        kind, jobs = answer.call.label
        if answer.status == 503:
            assert kind == "atomic", answer
            assert int(answer.headers.get("Retry-After", 0)) >= 1, answer
            continue
        if kind == "single":
            results = [answer.body]
        elif kind == "partial":
            assert answer.status == 200, answer
            results = answer.body["results"]
        else:
            assert answer.status in (202, 207), answer
            results = answer.body
            expected = "Accepted" if answer.status == 202 else "Rejected"
            assert {r["status"] for r in results} == {expected}, answer
        for result, needs in zip(results, jobs, strict=True):
            if result["status"] == "Accepted":
                accepted[result["job_id"]] = needs
            elif kind != "atomic":
                rejected[result["job_id"]] = needs
                reasons[result["job_id"]] = result["reason"]

    stored = stored_jobs(db, user_id)
    assert {job_id: job[2] for job_id, job in stored.items() if job[0] == "Accepted"} == accepted
    assert {job_id: job[2] for job_id, job in stored.items() if job[0] == "Rejected"} == rejected
    turned_away = {
        a.call.body["batch_name"]
        for a in answers
        if a.call.label[0] == "atomic" and a.status != 202
    }
    assert turned_away.isdisjoint(job[3] for job in stored.values())
    left_at_end = {name: bucket_tokens(db, user_id, name) for name in capacities}
    for name, capacity in capacities.items():
        spent = sum(needs.get(name, 0) for needs in accepted.values())
        assert accepted_cost(db, user_id, name) == spent
        assert left_at_end[name] == capacity - spent, (name, spent, left_at_end)
    for job_id, needs in rejected.items():
        assert_rejected_for_tokens(reasons[job_id], needs, left_at_end)
    # 60 atomic batches; a handful of 503s at most (0 or 1 in practice).
    assert counts[503] <= 6, counts


def test_priority_reserve_holds_under_concurrency(db: psycopg.Connection, server: Any) -> None:
    """Priority 1 stops at the reserve, priority 10 empties the bucket, even all at once."""
    capacity = 40
    user_id = make_user(db, {"openai": capacity}, reserve=0.5)
    priorities = [10 if n % 2 else 1 for n in range(200)]
    calls = [single(n, {"openai": 1}, label=p, priority=p) for n, p in enumerate(priorities)]

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert counts == {202: capacity, 429: 200 - capacity}, counts
    admitted = Counter(a.call.label for a in answers if a.status == 202)
    # Priority 1 must leave C x 0.5 x 9 / 9 = 20 tokens behind after taking one.
    assert admitted[1] <= capacity // 2, admitted
    assert bucket_tokens(db, user_id, "openai") == 0
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == {
        a.body["job_id"] for a in answers if a.status == 202
    }
