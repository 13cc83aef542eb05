"""What `make bench` measures: the scenarios, the ceilings they are read against, the targets.

A scenario is one line of SCENARIOS: it names a route (or, for the ceilings, the SQL alone
under pgbench, or the bare twin of bench/twin/), how many jobs a request carries, how many
users share the load and what config they have. bench/database.py provisions its users,
bench/run.py runs the scenarios in table order (bench/measure.py measures each) and
bench/tables.py prints each as one row; a target is one line of TARGETS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# "claim": workers draining a queue, each claim acknowledged by one batch complete.
# "pacing": wait-mode jobs far faster than the refill, and workers claiming them at once.
# "drain": a queue of DRAIN_JOBS drained to the end (bench/drain.py).
Kind = Literal["health", "single", "partial", "atomic", "claim", "pacing", "drain"]
# "twin": wrk against the bare twin (bench/twin/), the same requests as the service's.
# "python": bench/drain_driver.py's claims and batch completes; "worker": janus-worker.
Driver = Literal["wrk", "pgbench", "twin", "python", "worker"]

# The seed API's single job: two dependencies and a small payload.
JOB: dict[str, Any] = {
    "tenant_id": "tenant-bench",
    "priority": 8,
    "dependencies": {"openai": 2, "stripe": 1},
    "payload": {"custom_key": "custom_value"},
}
BATCH_NAME = "bench"


def bucket_config(capacity: int, refill_per_second: float) -> dict[str, Any]:
    """A config (as `janus config set` reads it) with one such bucket per dependency of JOB."""
    limit = {"capacity": capacity, "refill_per_second": refill_per_second}
    return {"dependencies": {name: limit for name in JOB["dependencies"]}}


# So large that no run can empty it: every job is accepted.
UNLIMITED = bucket_config(10**12, 10**9)
# Emptied before the run (drain=True) and never refilled: every job is rejected with
# "rate limit exceeded", the overload path.
EMPTY = bucket_config(100, 0)

HEALTH = "health"
SQL_SINGLE = "pgbench-single"
SQL_BATCH = "pgbench-100"
TWIN_SINGLE = "twin-single"
TWIN_BATCH = "twin-100"
# The twin's one bucket: so large that no run can empty it, as UNLIMITED.
TWIN_CAPACITY = 10**12
TWIN_REFILL_PER_SECOND = 10**9
# Batch scenarios are also read as a multiple of this one's jobs/s.
SINGLE_BASELINE = "single-hot"
SINGLE_HOT_16 = "single-hot-16"
SINGLE_ONE_CONNECTION = "single-1conn"

# Workers: the route that acknowledges every job of a claim at once.
COMPLETE_PATH = "/system/jobs/complete"
CLAIM_LEASE_S = 60
# Before a claim scenario's warm-up and before each of its measured runs, its user's queue is
# topped up (through admit_jobs_once, 1,000 jobs a call) with enough jobs for the run at this
# many jobs/s, so that it cannot run dry; a claim that still finds it empty or short, or a
# queue empty after the run, is reported as unexpected.
QUEUE_FILL_JOBS_PER_S = 5000
QUEUE_FILL_BATCH = 1000

# The drains (issue 26): DRAIN_JOBS queued jobs drained by claims of DRAIN_CLAIM_LIMIT and
# batch completes sent directly from --connections connections (RAW_DRAIN, as claim-complete
# sends them), and by the worker runtime with a handler that does nothing and
# WORKER_DRAIN_CONCURRENCY slots, as many jobs as the raw drain holds at once: as it runs by
# default, claims sized to its free slots (WORKER_DRAIN), and with raw-drain's claims of
# DRAIN_CLAIM_LIMIT (WORKER_DRAIN_10). Each worker is stopped by SIGTERM once
# DRAIN_SIGTERM_AT of the jobs are done, then started again. Its jobs/s must be at least
# DRAIN_MIN_KEPT of the raw drain's.
RAW_DRAIN = "raw-drain"
WORKER_DRAIN = "worker-drain"
WORKER_DRAIN_10 = "worker-drain-10"
DRAIN_JOBS = 10_000
# Drained first, unrecorded: the warm-up of a drain.
DRAIN_WARMUP_JOBS = 1_000
DRAIN_CLAIM_LIMIT = 10
WORKER_DRAIN_CONCURRENCY = 80
DRAIN_SIGTERM_AT = 0.5
DRAIN_MIN_KEPT = 0.90
# A drain not done by then is stopped, and what it left is reported.
DRAIN_TIMEOUT_S = 120.0

# Seconds per scenario when --duration is not given and the scenario has none of its own.
DEFAULT_DURATION_S = 12.0

# Pacing (issue 24): jobs in wait mode at ten times the refill of their one bucket, handed out
# by claims at the refill; nothing expires within a run. The hand-out rate must be the refill
# within PACING_TOLERANCE over the run (60 s unless --duration says otherwise).
PACING = "pacing-wait"
PACING_REFILL_PER_S = 20
PACING_SUBMIT_PER_S = 200
PACING_PRODUCERS = 32
PACING_CLAIMERS = 4
PACING_CLAIM_LIMIT = 10
PACING_DURATION_S = 60.0
PACING_TOLERANCE = 0.02
PACING_JOB: dict[str, Any] = {
    "batch_name": BATCH_NAME,
    "tenant_id": "tenant-bench",
    "priority": 8,
    "dependencies": {"openai": 1},
    "when_limited": "wait",
    "max_wait_seconds": 86_400,
}
PACING_CONFIG: dict[str, Any] = {
    "dependencies": {
        "openai": {"capacity": PACING_REFILL_PER_S, "refill_per_second": PACING_REFILL_PER_S}
    },
    "priority_reserve": 0,
}


@dataclass(frozen=True)
class Scenario:
    """One load: what each request is, who sends it, and what every answer should be."""

    name: str
    kind: Kind
    description: str
    jobs: int = 1
    users: int = 1
    config: dict[str, Any] | None = None
    # Empty every bucket (one job taking each whole capacity) before the run.
    drain: bool = False
    # The HTTP status every response should have; anything else is reported.
    expect: int = 202
    driver: Driver = "wrk"
    # The pgbench scenario (same SQL, no HTTP) whose jobs/s this one is divided by.
    sql_ceiling: str | None = None
    # The twin scenario (same requests, the bare app) whose jobs/s this one is divided by.
    twin_ceiling: str | None = None
    # wrk's connections, when not --connections. The ceilings run at --connections, so a
    # scenario with a count of its own is read against none of them.
    connections: int | None = None
    # Seconds of its run when --duration is not given (None: DEFAULT_DURATION_S).
    duration_s: float | None = None

    def load_shape(self, connections: int, threads: int) -> tuple[int, int]:
        """(connections, threads) of its runs, given --connections and --threads."""
        own = self.connections or connections
        return own, min(threads, own)

    @property
    def admits(self) -> bool:
        """Whether its requests are decided by Janus's admission (its group size is read)."""
        return self.driver == "wrk" and self.kind in ("single", "partial", "atomic")

    @property
    def method(self) -> str:
        """The HTTP method of each request."""
        return "GET" if self.kind == "health" else "POST"

    @property
    def path(self) -> str:
        """The route each request goes to."""
        if self.driver == "twin":
            return {"single": "/jobs", "partial": "/jobs/batch"}[self.kind]
        return {
            "health": "/health",
            "single": "/dashboard/jobs",
            "partial": "/dashboard/jobs/batch",
            "atomic": "/dashboard/jobs/batch/atomic",
            "claim": "/system/jobs/claim",
            "drain": "/system/jobs/claim",
            "pacing": "/system/jobs",
        }[self.kind]

    @property
    def body(self) -> dict[str, Any] | None:
        """The JSON body of each request, as a producer would send it."""
        if self.kind == "health":
            return None
        if self.kind == "single":
            return {"batch_name": BATCH_NAME, **JOB}
        if self.kind in ("claim", "drain"):
            return {"limit": self.jobs, "lease_seconds": CLAIM_LEASE_S}
        if self.kind == "pacing":
            return PACING_JOB
        return {"batch_name": BATCH_NAME, "jobs": [JOB] * self.jobs}

    @property
    def expected_outcome(self) -> str:
        """What every request should get: its HTTP status, or a committed transaction (a
        worker run: its exit status)."""
        if self.driver == "worker":
            return "exit 0"
        return "committed" if self.driver == "pgbench" else str(self.expect)

    @property
    def expected_outcomes(self) -> frozenset[str]:
        """Every outcome a run may count: a pacing run's claims and completes answer 200."""
        return frozenset({self.expected_outcome, *(["200"] if self.kind == "pacing" else [])})

    @property
    def expected_job_status(self) -> str:
        """What every stored job of this scenario should say (a claim's: its state)."""
        if self.kind in ("claim", "drain"):
            return "completed"
        return "Rejected" if self.drain else "Accepted"


# The soak's bucket accepts this many jobs a second and rejects the rest (bench/soak.py).
SOAK_ACCEPTED_PER_S = 2000

SCENARIOS: tuple[Scenario, ...] = (
    # Ceilings: the HTTP stack alone, and Postgres alone running the very SQL Janus sends.
    Scenario(HEALTH, "health", "GET /health: gunicorn + falcon, no database", expect=200),
    Scenario(
        SQL_SINGLE, "single", "pgbench: admit_jobs_once, 1 job, hot bucket",
        config=UNLIMITED, driver="pgbench",
    ),
    Scenario(
        SQL_BATCH, "partial", "pgbench: admit_jobs_once, partial batch of 100",
        jobs=100, config=UNLIMITED, driver="pgbench",
    ),
    # The service.
    Scenario(
        SINGLE_BASELINE, "single", "1 job accepted, one hot bucket",
        config=UNLIMITED, sql_ceiling=SQL_SINGLE, twin_ceiling=TWIN_SINGLE,
    ),
    # Each twin scenario runs right after its counterpart: same body, same wrk script.
    Scenario(
        TWIN_SINGLE, "single", "the bare twin: 1 job accepted, one hot bucket",
        driver="twin",
    ),
    # Group admission (issue 23) on a busy service: twice the connections on the hot bucket.
    Scenario(
        SINGLE_HOT_16, "single", "1 job accepted, one hot bucket, 16 connections",
        config=UNLIMITED, connections=16,
    ),
    Scenario(
        "single-spread", "single", "1 job accepted, 100 users",
        users=100, config=UNLIMITED, sql_ceiling=SQL_SINGLE,
    ),
    Scenario(
        "single-rejected", "single", "1 job rejected, empty bucket, refill 0",
        config=EMPTY, drain=True, expect=429, sql_ceiling=SQL_SINGLE,
    ),
    # ... and on an idle one: one request in flight, so every request finds a connection free
    # and no group can form. One user, where a grouping that waited for company would show.
    Scenario(
        SINGLE_ONE_CONNECTION, "single", "1 job accepted, one hot bucket, 1 connection",
        config=UNLIMITED, connections=1,
    ),
    Scenario(
        "partial-100", "partial", "partial batch of 100 accepted",
        jobs=100, config=UNLIMITED, expect=200, sql_ceiling=SQL_BATCH, twin_ceiling=TWIN_BATCH,
    ),
    Scenario(
        TWIN_BATCH, "partial", "the bare twin: partial batch of 100 accepted",
        jobs=100, expect=200, driver="twin",
    ),
    Scenario(
        "partial-1000", "partial", "partial batch of 1000 accepted",
        jobs=1000, config=UNLIMITED, expect=200, sql_ceiling=SQL_BATCH,
    ),
    Scenario(
        "soak-100", "partial", f"partial batch of 100, {SOAK_ACCEPTED_PER_S:,} jobs/s accepted",
        jobs=100, config=bucket_config(SOAK_ACCEPTED_PER_S, SOAK_ACCEPTED_PER_S), expect=200,
    ),
    Scenario(
        "atomic-100", "atomic", "atomic batch of 100 accepted",
        jobs=100, config=UNLIMITED, sql_ceiling=SQL_BATCH,
    ),
    # The workers' side: draining what was admitted.
    Scenario(
        "claim-complete", "claim", "claim 10 jobs, then 1 batch complete of the 10",
        jobs=10, config=UNLIMITED, expect=200,
    ),
    # The drains of issue 26: directly, then by the worker runtime, DRAIN_JOBS each.
    Scenario(
        RAW_DRAIN, "drain",
        f"{DRAIN_JOBS:,} queued jobs drained: claims of {DRAIN_CLAIM_LIMIT}, 1 batch complete "
        "each, sent directly",
        jobs=DRAIN_CLAIM_LIMIT, config=UNLIMITED, expect=200, driver="python",
    ),
    Scenario(
        WORKER_DRAIN, "drain",
        f"the same by janus-worker, a handler that does nothing, {WORKER_DRAIN_CONCURRENCY} "
        "slots, claims sized to its free slots; SIGTERM half-way, then a restart",
        jobs=WORKER_DRAIN_CONCURRENCY, config=UNLIMITED, expect=200, driver="worker",
    ),
    Scenario(
        WORKER_DRAIN_10, "drain",
        f"the same with claims of {DRAIN_CLAIM_LIMIT}, as raw-drain's",
        jobs=DRAIN_CLAIM_LIMIT, config=UNLIMITED, expect=200, driver="worker",
    ),
    # Pacing: admission and claims together, the hand-out rate against the refill. Last: it
    # leaves a line of waiting jobs behind.
    Scenario(
        PACING, "pacing",
        f"{PACING_SUBMIT_PER_S} wait-mode jobs/s from {PACING_PRODUCERS} producers, refill "
        f"{PACING_REFILL_PER_S}/s; {PACING_CLAIMERS} workers claim {PACING_CLAIM_LIMIT} and "
        "complete",
        config=PACING_CONFIG, duration_s=PACING_DURATION_S,
    ),
)  # fmt: skip


def durations_text(duration_s: float | None) -> str:
    """Seconds per scenario as the report says them: --duration's, else each one's."""
    if duration_s is not None:
        return f"{duration_s:g}s"
    own = ", ".join(f"{s.name} {s.duration_s:g}s" for s in SCENARIOS if s.duration_s)
    return f"{DEFAULT_DURATION_S:g}s ({own})"


Measure = Literal["requests_per_s", "jobs_per_s"]


@dataclass(frozen=True)
class Target:
    """`scenario`'s `measure` must be at least `minimum` times `baseline`'s."""

    scenario: str
    baseline: str
    measure: Measure
    minimum: float
    # Whose target it is, when not the standing one: printed beside it.
    source: str = ""


TARGETS: tuple[Target, ...] = (
    Target(SINGLE_BASELINE, SQL_SINGLE, "requests_per_s", 0.60),
    Target(SINGLE_BASELINE, HEALTH, "requests_per_s", 0.25),
    # Janus next to the least a service of its design can do (bench/twin/): 90% of it is the
    # standing target; group admission is to reach all of the twin's single jobs, and 60% of
    # its batches on the way to 90%.
    Target(SINGLE_BASELINE, TWIN_SINGLE, "jobs_per_s", 1.0, "issue 23"),
    Target("partial-100", TWIN_BATCH, "jobs_per_s", 0.90),
    Target("partial-100", TWIN_BATCH, "jobs_per_s", 0.60, "issue 23"),
    Target("single-rejected", SINGLE_BASELINE, "requests_per_s", 1.0),
    Target("partial-100", SINGLE_BASELINE, "jobs_per_s", 20),
    Target("partial-1000", SINGLE_BASELINE, "jobs_per_s", 30),
    # Atomic batches keep their own transaction, and queue on their buckets' locks.
    Target("atomic-100", "partial-100", "jobs_per_s", 0.85, "issue 23"),
    # Workers must drain jobs at least as fast as producers admit them one at a time.
    Target("claim-complete", SINGLE_BASELINE, "jobs_per_s", 1.0),
    # The worker runtime drains at least 90% as fast as the queue's calls sent directly: as
    # it runs, against both raw drains; with the raw drain's claims, against it.
    Target(WORKER_DRAIN, RAW_DRAIN, "jobs_per_s", DRAIN_MIN_KEPT, "issue 26"),
    Target(WORKER_DRAIN, "claim-complete", "jobs_per_s", DRAIN_MIN_KEPT, "issue 26"),
    Target(WORKER_DRAIN_10, RAW_DRAIN, "jobs_per_s", DRAIN_MIN_KEPT, "issue 26"),
)
# Statuses a scenario must never answer, each checked as a target: an atomic batch waits for
# its buckets' locks rather than failing (issue 23: "with no 503").
FORBIDDEN_STATUSES: tuple[tuple[str, int], ...] = (("atomic-100", 503),)


@dataclass(frozen=True)
class Reading:
    """A number printed among the targets to be compared by hand with an earlier run's
    (the README's table, or a run before the change) that this run does not hold."""

    scenario: str
    measure: Literal["requests_per_s", "p50_ms"]
    wanted: str


READINGS: tuple[Reading, ...] = (
    # Issue 23: one user per connection leaves little to group, and must not lose by it.
    Reading("single-spread", "requests_per_s", ">= the README's table"),
    # Issue 23: an idle service adds no wait for a group.
    Reading(SINGLE_ONE_CONNECTION, "p50_ms", "<= 1.1x before group admission"),
)
# In every single-job scenario of the service.
MAX_P99_OVER_P50 = 4.0
# Each gunicorn worker, after the run.
MAX_WORKER_RSS_MB = 80.0

# The soak (--soak): this scenario for SOAK_MINUTES, one measurement a minute, while jobs is
# kept in partitions of 5 minutes for 10 (bench/soak.py). Every minute that ends after the
# first partition was dropped must keep SOAK_MIN_KEPT of the first minute's jobs/s, and the
# size of jobs after that drop must stay within SOAK_MAX_GROWTH of its size until then
# (issue 27: the table stops growing once retention drops partitions, and admission keeps
# its pace meanwhile). Only the soak runs it: it is not in the bench's table.
SOAK_SCENARIO = "soak-100"
SOAK_MINUTES = 20
SOAK_MIN_KEPT = 0.90
SOAK_MAX_GROWTH = 1.10
# Before the soak, jobs of the soak's user may be added until the table holds this many rows
# (--soak-prefill; issue 13 soaked past 10 million rows so): none by default, since the
# retention forgets them with the partition they are in.
SOAK_PREFILL_ROWS = 0
