"""Bursts of concurrent HTTP requests against a real server, and what the tests read back.

`burst` sends every `Call` at once from CLIENT_THREADS threads, each with its own session,
and returns a `Reply` per call; the readers check the replies against the jobs stored and the
buckets left. Shared by the concurrency tests and the tenant shares' done-when.
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
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.factories import tenant_bucket_rows

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
class Reply:
    """What the service said to one `Call`."""

    call: Call
    status: int
    headers: Mapping[str, str]
    body: Any


def single(
    n: int,
    dependencies: dict[str, int],
    label: Any = None,
    *,
    priority: int | None = None,
    tenant: str | None = None,
    tenants: int = 7,
) -> Call:
    """A single-job request, alternating between the two families of routes.

    Its tenant is `tenant`, or one of `tenants` in turn.
    """
    body = {
        "batch_name": f"single-{n}",
        "tenant_id": f"tenant-{n % tenants}" if tenant is None else tenant,
        "priority": 1 + n % 10 if priority is None else priority,
        "dependencies": dependencies,
        "payload": {"n": n},
    }
    return Call(f"/{SOURCES[n % 2]}/jobs", body, label)


def batch(
    n: int,
    jobs: Sequence[dict[str, int]],
    *,
    atomic: bool,
    label: Any = None,
    tenants: int | None = None,
) -> Call:
    """A batch request whose job k needs `jobs[k]`; its batch_name identifies it in the table.

    Each job has a tenant of its own, or (with `tenants`) one of that many in turn.
    """
    body = {
        "batch_name": f"batch-{n}",
        "jobs": [
            {
                "tenant_id": f"tenant-{n}-{k}"
                if tenants is None
                else f"tenant-{(n + k) % tenants}",
                "priority": 1 + (n + k) % 10,
                "dependencies": dependencies,
                "payload": {"batch": n, "job": k},
            }
            for k, dependencies in enumerate(jobs)
        ],
    }
    route = "batch/atomic" if atomic else "batch"
    return Call(f"/{SOURCES[n % 2]}/jobs/{route}", body, label)


def burst(base_url: str, user_id: UUID, calls: Sequence[Call]) -> list[Reply]:
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
        current: requests.Session = local.session
        return current

    def wait_for_everyone() -> None:
        session()
        start.wait(timeout=BURST_TIMEOUT_S)

    def send(call: Call) -> Reply:
        response = session().post(base_url + call.path, json=call.body, timeout=BURST_TIMEOUT_S)
        return Reply(call, response.status_code, response.headers, response.json())

    try:
        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            for ready in [pool.submit(wait_for_everyone) for _ in range(CLIENT_THREADS)]:
                ready.result(timeout=BURST_TIMEOUT_S)
            futures = [pool.submit(send, call) for call in calls]
            return [future.result(timeout=BURST_TIMEOUT_S) for future in futures]
    finally:
        for open_session in sessions:
            open_session.close()


def statuses(answers: Iterable[Reply]) -> Counter[int]:
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


def accepted_cost_by_tenant(db: psycopg.Connection, user_id: UUID) -> dict[tuple[str, str], int]:
    """The costs of the user's stored Accepted jobs, summed by (dependency, tenant_id)."""
    rows = db.execute(
        """
        SELECT e.key, j.tenant_id, sum(e.value::bigint)
          FROM jobs j
         CROSS JOIN LATERAL jsonb_each_text(j.dependencies) AS e
         WHERE j.user_id = %s AND j.status = 'Accepted'
         GROUP BY 1, 2
        """,
        [user_id],
    ).fetchall()
    return {(row[0], row[1]): int(row[2]) for row in rows}


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


def conflict_retries(base_url: str) -> float:
    """How many transactions the service has run again after a serialization failure or a
    deadlock (janus_conflict_retries_total, summed over its workers and both conflicts)."""
    answer = requests.get(f"{base_url}/metrics", timeout=BURST_TIMEOUT_S)
    assert answer.status_code == 200, answer.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "janus_conflict_retries_total"
    )


def assert_no_server_error(answers: Iterable[Reply], server: Any) -> None:
    """No request ended in a 500 (or any 5xx but a 503), and gunicorn logged no traceback."""
    failures = [(a.status, a.body) for a in answers if a.status >= 500 and a.status != 503]
    assert failures == []
    server_log = server.log()
    assert "Traceback" not in server_log, server_log
    assert "unhandled error" not in server_log, server_log


def tenant_left_at_end(
    db: psycopg.Connection, user_id: UUID, capacities: Mapping[str, int], share: float
) -> Callable[[str], dict[str, float] | None]:
    """For a tenant: what its buckets hold at the end of a burst; None without shares."""
    rows = tenant_bucket_rows(db, user_id)

    def left(tenant: str) -> dict[str, float] | None:
        if share == 1:
            return None
        return {name: rows.get((name, tenant), share * c) for name, c in capacities.items()}

    return left


def assert_tenant_shares_kept(
    db: psycopg.Connection, user_id: UUID, capacities: Mapping[str, int], share: float
) -> dict[tuple[str, str], int]:
    """No tenant took more than its share, and its buckets show exactly what it took.

    Refill 0. Returns the accepted cost by (dependency, tenant). Without shares there is no
    tenant bucket at all; with them, a tenant bucket has a row once a job took from it.
    """
    taken = accepted_cost_by_tenant(db, user_id)
    rows = tenant_bucket_rows(db, user_id)
    if share == 1:
        assert rows == {}
        return taken
    assert set(rows) == set(taken), (rows, taken)
    for (name, tenant), cost in taken.items():
        assert cost <= share * capacities[name], (name, tenant, cost)
        assert rows[name, tenant] == share * capacities[name] - cost, (name, tenant, rows)
    return taken
