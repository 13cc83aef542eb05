"""GET /metrics: one total over every gunicorn worker, kept when a worker dies; and what the
metrics count: decisions, latencies by route, 503s by cause, the pool, the queue (its gauges
in-process: tests/test_queue_metrics.py).

The multiprocess tests run real gunicorn, as only it has several worker processes; the
label mappings and the service token are checked in-process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import falcon.testing
import psycopg
import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from janus import metrics
from janus.admission import DatabaseUnavailable
from janus.db import transactions
from janus.db.errors import unavailable_cause
from janus.reasons import ReasonCode
from tests.conftest import GunicornServer, StartGunicorn
from tests.support.app import SERVICE_TOKEN
from tests.support.factories import user_with_config

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: GunicornServer, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    answer = requests.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == metrics.CONTENT_TYPE
    return parse(answer.text)


def parse(text: str) -> Samples:
    """The samples of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def decision(source: str, mode: str, outcome: str, reason: str) -> dict[str, str]:
    """The labels of janus_decisions_total."""
    return {"source": source, "mode": mode, "outcome": outcome, "reason": reason}


@pytest.fixture
def small_user(db: psycopg.Connection) -> UUID:
    """openai: 5 tokens that never refill; jobs below priority 3 refused; unknown names refused."""
    return user_with_config(db, {"openai": {"capacity": 5, "refill_per_second": 0}}, min_priority=3)


def post(server: GunicornServer, path: str, user_id: UUID, body: Any) -> requests.Response:
    """POST `body` as JSON on a connection of its own, so any worker may take it."""
    return requests.post(
        f"{server.url}{path}",
        json=body,
        headers={"X-User-ID": str(user_id), "Connection": "close"},
        timeout=10,
    )


def job(priority: int = 5, **dependencies: int) -> dict[str, object]:
    """One job of the tenant `t`."""
    return {"tenant_id": "t", "priority": priority, "dependencies": dependencies}


# --- Across gunicorn workers -----------------------------------------------------------------


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    """A PROMETHEUS_MULTIPROC_DIR of the test's own, so it can see which workers wrote."""
    return tmp_path / "metrics"


@pytest.fixture
def three_workers(start_gunicorn: StartGunicorn, metrics_dir: Path) -> GunicornServer:
    """The service with 3 workers, its metrics files in `metrics_dir`."""
    return start_gunicorn(workers=3, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})


def test_decision_counters_move_by_exactly_the_decisions_made_summed_over_workers(
    three_workers: GunicornServer, small_user: UUID, open_user: UUID, metrics_dir: Path
) -> None:
    before = scrape(three_workers)
    # 60 single jobs accepted from 6 clients at once: every worker takes some.
    with ThreadPoolExecutor(6) as clients:
        answers = list(
            clients.map(
                lambda _: post(
                    three_workers, "/system/jobs", open_user, {"batch_name": "b", **job()}
                ),
                range(60),
            )
        )
    assert [answer.status_code for answer in answers] == [202] * 60
    # small_user: a partial batch of 4 (2 accepted, 1 over the budget, 1 priority too low),
    # an atomic batch refused whole, a single job naming an unknown dependency.
    partial = post(
        three_workers,
        "/dashboard/jobs/batch",
        small_user,
        {
            "batch_name": "b",
            "jobs": [job(openai=2), job(openai=2), job(openai=2), job(priority=1)],
        },
    )
    assert partial.json()["accepted"] == 2
    atomic = post(
        three_workers,
        "/dashboard/jobs/batch/atomic",
        small_user,
        {"batch_name": "b", "jobs": [job(openai=1), job(openai=5)]},
    )
    assert atomic.status_code == 207
    unknown = post(
        three_workers, "/dashboard/jobs", small_user, {"batch_name": "b", **job(stripe=1)}
    )
    assert unknown.status_code == 429

    after = scrape(three_workers)

    def moved(**labels: str) -> float:
        name = "janus_decisions_total"
        return value(after, name, **labels) - value(before, name, **labels)

    expected = {
        ("system", "single", "accepted", "none"): 60,
        ("dashboard", "partial", "accepted", "none"): 2,
        ("dashboard", "partial", "rejected", "rate_limit"): 1,
        ("dashboard", "partial", "rejected", "min_priority"): 1,
        ("dashboard", "atomic", "rejected", "over_capacity"): 0,
        ("dashboard", "atomic", "rejected", "rate_limit"): 1,
        ("dashboard", "atomic", "rejected", "atomic_batch"): 1,
        ("dashboard", "single", "rejected", "unknown_dependency"): 1,
    }
    for labels, count in expected.items():
        assert moved(**decision(*labels)) == count, labels
    every_series = {labels for name, labels in after if name == "janus_decisions_total"}
    assert sum(moved(**dict(labels)) for labels in every_series) == sum(expected.values())
    # The 60 were written by more than one worker, and the scrape added them up.
    writers = {path.stem.rpartition("_")[2] for path in metrics_dir.glob("counter_*.db")}
    assert len(writers) >= 2, writers


# gunicorn logs the SIGKILL as an error ("Perhaps out of memory?").
@pytest.mark.logs_errors
def test_totals_do_not_go_backwards_when_a_worker_is_killed(
    three_workers: GunicornServer, open_user: UUID
) -> None:
    for _ in range(30):
        assert post(three_workers, "/system/jobs", open_user, {"batch_name": "b", **job()}).ok
    before = scrape(three_workers)
    victim = three_workers.worker_pids()[0]

    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        pids = three_workers.worker_pids()
        if len(pids) == 3 and victim not in pids:
            break
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.05)
    # Every worker scrapes alike: ask several times, over new connections.
    for _ in range(6):
        after = scrape(three_workers)
        counters = [key for key in before if key[0].endswith(("_total", "_count", "_bucket"))]
        went_back = [key for key in counters if after.get(key, 0.0) < before[key]]
        assert went_back == []
        accepted = decision("system", "single", "accepted", "none")
        assert value(after, "janus_decisions_total", **accepted) == 30
        # Only live workers' pools count: never more than 3 pools of JANUS_POOL_SIZE (2).
        assert value(after, "janus_pool_connections") <= 3 * 2


def test_latency_and_responses_are_counted_by_route_template(
    three_workers: GunicornServer, open_user: UUID
) -> None:
    before = scrape(three_workers)
    for _ in range(5):
        assert post(three_workers, "/system/jobs", open_user, {"batch_name": "b", **job()}).ok
    job_id = post(three_workers, "/system/jobs", open_user, {"batch_name": "b", **job()}).json()[
        "job_id"
    ]
    heartbeat = post(
        three_workers,
        f"/system/jobs/{job_id}/heartbeat",
        open_user,
        {"lease_token": "0f7d6b0e-5a44-4a43-a0c6-3f3e2f0f9a51"},
    )
    assert heartbeat.status_code == 409
    assert requests.get(f"{three_workers.url}/no/such/{open_user}", timeout=5).status_code == 404
    after = scrape(three_workers)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    single = {"route": "/system/jobs", "method": "POST"}
    assert moved("janus_request_duration_seconds_count", **single) == 6
    assert moved("janus_request_duration_seconds_sum", **single) > 0
    assert moved("janus_request_duration_seconds_bucket", **single, le="+Inf") == 6
    assert moved("janus_responses_total", **single, status="202") == 6
    # The template, never the job's id; and a path that matches no route, never its text.
    heartbeats = {"route": "/system/jobs/{job_id:uuid}/heartbeat", "method": "POST"}
    assert moved("janus_responses_total", **heartbeats, status="409") == 1
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert moved("janus_responses_total", **unmatched) == 1
    assert not [key for key in after if str(open_user) in str(key) or job_id in str(key)]
    # Waiting for a connection is observed once per use of the pool.
    assert moved("janus_pool_wait_seconds_count") >= 7


def test_hand_outs_and_cancellations_are_counted_and_the_queue_read_once(
    three_workers: GunicornServer, open_user: UUID
) -> None:
    before = scrape(three_workers)
    jobs = [
        post(three_workers, "/system/jobs", open_user, {"batch_name": "b", **job()}).json()[
            "job_id"
        ]
        for _ in range(3)
    ]
    claimed = post(three_workers, "/system/jobs/claim", open_user, {"limit": 2}).json()["jobs"]
    assert len(claimed) == 2
    [left] = set(jobs) - {one["job_id"] for one in claimed}
    assert post(three_workers, f"/dashboard/jobs/{left}/cancel", open_user, None).ok
    # Cancelled already, and running: no more cancellations.
    assert post(three_workers, f"/dashboard/jobs/{left}/cancel", open_user, None).ok
    running = claimed[0]["job_id"]
    assert (
        post(three_workers, f"/dashboard/jobs/{running}/cancel", open_user, None).status_code == 409
    )
    # An empty claim hands out nothing.
    assert post(three_workers, "/system/jobs/claim", open_user, {"limit": 5}).json()["jobs"] == []
    after = scrape(three_workers)

    assert (
        value(after, "janus_jobs_handed_out_total") - value(before, "janus_jobs_handed_out_total")
        == 2
    )
    assert (
        value(after, "janus_jobs_cancelled_total") - value(before, "janus_jobs_cancelled_total")
        == 1
    )
    # The queue gauges, read from the database by whichever worker serves the scrape: the 2
    # running jobs once, never once per worker; nothing is claimable.
    for _ in range(3):
        queue = scrape(three_workers, headers={"Connection": "close"})
        jobs = [value(queue, "janus_queue_jobs", state=state) for state in ("queued", "running")]
        assert jobs == [0, 2]
        assert queue[("janus_queue_oldest_claimable_seconds", ())] == 0


def test_503s_are_counted_by_cause_lock_timeout_and_pool_timeout(
    start_gunicorn: StartGunicorn, db: psycopg.Connection, open_user: UUID
) -> None:
    # One worker with one connection: a job waiting on a locked bucket holds it until
    # lock_timeout; a second job meanwhile finds the pool empty until its pool timeout.
    server = start_gunicorn(
        workers=1,
        env={
            "JANUS_POOL_SIZE": "1",
            "JANUS_POOL_TIMEOUT_MS": "200",
            "JANUS_LOCK_TIMEOUT_MS": "1500",
        },
    )
    assert post(server, "/system/jobs", open_user, {"batch_name": "b", **job(openai=1)}).ok
    before = scrape(server)
    answers: list[requests.Response] = []
    with db.transaction():
        db.execute("SELECT 1 FROM token_buckets WHERE user_id = %s FOR UPDATE", [open_user])
        waiting = threading.Thread(
            target=lambda: answers.append(
                post(server, "/system/jobs", open_user, {"batch_name": "b", **job(openai=1)})
            )
        )
        waiting.start()
        time.sleep(0.5)
        crowded = post(server, "/system/jobs", open_user, {"batch_name": "b", **job(openai=1)})
        waiting.join()
    assert crowded.status_code == 503
    assert [answer.status_code for answer in answers] == [503]
    after = scrape(server)

    def moved(cause: str) -> float:
        return value(after, "janus_unavailable_total", cause=cause) - value(
            before, "janus_unavailable_total", cause=cause
        )

    assert moved("pool_timeout") == 1
    assert moved("lock_timeout") == 1
    assert moved("connection") == moved("statement_timeout") == moved("conflict") == 0


# --- In-process: the service token, the closed sets ------------------------------------------


def test_metrics_need_the_service_token_when_there_is_one_and_no_user(
    token_client: falcon.testing.TestClient,
) -> None:
    refused = token_client.simulate_get("/metrics")
    answer = token_client.simulate_get(
        "/metrics", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}
    )

    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == metrics.CONTENT_TYPE
    samples = parse(answer.text)
    # Every cause is there from the start, at 0 or more.
    for cause in ("pool_timeout", "connection", "statement_timeout", "lock_timeout", "conflict"):
        assert ("janus_unavailable_total", (("cause", cause),)) in samples


def test_a_decisions_reason_label_is_its_code_never_its_words() -> None:
    """The label is the code admit_jobs() gives beside the words (tests/test_reason_codes.py
    holds the SQL to it), so rewording a reason moves no series."""
    assert metrics.reason_label("Accepted", None) == "none"
    for code in ReasonCode:
        assert metrics.reason_label("Rejected", code) == code.value
    # A rejection remembered before codes were (an old idempotency key's replay).
    assert metrics.reason_label("Rejected", None) == "other"
    assert metrics.REASON_LABELS == (
        "none",
        "min_priority",
        "unknown_dependency",
        "over_capacity",
        "rate_limit",
        "tenant_share",
        "atomic_batch",
        "other",
    )


def test_label_values_come_from_closed_sets() -> None:
    assert metrics.route_label(None) == "unmatched"
    assert metrics.route_label("/system/jobs/{job_id:uuid}/fail") == (
        "/system/jobs/{job_id:uuid}/fail"
    )
    assert metrics.method_label("POST") == "POST"
    assert metrics.method_label("BREW") == "other"


def test_the_openapi_media_type_of_metrics_is_what_is_served() -> None:
    from janus.openapi.operations import METRICS_MEDIA_TYPE

    assert METRICS_MEDIA_TYPE == metrics.CONTENT_TYPE


def test_each_transient_driver_error_is_its_own_cause() -> None:
    assert unavailable_cause(PoolTimeout("no connection")) == "pool_timeout"
    assert unavailable_cause(psycopg.errors.QueryCanceled("statement")) == "statement_timeout"
    assert unavailable_cause(psycopg.errors.LockNotAvailable("lock")) == "lock_timeout"
    assert unavailable_cause(psycopg.errors.AdminShutdown("shutdown")) == "connection"
    assert unavailable_cause(psycopg.OperationalError("refused")) == "connection"


def test_conflict_retries_are_counted_and_their_end_is_a_conflict_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conflicts = [psycopg.errors.SerializationFailure("s"), psycopg.errors.DeadlockDetected("d")]

    def conflicting(*args: object) -> list[object]:
        if conflicts:
            raise conflicts.pop(0)
        return []

    class Pool:
        def connection(self, timeout: float | None = None) -> contextlib.nullcontext[None]:
            return contextlib.nullcontext()

    # A stand-in for the pool: fetch_in_transaction only asks it for a connection.
    pool = cast("ConnectionPool[Any]", Pool())
    monkeypatch.setattr(transactions, "_alone", conflicting)
    retried = metrics.CONFLICT_RETRIES.labels
    before = (retried("serialization_failure")._value.get(), retried("deadlock")._value.get())

    rows = transactions.fetch_in_transaction(
        pool, "SELECT 1", {}, row_factory=tuple_row, retries=2, base_delay=0
    )

    assert rows == []
    assert retried("serialization_failure")._value.get() == before[0] + 1
    assert retried("deadlock")._value.get() == before[1] + 1
    conflicts.extend([psycopg.errors.SerializationFailure("s")] * 2)
    with pytest.raises(DatabaseUnavailable) as raised:
        transactions.fetch_in_transaction(
            pool, "SELECT 1", {}, row_factory=tuple_row, retries=1, base_delay=0
        )
    assert raised.value.cause == "conflict"


def test_a_worker_file_not_yet_sized_is_passed_over(tmp_path: Path) -> None:
    # A worker creates its file, then sizes it; one killed in between leaves it empty for good.
    (tmp_path / "counter_999.db").touch()
    values = MmapedDict(str(tmp_path / "counter_1000.db"))
    key = mmap_key("janus_decisions", "janus_decisions_total", ["source"], ["system"], "Jobs.")
    values.write_value(key, 3.0, 0.0)
    values.close()
    registry = CollectorRegistry()
    metrics.WorkerFilesCollector(registry, str(tmp_path))

    assert registry.get_sample_value("janus_decisions_total", {"source": "system"}) == 3.0
