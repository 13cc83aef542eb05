"""Prometheus metrics: what they are, the closed sets their labels take, and GET /metrics's text.

Under gunicorn every worker is a process of its own, so prometheus_client runs in its
multiprocess mode: each worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (set
by gunicorn.conf.py before any worker starts), and a scrape, whichever worker serves it,
adds up the files of all of them. A counter of a worker that died stays in the sum, so totals
never go backwards; a `livesum` gauge counts only the workers alive (gunicorn.conf.py's
child_exit marks the dead ones). The variable must be set before prometheus_client is first
imported, which is why the master never imports this module.

Without PROMETHEUS_MULTIPROC_DIR (the app in-process, as most tests run it) the values live
in this process's memory and GET /metrics shows them.

Every label value comes from a closed set: a route template, a mode, a reason code; never a
user, tenant, job or dependency name, which belong in SQL (docs/operations.md).

The queue gauges are not written to files: the worker serving a scrape reads them from the
database then (QueueCollector), once, whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as CounterMetric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from janus.admission import (
    Admission,
    AdmissionRequest,
    Admitter,
    DatabaseUnavailable,
    Decision,
    Status,
    UnavailableCause,
)
from janus.partition_gauges import partition_gauges
from janus.queue import Claim, QueueDepth
from janus.reasons import ReasonCode

# The classic text format: every Janus name is a legal one, and every Prometheus reads it.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED_ROUTE = "unmatched"

# The reason label of a decision: `none` when accepted, else its ReasonCode (the priority
# reserve refuses with rate_limit, as an empty bucket does; `other` is a code newer than this
# version, read during a deploy).
REASON_LABELS: tuple[str, ...] = ("none", *(code.value for code in ReasonCode))

# Methods other than these are counted as `other`: a client chooses the method's text.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_registry = CollectorRegistry(auto_describe=True)

DECISIONS = CounterMetric(
    "janus_decisions",
    "Jobs decided, by route family, mode, outcome and reason code (idempotent replays are"
    " not decisions).",
    ["source", "mode", "outcome", "reason"],
    registry=_registry,
)
SHADOW_DECISIONS = CounterMetric(
    "janus_shadow_decisions",
    "Jobs decided in shadow mode (all of them accepted), by what enforcement would have"
    " decided: route family, mode, outcome and reason code.",
    ["source", "mode", "outcome", "reason"],
    registry=_registry,
)
REQUEST_DURATION = Histogram(
    "janus_request_duration_seconds",
    "Time from the request reaching the app to its answer, by route template and method.",
    ["route", "method"],
    registry=_registry,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RESPONSES = CounterMetric(
    "janus_responses",
    "Answers by route template, method and status code.",
    ["route", "method", "status"],
    registry=_registry,
)
UNAVAILABLE = CounterMetric(
    "janus_unavailable",
    "503 answers because the database could not decide, by cause.",
    ["cause"],
    registry=_registry,
)
CONFLICT_RETRIES = CounterMetric(
    "janus_conflict_retries",
    "Transactions run again after a serialization failure or a deadlock.",
    ["conflict"],
    registry=_registry,
)
POOL_WAIT = Histogram(
    "janus_pool_wait_seconds",
    "Time to get a connection from the pool (its liveness check included), timeouts too.",
    registry=_registry,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# Group admission (janus/grouping.py): each group of a user's requests decided in one
# statement, a request decided alone included, so _sum / _count is the mean group size.
GROUP_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128)
GROUP_REQUESTS = Histogram(
    "janus_admission_group_requests",
    "Requests (single jobs and partial batches) decided together in one statement.",
    registry=_registry,
    buckets=GROUP_SIZE_BUCKETS,
)
GROUP_JOBS = Histogram(
    "janus_admission_group_jobs",
    "Jobs decided together in one statement by a group of requests.",
    registry=_registry,
    buckets=(1, 2, 4, 8, 16, 32, 64, 100, 250, 500, 1000, 2500),
)
JOBS_HANDED_OUT = CounterMetric(
    "janus_jobs_handed_out",
    "Jobs leased to workers by claims (POST /system/jobs/claim), each attempt counted.",
    registry=_registry,
)
JOBS_LEASE_EXPIRED = CounterMetric(
    "janus_jobs_lease_expired",
    "Leases that ran out before their worker ended them: the job taken back by a claim, to"
    " wait for its next attempt or failed for good.",
    registry=_registry,
)
JOBS_EXPIRED = CounterMetric(
    "janus_jobs_expired",
    "Waiting jobs not handed out within their max_wait_seconds (state expired).",
    registry=_registry,
)
JOBS_CANCELLED = CounterMetric(
    "janus_jobs_cancelled",
    "Queued or waiting jobs cancelled by their users (POST /dashboard/jobs/{job_id}/cancel).",
    registry=_registry,
)
JOBS_RETRIED = CounterMetric(
    "janus_jobs_retried",
    "Ended jobs sent back to wait by their users (POST /dashboard/jobs/{job_id}/retry).",
    registry=_registry,
)
QUEUE_UNREAD = CounterMetric(
    "janus_queue_unread",
    "Scrapes served without the queue gauges because the database did not answer, by cause.",
    ["cause"],
    registry=_registry,
)
POOL_CONNECTIONS = Gauge(
    "janus_pool_connections",
    "Connections of the live workers' pools, open or being opened, as of each pool's last use.",
    registry=_registry,
    multiprocess_mode="livesum",
)
POOL_CONNECTIONS_IDLE = Gauge(
    "janus_pool_connections_idle",
    "Connections of the live workers' pools waiting in the pool, as of each pool's last use.",
    registry=_registry,
    multiprocess_mode="livesum",
)

# Every series a dashboard may plot exists from the start, at 0, so a first event is an
# increase, not a new series that rate() would miss.
for _source in ("dashboard", "system"):
    for _mode in ("single", "partial", "atomic"):
        for _counter in (DECISIONS, SHADOW_DECISIONS):
            _counter.labels(_source, _mode, "accepted", "none")
            for _reason in REASON_LABELS[1:]:
                _counter.labels(_source, _mode, "rejected", _reason)
for _cause in get_args(UnavailableCause):
    UNAVAILABLE.labels(_cause)
    QUEUE_UNREAD.labels(_cause)
for _conflict in ("serialization_failure", "deadlock"):
    CONFLICT_RETRIES.labels(_conflict)


def reason_label(status: Status, code: ReasonCode | None) -> str:
    """The `reason` label of a decision: `none` when accepted, its code when rejected (a
    rejection without one, remembered before codes were, is `other`)."""
    if status == "Accepted":
        return "none"
    return (code or ReasonCode.OTHER).value


def route_label(uri_template: str | None) -> str:
    """The route's template (`/system/jobs/{job_id:uuid}/fail`), or `unmatched`."""
    return uri_template or UNMATCHED_ROUTE


def method_label(method: str) -> str:
    """The method, or `other` for one no route of Janus has."""
    return method if method in _METHODS else "other"


# Label children by their values: labels() validates and locks on every call, and these run
# on every request. Filling them concurrently at worst looks a child up twice.
_request_children: dict[tuple[str, str], Any] = {}
_response_children: dict[tuple[str, str, int], Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answer and its latency."""
    duration = _request_children.get((route, method))
    if duration is None:
        duration = _request_children[route, method] = REQUEST_DURATION.labels(route, method)
    duration.observe(seconds)
    answered = _response_children.get((route, method, status))
    if answered is None:
        answered = _response_children[route, method, status] = RESPONSES.labels(
            route, method, str(status)
        )
    answered.inc()


def count_unavailable(cause: UnavailableCause) -> None:
    """Count one 503 for `cause`."""
    UNAVAILABLE.labels(cause).inc()


def count_conflict_retry(conflict: Literal["serialization_failure", "deadlock"]) -> None:
    """Count one transaction run again after a conflict."""
    CONFLICT_RETRIES.labels(conflict).inc()


# The pool's size as last written: it seldom changes, and a write costs more than a compare.
_pool_sizes: tuple[int, int] | None = None


def observe_pool(wait_seconds: float, connections: int, idle: int) -> None:
    """Record a wait for a connection and the pool's size once it ended."""
    global _pool_sizes
    POOL_WAIT.observe(wait_seconds)
    if _pool_sizes != (connections, idle):
        _pool_sizes = (connections, idle)
        POOL_CONNECTIONS.set(connections)
        POOL_CONNECTIONS_IDLE.set(idle)


def count_claim(claim: Claim) -> None:
    """Count what one claim did: the jobs it handed out, and the leases and waiting jobs that
    had run out, which it took back and expired."""
    for counter, jobs in (
        (JOBS_HANDED_OUT, len(claim.jobs)),
        (JOBS_LEASE_EXPIRED, claim.leases_expired),
        (JOBS_EXPIRED, claim.jobs_expired),
    ):
        if jobs:
            counter.inc(jobs)


def count_job_action(action: Literal["cancel", "retry"]) -> None:
    """Count a job its user cancelled, or sent back to wait."""
    (JOBS_CANCELLED if action == "cancel" else JOBS_RETRIED).inc()


def observe_group(requests: int, jobs: int) -> None:
    """A group of `requests` requests and `jobs` jobs is being decided in one statement."""
    GROUP_REQUESTS.observe(requests)
    GROUP_JOBS.observe(jobs)


# (source, mode, status, reason) -> the child of DECISIONS or SHADOW_DECISIONS, as the request
# children above.
_decision_children: dict[tuple[str, str, str, str], Any] = {}
_shadow_children: dict[tuple[str, str, str, str], Any] = {}


def _counted(
    children: dict[tuple[str, str, str, str], Any],
    counter: CounterMetric,
    labels: tuple[str, str, str, str],
) -> Any:
    child = children.get(labels)
    if child is None:
        child = children[labels] = counter.labels(*labels)
    return child


def count_decisions(request: AdmissionRequest, decisions: Sequence[Decision]) -> None:
    """Count `request`'s decisions, and in shadow mode what enforcement would have decided;
    replayed ones were counted when first made."""
    source, mode = request.source.value, request.mode.value
    # One write per kind of decision, not per job: a batch has up to 1,000.
    tally: dict[tuple[str, str, str, str], int] = {}
    shadow: dict[tuple[str, str, str, str], int] = {}
    for decision in decisions:
        if not decision.replayed:
            status = decision.status
            labels = (source, mode, status.lower(), reason_label(status, decision.reason_code))
            tally[labels] = tally.get(labels, 0) + 1
        if decision.shadow_status is not None:
            status = decision.shadow_status
            reason = reason_label(status, decision.shadow_reason_code)
            labels = (source, mode, status.lower(), reason)
            shadow[labels] = shadow.get(labels, 0) + 1
    for labels, count in tally.items():
        _counted(_decision_children, DECISIONS, labels).inc(count)
    for labels, count in shadow.items():
        _counted(_shadow_children, SHADOW_DECISIONS, labels).inc(count)


class CountingAdmitter:
    """An Admitter that counts the decisions of the one it wraps."""

    def __init__(self, admitter: Admitter) -> None:
        self._admitter = admitter

    def admit(self, request: AdmissionRequest) -> Admission:
        """Decide `request` with the wrapped Admitter, and count its decisions."""
        admission = self._admitter.admit(request)
        count_decisions(request, admission.decisions)
        return admission

    def quote(self, request: AdmissionRequest) -> Admission:
        """Quote `request` with the wrapped Admitter: a quote decides nothing to count."""
        return self._admitter.quote(request)


def exposition(read_queue: Callable[[], QueueDepth] | None = None) -> bytes:
    """Every metric in Prometheus's text format: all workers' when multiprocess, else ours;
    with `read_queue`, the queue gauges first (so a failure to read them is counted in the
    same scrape)."""
    queue = b""
    if read_queue is not None:
        queue_registry = CollectorRegistry(auto_describe=False)
        queue_registry.register(QueueCollector(read_queue))
        queue = generate_latest(queue_registry)
    return queue + generate_latest(_scraped_registry())


_log = logging.getLogger("janus")


class QueueCollector:
    """The queue gauges, read by `read_queue` when a scrape collects them.

    Registered for one scrape only, never in a registry written to files: each worker would
    otherwise keep its own copy, and a scrape add them up. When the database does not answer
    they are left out, the other metrics still served; janus_queue_unread_total counts it.
    """

    def __init__(self, read_queue: Callable[[], QueueDepth]) -> None:
        self._read_queue = read_queue

    def collect(self) -> Iterable[Metric]:
        """janus_queue_jobs by state and janus_queue_oldest_claimable_seconds, or nothing."""
        try:
            depth = self._read_queue()
        except DatabaseUnavailable as error:
            QUEUE_UNREAD.labels(error.cause).inc()
            _log.warning("queue gauges left out of the scrape: %s", error)
            return []
        jobs = GaugeMetricFamily(
            "janus_queue_jobs",
            "Jobs of every user still in the queue, by state, as of the scrape.",
            labels=["state"],
        )
        for state, count in depth.jobs_by_state():
            jobs.add_metric([state], count)
        oldest = GaugeMetricFamily(
            "janus_queue_oldest_claimable_seconds",
            "Age of the oldest job a claim could take (queued, or waiting with its run_at"
            " passed) of any user, as of the scrape; 0 when there is none.",
            value=depth.oldest_claimable_seconds,
        )
        return [jobs, oldest, *partition_gauges(depth)]


def _scraped_registry() -> CollectorRegistry:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return _registry
    registry = CollectorRegistry()
    WorkerFilesCollector(registry, path)
    return registry


class WorkerFilesCollector(MultiProcessCollector):
    """prometheus_client's collector, passing over files still 0 bytes long.

    A worker creates each of its files and only then sizes it; a scrape in between fails
    whole (struct.error), and a worker killed in between leaves the empty file for good
    (prometheus/client_python#1199, open in 0.26.0). An empty file holds no value yet.
    """

    def collect(self) -> Iterable[Metric]:
        """Every worker's metrics, added up."""
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(path) > 0:
                    files.append(path)
        return self.merge(files, accumulate=True)  # type: ignore[no-any-return]
