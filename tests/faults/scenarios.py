"""The fault scenarios: each runs the real service under load, breaks something, and audits.

A scenario starts a Postgres of its own and gunicorn on it, lets a crowd of clients send
single jobs for two users, stops, kills or restarts something mid-load, and returns a
ScenarioResult: what the clients were answered, what the database holds afterwards, and the
violations of the invariants every scenario shares:

- no answer is a 500 (or any 5xx but 503), and every 503 carries Retry-After;
- no request hangs (no client timeout), and no connection fails unless the scenario allows it;
- every job answered 202 is in the jobs table as Accepted ("lost" otherwise), and every 429
  is stored as Rejected;
- no bucket gave out more than capacity + refill x elapsed (from the jobs table), and a bucket
  that never refills lost exactly what its stored jobs cost: no half-done transaction (the
  pacing scenario, whose jobs wait, expire and pay again, bounds every window from an audit
  of its own: pacing.py);
- gunicorn logged no traceback and no unhandled error;

plus the scenario's own (503s within a bound, recovery within a few seconds, ...).
`test_faults.py` asserts there are none; `report.py` prints the same results as a table.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from janus.resources.health import READY_FOR_S
from tests.faults.harness import (
    CLIENT_TIMEOUT_S,
    CLOSED,
    DROPPED,
    REFUSED,
    SERVICE_STOP_TIMEOUT_S,
    TIMEOUT,
    TRICKLE_INTERVAL_S,
    Attempt,
    Clock,
    FaultPostgres,
    JobCall,
    Probe,
    Reply,
    Service,
    crowd,
    trickle,
)
from tests.faults.workers import CLAIM_LIMIT, LEASE_S, WorkerLog, WorkerPool
from tests.support.factories import user_with_config

WORKERS = 4
CLIENTS = 16
# "Within a few seconds of its return the service answers normally again."
RECOVERY_LIMIT_S = 3.0
# "Within a second or two": the pool waits JANUS_POOL_TIMEOUT_MS (1.5 s) for a connection.
OUTAGE_ANSWER_LIMIT_S = 2.5
LOCK_TIMEOUT_MS = 300

# Every user has the same two buckets: one that refills, where the bound is
# capacity + refill x elapsed, and one that never does, where the accounting is exact.
REFILLING, FINITE = "openai", "stripe"
BUCKETS = {
    REFILLING: {"capacity": 30, "refill_per_second": 15},
    FINITE: {"capacity": 1500, "refill_per_second": 0},
}
# Jobs on one bucket or both, so a job that takes from two buckets is all-or-nothing too.
JOB_SHAPES = ({REFILLING: 1, FINITE: 1}, {REFILLING: 2}, {FINITE: 2})
USERS = ("alice", "bob")
ROUTES = ("/dashboard/jobs", "/system/jobs")
NORMAL = {"202", "429"}


@dataclass
class ScenarioResult:
    """What one scenario did and found; `violations` is empty when every invariant held."""

    name: str
    description: str
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    accepted_in_db: int = 0
    over_admitted: float = 0.0
    lost_jobs: int = 0
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return format_report([self])


class Run:
    """One scenario's world: its Postgres, its users, the service, the clock and the record."""

    def __init__(
        self,
        name: str,
        description: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        *,
        buckets: Mapping[str, Mapping[str, float]] = BUCKETS,
        config: Mapping[str, Any] | None = None,
        before_load: Callable[[psycopg.Connection], None] | None = None,
        users: Sequence[str] = USERS,
        service_url: Callable[[FaultPostgres], str] | None = None,
    ) -> None:
        """`service_url`: the DATABASE_URL the service is given for its Postgres (through a
        PgBouncer, tests/faults/pgbouncer.py); the Postgres's own by default."""
        self.result = ScenarioResult(name, description)
        self.postgres = FaultPostgres.create()
        try:
            with self.postgres.connect() as db:
                self.users = {
                    name: user_with_config(
                        db, {dep: dict(limit) for dep, limit in buckets.items()}, **(config or {})
                    )
                    for name in users
                }
                if before_load is not None:
                    before_load(db)
            self.service = Service.start(
                self.postgres.url if service_url is None else service_url(self.postgres),
                log_dir / f"{name}-gunicorn.log",
                workers=WORKERS,
                env=env or {},
            )
        except BaseException:
            self.postgres.destroy()
            raise
        self.clock = Clock()
        self.attempts: list[Attempt] = []
        self._numbers = itertools.count()
        # The bucket bound counts refill from here: the buckets are full, nothing was sent yet.
        self.started_at_db = self.postgres.clock()

    def close(self) -> None:
        """Stop the service and the database, whatever state they were left in."""
        self.service.stop()
        self.postgres.destroy()

    def jobs(self) -> Callable[[int, int], JobCall]:
        """Job requests, each client thread for one user; every request has its batch_name."""

        def make_call(_: int, thread_index: int) -> JobCall:
            # Numbered across the whole run: the batch_name finds the request's job again.
            number = next(self._numbers)
            name = USERS[thread_index % len(USERS)]
            return JobCall(
                user=name,
                user_id=str(self.users[name]),
                path=ROUTES[number % len(ROUTES)],
                batch_name=f"request-{number}-{name}",
                dependencies=JOB_SHAPES[number % len(JOB_SHAPES)],
            )

        return make_call

    def load(
        self,
        make_call: Callable[[int, int], JobCall | Probe] | None = None,
        threads: int = CLIENTS,
    ) -> contextlib.AbstractContextManager[Any]:
        """Clients sending requests for the body of the `with`, recorded in `attempts`."""
        return crowd(
            self.service.url,
            self.clock,
            make_call or self.jobs(),
            threads=threads,
            attempts=self.attempts,
        )

    def violation(self, message: str) -> None:
        """Record a broken invariant."""
        self.result.violations.append(message)

    def check(self, condition: bool, message: str) -> None:
        """Record `message` as a violation unless `condition` holds."""
        if not condition:
            self.violation(message)

    def note(self, message: str) -> None:
        """Record a measurement worth printing."""
        self.result.notes.append(message)

    def job_attempts(self) -> list[Attempt]:
        """The job requests sent so far, in the order they were sent."""
        return [a for a in self.attempts if isinstance(a.call, JobCall)]

    def finish(
        self, allowed_failures: Sequence[str] = (), *, bound_from_jobs: bool = True
    ) -> ScenarioResult:
        """Audit the answers against the database and return the result.

        `bound_from_jobs`: hold each bucket to capacity + refill x elapsed by the costs of its
        accepted jobs, which holds when each was paid once, at admission; a scenario whose
        jobs wait, expire or are paid again on a retry (pacing) checks its buckets itself.
        """
        attempts = self.job_attempts()
        result = self.result
        result.sent = len(attempts)
        result.answers = Counter(a.kind for a in attempts)
        self._check_answers(self.attempts, allowed_failures)
        self._audit_database(attempts, bound_from_jobs)
        log = self.service.log()
        self.check("Traceback" not in log, "gunicorn logged a traceback")
        self.check("unhandled error" not in log, "the service logged an unhandled error")
        return result

    def _check_answers(self, attempts: Sequence[Attempt], allowed_failures: Sequence[str]) -> None:
        server_errors = Counter(
            a.kind for a in attempts if a.reply.status and a.reply.status >= 500
        )
        server_errors.pop("503", None)
        self.check(not server_errors, f"server errors other than 503: {dict(server_errors)}")
        no_retry_after = [a for a in attempts if a.kind == "503" and not _retry_after_ok(a)]
        self.check(not no_retry_after, f"{len(no_retry_after)} answers 503 lack Retry-After >= 1")
        failures = Counter(a.kind for a in attempts if a.reply.status is None)
        self.check(TIMEOUT not in failures, f"{failures[TIMEOUT]} requests hung (client timeout)")
        unexpected = {k: n for k, n in failures.items() if k not in allowed_failures}
        self.check(not unexpected, f"connection failures: {unexpected}")
        if attempts:
            slowest = max(attempts, key=lambda a: a.latency)
            self.note(f"slowest answer {slowest.latency:.2f} s ({slowest.kind})")

    def _audit_database(self, attempts: Sequence[Attempt], bound_from_jobs: bool) -> None:
        result = self.result
        ended_at_db = self.postgres.clock()
        # The users who sent jobs: another's stored history (fair_share.py's) is not audited.
        senders = sorted({a.call.user_id for a in attempts if isinstance(a.call, JobCall)})
        with self.postgres.connect() as db:
            stored = {
                str(job_id): (str(user_id), batch_name, status)
                for job_id, user_id, batch_name, status in db.execute(
                    "SELECT job_id, user_id, batch_name, status FROM jobs"
                    " WHERE user_id = ANY(%s::uuid[])",
                    [senders],
                )
            }
            spent = {
                (str(user_id), dependency): Decimal(total)
                for user_id, dependency, total in db.execute(
                    """
                    SELECT j.user_id, d.key, sum(d.value::bigint)
                      FROM jobs j, jsonb_each_text(j.dependencies) d
                     WHERE j.status = 'Accepted' AND j.user_id = ANY(%s::uuid[])
                     GROUP BY j.user_id, d.key
                    """,
                    [senders],
                )
            }
            buckets = db.execute(
                "SELECT user_id, dependency, capacity, refill_per_second, tokens_now"
                "  FROM token_buckets_now WHERE user_id = ANY(%s::uuid[])",
                [senders],
            ).fetchall()

        found = lost = rejected_unstored = 0
        for attempt in attempts:
            assert isinstance(attempt.call, JobCall)
            expected = {"202": "Accepted", "429": "Rejected"}.get(attempt.kind)
            if expected is None:
                continue
            job = stored.get(attempt.job_id or "")
            as_answered = job == (attempt.call.user_id, attempt.call.batch_name, expected)
            if expected == "Accepted":
                found += as_answered
                lost += not as_answered
            else:
                rejected_unstored += not as_answered
        result.accepted_in_db = found
        result.lost_jobs = lost
        self.check(lost == 0, f"{lost} jobs answered 202 are not stored as Accepted")
        self.check(
            rejected_unstored == 0, f"{rejected_unstored} jobs answered 429 not stored as Rejected"
        )

        elapsed = Decimal(ended_at_db - self.started_at_db)
        over = Decimal(0)
        for user_id, dependency, capacity, refill, tokens_now in buckets if bound_from_jobs else []:
            taken = spent.get((str(user_id), dependency), Decimal(0))
            over += max(Decimal(0), taken - (capacity + refill * elapsed))
            if refill == 0 and capacity - tokens_now != taken:
                self.violation(
                    f"bucket {dependency} of {user_id}: {capacity - tokens_now} tokens gone, "
                    f"but its stored Accepted jobs cost {taken}"
                )
        result.over_admitted = float(over)
        self.check(over == 0, f"{over} tokens over-admitted")

        # Decided and stored, yet answered 503 or not at all: the client cannot know whether
        # its job went in. Allowed (a commit whose acknowledgement is lost), but counted.
        unanswered = Counter(a.kind for a in attempts if a.kind not in NORMAL)
        stored_names = {batch_name for (_, batch_name, _) in stored.values()}
        stored_unanswered = Counter(
            a.kind for a in attempts if a.kind not in NORMAL and a.batch_name in stored_names
        )
        if stored_unanswered:
            self.note(
                f"stored although not answered 202/429: {dict(stored_unanswered)} "
                f"(of {dict(unanswered)})"
            )

    def stored_batch_names(self) -> set[str]:
        """The batch_name of every stored job (one per request in these scenarios)."""
        with self.postgres.connect() as db:
            return {name for (name,) in db.execute("SELECT batch_name FROM jobs")}


@contextlib.contextmanager
def _run(
    name: str, description: str, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[Run]:
    run = Run(name, description, log_dir, env)
    try:
        yield run
    finally:
        run.close()


def _retry_after_ok(answer: Attempt | Reply) -> bool:
    reply = answer.reply if isinstance(answer, Attempt) else answer
    value = {k.lower(): v for k, v in reply.headers.items()}.get("retry-after", "")
    return value.isdigit() and int(value) >= 1


def _recovery_s(attempts: Sequence[Attempt], since: float) -> float | None:
    """Seconds after `since` until the service answered only 202/429; None if it never did."""
    last_abnormal = max(
        (a.answered_at for a in attempts if a.kind not in NORMAL and a.answered_at > since),
        default=since,
    )
    if not any(a.kind in NORMAL and a.sent_at >= last_abnormal for a in attempts):
        return None
    return last_abnormal - since


def _check_recovery(run: Run, attempts: Sequence[Attempt], since: float, what: str) -> None:
    recovery = _recovery_s(attempts, since)
    if recovery is None:
        watched = max((a.answered_at for a in attempts), default=since) - since
        run.violation(f"no run of 202/429 answers in the {watched:.1f} s after {what}")
    else:
        run.note(f"normal answers again {recovery:.2f} s after {what}")
        run.check(
            recovery <= RECOVERY_LIMIT_S,
            f"normal answers came back {recovery:.2f} s after {what} (limit {RECOVERY_LIMIT_S} s)",
        )


def _check_first_answers_after_idle_restart(run: Run, restart: Callable[[], None]) -> None:
    """Restart Postgres while the service is idle: the very first requests must succeed.

    Every worker's pool still holds connections to the old server; the pool's check must find
    them broken and connect again before a request uses one.
    """
    time.sleep(0.5)
    restart()
    back = run.clock.now()
    first = len(run.attempts)
    # Three requests per worker and then some, so that every worker meets its stale pool.
    with run.load(threads=WORKERS):
        time.sleep(2)
    after = [a for a in run.attempts[first:] if isinstance(a.call, JobCall)]
    abnormal = Counter(a.kind for a in after if a.kind not in NORMAL)
    run.note(
        f"after an idle restart: {len(after)} requests, {dict(Counter(a.kind for a in after))}"
    )
    run.check(len(after) >= 3 * WORKERS, f"too few requests after the idle restart: {len(after)}")
    run.check(
        not abnormal,
        f"the first requests after an idle restart failed: {dict(abnormal)} "
        f"(restarted at {back:.1f} s)",
    )


def postgres_fast_restart(log_dir: Path) -> ScenarioResult:
    """Postgres stopped (fast) and started again under load from 16 clients."""
    with _run(
        "postgres-fast-restart",
        "pg_ctl stop -m fast + start under load from 16 clients, then again while idle",
        log_dir,
    ) as run:
        with run.load():
            time.sleep(2)
            run.postgres.stop()
            run.postgres.start()
            back = run.clock.now()
            time.sleep(4)
        _check_recovery(run, run.job_attempts(), back, "Postgres was back")

        def restart() -> None:
            run.postgres.stop()
            run.postgres.start()

        _check_first_answers_after_idle_restart(run, restart)
        return run.finish()


def postgres_crash_restart(log_dir: Path) -> ScenarioResult:
    """The postmaster killed with SIGKILL and started again under load from 16 clients."""
    with _run(
        "postgres-kill-9",
        "kill -9 of the postmaster + start (crash recovery) under load, then again while idle",
        log_dir,
    ) as run:
        with run.load():
            time.sleep(2)
            killed = run.clock.now()
            run.postgres.kill()
            run.postgres.start()
            back = run.clock.now()
            run.note(f"Postgres was back {back - killed:.2f} s after the kill")
            time.sleep(4)
        _check_recovery(run, run.job_attempts(), back, "Postgres was back")

        def restart() -> None:
            run.postgres.kill()
            run.postgres.start()

        _check_first_answers_after_idle_restart(run, restart)
        return run.finish()


def worker_killed(log_dir: Path) -> ScenarioResult:
    """Two gunicorn workers killed with SIGKILL, one after the other, under load."""
    kills = 2
    with _run(
        "worker-sigkill",
        f"SIGKILL to {kills} gunicorn workers (2 s apart) under load from 16 clients",
        log_dir,
    ) as run:
        with run.load():
            for _ in range(kills):
                time.sleep(2)
                os.kill(run.service.worker_pids()[0], signal.SIGKILL)
            last_kill = run.clock.now()
            time.sleep(3)
        attempts = run.job_attempts()
        result = run.finish(allowed_failures=[DROPPED])
        # A killed worker takes down the connections it had accepted (in its threads or
        # waiting for one): at most one per client per kill. Every other request is answered.
        dropped = [a for a in attempts if a.kind == DROPPED]
        run.check(
            len(dropped) <= kills * CLIENTS,
            f"{len(dropped)} connections dropped, more than the {kills * CLIENTS} the killed "
            "workers can have held",
        )
        _check_recovery(run, attempts, last_kill, "the last kill")
        run.check(
            len(run.service.worker_pids()) == WORKERS,
            "gunicorn did not replace the killed workers",
        )
        return result


def graceful_shutdown(log_dir: Path) -> ScenarioResult:
    """SIGTERM to the gunicorn master while requests are in flight and more keep coming."""
    with _run(
        "gunicorn-sigterm",
        "SIGTERM to the gunicorn master under load, with requests in flight on a locked bucket",
        log_dir,
    ) as run:
        alice = run.users["alice"]
        with run.load():
            time.sleep(2)
            # Alice's requests wait on this lock (well within lock_timeout), so requests are
            # surely in flight when the signal comes, and finish only after it.
            with _bucket_lock(run.postgres, alice):
                time.sleep(0.5)
                terminated = run.clock.now()
                run.service.process.send_signal(signal.SIGTERM)
                time.sleep(0.5)
            exit_status = run.service.process.wait(timeout=SERVICE_STOP_TIMEOUT_S)
            exited = run.clock.now()
            # Keep sending a little: these find nothing listening.
            time.sleep(0.5)
        run.note(f"gunicorn exited {exited - terminated:.2f} s after SIGTERM, status {exit_status}")
        run.check(exit_status == 0, f"gunicorn exited with status {exit_status}")
        attempts = run.job_attempts()
        result = run.finish(allowed_failures=[REFUSED, DROPPED])

        refused_early = [a for a in attempts if a.kind == REFUSED and a.sent_at < terminated]
        run.check(not refused_early, f"{len(refused_early)} refused before SIGTERM")
        # A connection a worker accepted (its request read and decided) must get its answer;
        # one reset without being processed left no job behind.
        stored = run.stored_batch_names()
        dropped = [a for a in attempts if a.kind == DROPPED]
        processed = [a for a in dropped if a.batch_name in stored]
        run.check(
            not processed, f"{len(processed)} requests decided, then their connection dropped"
        )
        waiting = [a for a in attempts if a.sent_at < terminated < a.answered_at]
        answered = Counter(a.kind for a in waiting if a.kind in NORMAL)
        run.note(
            f"{len(waiting)} requests sent before SIGTERM were still unanswered at SIGTERM: "
            f"{dict(Counter(a.kind for a in waiting))}"
        )
        # Every worker was handling one of them (waiting on alice's lock): those must finish.
        run.check(
            answered.total() >= WORKERS,
            f"only {answered.total()} requests in flight at SIGTERM got a real answer",
        )
        if len(dropped) > len(processed):
            run.note(
                f"{len(dropped) - len(processed)} connections reset unprocessed: queued in the "
                "listen backlog, never accepted by a worker, nothing stored for them"
            )
        _check_no_session_left(run)
        return result


def _check_no_session_left(run: Run) -> None:
    """The workers closed their pools: no session of the service, none idle in transaction."""
    deadline = time.monotonic() + 2
    with run.postgres.connect() as db:
        while True:
            row = db.execute(
                "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%%')"
                "  FROM pg_stat_activity WHERE application_name = 'janus'"
            ).fetchone()
            assert row is not None
            if row[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    run.check(row[1] == 0, f"{row[1]} sessions left idle in transaction")
    run.check(row[0] == 0, f"{row[0]} sessions of the stopped service still open")


@contextlib.contextmanager
def _bucket_lock(postgres: FaultPostgres, user_id: UUID) -> Iterator[None]:
    """Hold every bucket row of `user_id` FOR UPDATE in an open transaction of our own."""
    with postgres.connect() as conn, conn.transaction():
        conn.execute(
            "SELECT * FROM token_buckets WHERE user_id = %s ORDER BY dependency FOR UPDATE",
            [user_id],
        )
        yield


def bucket_locked(log_dir: Path) -> ScenarioResult:
    """Another session holds one user's bucket rows for 3 s: that user gets 503, others don't."""
    with _run(
        "bucket-lock",
        f"another session holds alice's buckets FOR UPDATE for 3 s (lock_timeout "
        f"{LOCK_TIMEOUT_MS} ms) under load from {2 * WORKERS} clients; bob carries on",
        log_dir,
        env={"JANUS_LOCK_TIMEOUT_MS": str(LOCK_TIMEOUT_MS)},
    ) as run:
        # Two clients per worker, half of them alice's: enough to queue behind her 503s.
        with run.load(threads=2 * WORKERS):
            time.sleep(1.5)
            with _bucket_lock(run.postgres, run.users["alice"]):
                locked = run.clock.now()
                time.sleep(3)
                # Stamped before the lock's COMMIT: a request waiting on the lock gets it at
                # the commit and may be answered 202 before a stamp taken after it.
                released = run.clock.now()
            time.sleep(2)
        attempts = run.job_attempts()
        result = run.finish()
        during = [a for a in attempts if locked < a.sent_at and a.answered_at < released]
        alice = [a for a in during if a.user == "alice"]
        bob = [a for a in during if a.user == "bob"]
        alice_kinds = Counter(a.kind for a in alice)
        run.note(
            f"while locked: alice {dict(alice_kinds)}, bob {dict(Counter(a.kind for a in bob))}"
        )
        run.check(bool(alice), "none of alice's requests was answered while she was locked")
        run.check(set(alice_kinds) <= {"503"}, f"alice while locked: {dict(alice_kinds)}")
        if alice:
            fastest = min(a.latency for a in alice)
            slowest = max(a.latency for a in alice)
            run.note(f"alice's 503s took {fastest:.2f} to {slowest:.2f} s")
            # The service waited for the lock (lock_timeout applies), and not much longer.
            run.check(
                fastest >= LOCK_TIMEOUT_MS / 1000 * 0.9,
                f"alice got a 503 after {fastest:.2f} s, before lock_timeout {LOCK_TIMEOUT_MS} ms",
            )
            run.check(
                slowest <= OUTAGE_ANSWER_LIMIT_S,
                f"alice waited {slowest:.2f} s for a 503 (limit {OUTAGE_ANSWER_LIMIT_S} s)",
            )
        # Each of alice's requests holds a sync worker for lock_timeout, so bob queues
        # behind them: slower, but answered.
        bob_slowest = max((a.latency for a in bob), default=0.0)
        run.note(f"bob's slowest answer while alice was locked: {bob_slowest:.2f} s")
        run.check(bool(bob), "none of bob's requests was answered while alice was locked")
        run.check(
            {a.kind for a in bob} <= NORMAL,
            f"bob while alice was locked: {dict(Counter(a.kind for a in bob))}",
        )
        _check_recovery(
            run,
            [a for a in attempts if a.user == "alice"],
            released,
            "the lock was released",
        )
        return result


def postgres_down(log_dir: Path) -> ScenarioResult:
    """Postgres stopped for 8 s: 503 fast, /health up, /health/ready down, then back."""
    down_for = 8
    with _run(
        "postgres-down",
        f"Postgres stopped for {down_for} s under load from {WORKERS - 1} clients and a prober "
        "of /health and /health/ready",
        log_dir,
    ) as run:

        def probe(number: int, thread_index: int) -> Probe:
            return Probe(("/health", "/health/ready")[number % 2])

        # One client fewer than workers, plus the prober: nobody queues behind another.
        with run.load(threads=WORKERS - 1), run.load(probe, threads=1):
            time.sleep(1.5)
            stopping = run.clock.now()
            run.postgres.stop()
            stopped = run.clock.now()
            time.sleep(down_for)
            # Postgres accepts connections a while before start() returns (pg_ctl polls for
            # that, then the database is looked up): only answers before it count as "down".
            restarting = run.clock.now()
            run.postgres.start()
            back = run.clock.now()
            time.sleep(4)
        jobs = run.job_attempts()
        probes = [a for a in run.attempts if isinstance(a.call, Probe)]
        result = run.finish()
        # A 200 of /health/ready rests on a check begun less than READY_FOR_S before it, and
        # the last check Postgres answered began before `stopped`: that 200 may stand until
        # READY_FOR_S later, so readiness is held to 503 only from then on.
        down_from = {"jobs": stopped, "/health/ready": stopped + READY_FOR_S, "/health": stopped}
        by_route: dict[str, list[Attempt]] = {"jobs": jobs, "/health/ready": [], "/health": []}
        for attempt in probes:
            by_route[attempt.path].append(attempt)
        for route, answers in by_route.items():
            by_route[route] = [
                a for a in answers if down_from[route] < a.sent_at and a.answered_at < restarting
            ]
        standing = [
            a
            for a in probes
            if a.path == "/health/ready" and stopped < a.sent_at <= stopped + READY_FOR_S
        ]
        run.note(
            f"/health/ready in the {READY_FOR_S:g} s after the stop: "
            f"{dict(Counter(a.kind for a in standing))}"
        )
        for route, expected in (("jobs", "503"), ("/health/ready", "503"), ("/health", "200")):
            answers = by_route[route]
            kinds = Counter(a.kind for a in answers)
            slowest = max((a.latency for a in answers), default=0.0)
            run.note(f"while down, {route}: {dict(kinds)}, slowest {slowest:.2f} s")
            run.check(bool(answers) and set(kinds) == {expected}, f"{route} while down: {kinds}")
            run.check(
                slowest <= OUTAGE_ANSWER_LIMIT_S,
                f"{route} took {slowest:.2f} s while down (limit {OUTAGE_ANSWER_LIMIT_S} s)",
            )
        ready_before = [a for a in probes if a.path == "/health/ready" and a.answered_at < stopping]
        run.check(
            bool(ready_before) and {a.kind for a in ready_before} == {"200"},
            f"/health/ready before the outage: {Counter(a.kind for a in ready_before)}",
        )
        _check_recovery(run, jobs, back, "Postgres was back")
        ready_after = [
            a for a in probes if a.path == "/health/ready" and a.sent_at > back + RECOVERY_LIMIT_S
        ]
        run.check(
            bool(ready_after) and {a.kind for a in ready_after} == {"200"},
            f"/health/ready after recovery: {Counter(a.kind for a in ready_after)}",
        )
        return result


SLOW_CLIENTS = 32
# "Normal clients keep getting answers within a second" while the slow ones hold on.
NORMAL_ANSWER_LIMIT_S = 1.0


def _slow_clients(run: Run, threads: int, stopping: threading.Event) -> Iterator[list[str]]:
    """`threads` clients trickling job requests one byte at a time, one after another."""
    outcomes: list[str] = []
    lock = threading.Lock()
    user_id = str(run.users[USERS[0]])
    numbers = itertools.count()

    def client(index: int) -> None:
        while not stopping.is_set():
            number = next(numbers)
            outcome = trickle(run.service.url, user_id, f"slow-{number}", head_too=number % 2 == 0)
            with lock:
                outcomes.append(outcome)

    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for thread in clients:
        thread.start()
    try:
        yield outcomes
    finally:
        stopping.set()
        for thread in clients:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)


def slow_clients(log_dir: Path) -> ScenarioResult:
    """32 clients trickle their requests a byte at a time while normal clients are served."""
    read_timeout_s = 10
    with _run(
        "slow-clients",
        f"{SLOW_CLIENTS} clients trickling requests (head or body) a byte per "
        f"{TRICKLE_INTERVAL_S:g} s, beside {WORKERS} normal clients and a /health prober",
        log_dir,
    ) as run:

        def probe(number: int, thread_index: int) -> Probe:
            return Probe("/health")

        stopping = threading.Event()
        with contextlib.contextmanager(_slow_clients)(run, SLOW_CLIENTS, stopping) as outcomes:
            # Let every slow client take hold of a connection before the others start.
            time.sleep(1)
            with run.load(threads=WORKERS), run.load(probe, threads=1):
                time.sleep(read_timeout_s * 1.5)
            stopping.set()
        result = run.finish()
        kinds = Counter(outcomes)
        run.note(f"slow requests ended: {dict(kinds)}")
        run.check(bool(outcomes), "no slow request ended while the scenario ran")
        run.check(
            set(kinds) <= {"408", CLOSED},
            f"slow requests ended otherwise than 408 or a closed connection: {dict(kinds)}",
        )
        stored_slow = {name for name in run.stored_batch_names() if name.startswith("slow-")}
        run.check(not stored_slow, f"{len(stored_slow)} trickled requests were decided")
        for what, answers in (
            ("jobs", run.job_attempts()),
            ("/health", [a for a in run.attempts if isinstance(a.call, Probe)]),
        ):
            slowest = max((a.latency for a in answers), default=0.0)
            run.note(f"{what}: {len(answers)} answered, slowest {slowest:.2f} s")
            run.check(bool(answers), f"no {what} request was answered")
            run.check(
                slowest <= NORMAL_ANSWER_LIMIT_S,
                f"a {what} request took {slowest:.2f} s (limit {NORMAL_ANSWER_LIMIT_S} s)",
            )
        return result


QUEUE_WORKERS = 4
# More than one restart, so that more claims and completions meet one mid-flight.
QUEUE_RESTARTS = 3
# After the producers stop, the workers get this long to empty the queue, the jobs whose
# completion was lost in the restart included (their lease, LEASE_S, must expire first).
DRAIN_LIMIT_S = 12


def workers_during_restart(log_dir: Path) -> ScenarioResult:
    """Workers claim and complete jobs, producers admit more, while Postgres restarts.

    Afterwards every accepted job is completed exactly once, by the worker it was
    acknowledged to and under a lease a claim handed out, or is still queued or running
    (claimable once its lease expires); none is failed or gone.
    """
    producers = CLIENTS // 2
    with _run(
        "workers-during-restart",
        f"pg_ctl stop -m fast + start, {QUEUE_RESTARTS} times 1.5 s apart, while "
        f"{QUEUE_WORKERS} workers claim {CLAIM_LIMIT} jobs "
        f"at a time (lease {LEASE_S} s) and complete them, half in batches, and {producers} "
        "producers admit more; then the queue is drained",
        log_dir,
    ) as run:
        pool = WorkerPool(
            run.service.url, [str(run.users[name]) for name in USERS], run.clock, QUEUE_WORKERS
        ).start()
        try:
            with run.load(threads=producers):
                for _ in range(QUEUE_RESTARTS):
                    time.sleep(1.5)
                    run.postgres.stop()
                    run.postgres.start()
                    back = run.clock.now()
                time.sleep(4)
            producers_stopped = run.clock.now()
            drained = _wait_for_drain(run, DRAIN_LIMIT_S)
        finally:
            log = pool.stop()
        result = run.finish()
        _check_recovery(run, run.job_attempts(), back, "Postgres was back the last time")
        _check_worker_answers(run, log)
        _audit_queue(run, log)
        if drained is None:
            run.note(f"the queue was not empty {DRAIN_LIMIT_S} s after the producers stopped")
        else:
            run.note(f"queue empty {drained - producers_stopped:.2f} s after the producers stopped")
        acked_after = [
            a for a in log.answers if a.route != "claim" and a.sent_at > back and a.reply.ok
        ]
        run.check(bool(acked_after), "no worker completed a job after Postgres was back")
        if acked_after:
            first = min(a.answered_at for a in acked_after)
            run.note(f"workers completing again {first - back:.2f} s after Postgres was back")
        return result


def _wait_for_drain(
    run: Run, limit_s: float, states: Sequence[str] = ("queued", "running")
) -> float | None:
    """Wait until no job is in one of `states`; when that was (None: not within)."""
    deadline = time.monotonic() + limit_s
    with run.postgres.connect() as db:
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT count(*) FROM jobs WHERE state = ANY(%s)", [list(states)]
            ).fetchone()
            if row is not None and row[0] == 0:
                return run.clock.now()
            time.sleep(0.2)
    return None


def _check_worker_answers(run: Run, log: WorkerLog) -> None:
    """The shared invariants on the workers' answers: no 5xx but 503, Retry-After, no hang."""
    run.note(f"workers' answers: {log.summary()}; completions given up: {log.given_up}")
    statuses = [a.reply.status for a in log.answers]
    server_errors = Counter(str(s) for s in statuses if s is not None and s >= 500 and s != 503)
    run.check(not server_errors, f"workers got server errors other than 503: {server_errors}")
    bare = [a for a in log.answers if a.kind == "503" and not _retry_after_ok(a.reply)]
    run.check(not bare, f"{len(bare)} answers 503 to workers lack Retry-After >= 1")
    failures = Counter(a.kind for a in log.answers if a.reply.status is None)
    run.check(not failures, f"workers' connection failures: {dict(failures)}")
    conflicts = Counter(a.kind for a in log.answers if a.route == "complete" and a.kind == "409")
    if conflicts:
        # A retried completion whose first try committed: the lease had ended.
        run.note(
            f"single completions answered 409 (a retry of one that had committed): {conflicts}"
        )


def _audit_queue(run: Run, log: WorkerLog) -> None:
    """Every accepted job completed exactly once, by the worker told so, or still claimable."""
    with run.postgres.connect() as db:
        jobs = {
            str(job_id): (state, attempts, result)
            for job_id, state, attempts, result in db.execute(
                "SELECT job_id, state, attempts, result FROM jobs WHERE status = 'Accepted'"
            )
        }
    leases = {(lease.job_id, lease.attempt): lease for lease in log.leases}
    run.check(
        len(leases) == len(log.leases),
        f"{len(log.leases) - len(leases)} claims handed a job at an attempt already leased",
    )
    tokens = {lease.lease_token for lease in log.leases}
    run.check(len(tokens) == len(log.leases), "a lease token was handed out twice")

    acked = Counter(job_id for job_id, _ in log.acknowledged)
    twice = [job_id for job_id, count in acked.items() if count > 1]
    run.check(not twice, f"{len(twice)} jobs acknowledged completed twice, e.g. {twice[:3]}")
    acked_by = dict(log.acknowledged)
    states = Counter(state for state, _, _ in jobs.values())
    run.note(f"accepted jobs by state: {dict(states)}")
    run.check(
        not set(states) - {"completed", "queued", "running"},
        f"accepted jobs neither completed nor claimable: {dict(states)}",
    )

    wrong, unacked, retaken = [], 0, 0
    for job_id, worker in acked_by.items():
        state, _, result = jobs.get(job_id, (None, None, None))
        if state != "completed" or not isinstance(result, dict) or result["worker"] != worker:
            wrong.append(f"{job_id} acknowledged to worker {worker}: {state} {result}")
    for job_id, (state, attempts, result) in jobs.items():
        if state != "completed":
            continue
        # The result names the lease it was completed under: a claim must have handed out
        # exactly that lease, and it must be the job's last attempt.
        lease = leases.get((job_id, result["attempt"])) if isinstance(result, dict) else None
        if (
            lease is None
            or lease.lease_token != result["lease_token"]
            or lease.worker != result["worker"]
            or lease.attempt != attempts
        ):
            wrong.append(
                f"{job_id} (attempt {attempts}) completed under a lease no claim gave: {result}"
            )
            continue
        unacked += job_id not in acked_by
        retaken += result["attempt"] > 1
    run.check(not wrong, f"{len(wrong)} completions do not match their lease: {wrong[:3]}")
    run.note(
        f"{len(acked_by)} completions acknowledged to workers; {unacked} committed whose "
        f"answer was lost; {retaken} completed on a later attempt (their lease had expired)"
    )


def pacing_under_load(log_dir: Path) -> ScenarioResult:
    """Wait-mode jobs at 10x the refill while workers claim, fail and complete (pacing.py)."""
    # pacing.py builds on this module's Run: imported here, not at the top, to avoid a cycle.
    from tests.faults import pacing

    return pacing.pacing_under_load(log_dir)


def fair_share_reads(log_dir: Path) -> ScenarioResult:
    """A user of 1,000,000 jobs reads scanning filters beside another's jobs (fair_share.py)."""
    from tests.faults import fair_share

    return fair_share.fair_share_under_reads(log_dir)


def postgres_restart_via_pgbouncer(log_dir: Path) -> ScenarioResult:
    """postgres-fast-restart with the service behind PgBouncer (pgbouncer.py)."""
    from tests.faults import pgbouncer

    return pgbouncer.postgres_restart_via_pgbouncer(log_dir)


def deploy_under_load(log_dir: Path) -> ScenarioResult:
    """The previous release under load while this one migrates and takes over (deploy.py)."""
    from tests.faults import deploy

    return deploy.deploy_under_load(log_dir)


SCENARIOS: dict[str, Callable[[Path], ScenarioResult]] = {
    "postgres-fast-restart": postgres_fast_restart,
    "postgres-kill-9": postgres_crash_restart,
    "worker-sigkill": worker_killed,
    "gunicorn-sigterm": graceful_shutdown,
    "bucket-lock": bucket_locked,
    "postgres-down": postgres_down,
    "slow-clients": slow_clients,
    "workers-during-restart": workers_during_restart,
    "pacing-under-load": pacing_under_load,
    "fair-share-reads": fair_share_reads,
    "postgres-restart-via-pgbouncer": postgres_restart_via_pgbouncer,
    "deploy-under-load": deploy_under_load,
}

COLUMNS = (
    ("scenario", 30),
    ("sent", 6),
    ("202", 5),
    ("429", 5),
    ("503", 5),
    ("other", 6),
    ("refused", 8),
    ("dropped", 8),
    ("timeout", 8),
    ("in DB", 6),
    ("over-admitted", 14),
    ("lost", 5),
)


def format_report(results: Sequence[ScenarioResult]) -> str:
    """The results as a table, then each scenario's notes and violations."""
    lines = [_row([title for title, _ in COLUMNS])]
    for result in results:
        counts = result.answers
        shown = {"202", "429", "503", REFUSED, DROPPED, TIMEOUT}
        other = sum(n for kind, n in counts.items() if kind not in shown)
        cells = [
            result.name,
            result.sent,
            counts["202"],
            counts["429"],
            counts["503"],
            other,
            counts[REFUSED],
            counts[DROPPED],
            counts[TIMEOUT],
            result.accepted_in_db,
            f"{result.over_admitted:g}",
            result.lost_jobs,
        ]
        lines.append(_row(cells))
    for result in results:
        lines.append("")
        verdict = "ok" if not result.violations else f"{len(result.violations)} VIOLATIONS"
        lines.append(f"{result.name}: {result.description} [{verdict}]")
        lines.extend(f"  - {note}" for note in result.notes)
        lines.extend(f"  ! {violation}" for violation in result.violations)
    return "\n".join(lines)


def _row(cells: Sequence[object]) -> str:
    """The scenario name left-aligned, the numbers right-aligned, in COLUMNS' widths."""
    return "  ".join(
        f"{cell!s:<{width}}" if index == 0 else f"{cell!s:>{width}}"
        for index, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
    )
