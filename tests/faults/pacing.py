"""Pacing under load (issue 24's done-when), checked from the database afterwards.

Producers submit jobs, most in wait mode, at ten times their buckets' refill, with mixed
priorities and two tenants on the same dependencies, while workers claim, fail one hand-out
in ten with retry and complete the rest (no actual costs: nothing comes back to a bucket).
An audit trigger, installed in the scenario's own database before the load, records every
insert and update of `jobs` on the database clock; from it:

- tokens taken (a job accepted at once: at its insert; a waiting job or a retry: when it goes
  from waiting to running) over every window from the start are at most
  capacity + refill x window, per bucket;
- no job is handed out while a waiting job of the same or a higher priority that shares a
  dependency with it, and was in line before it, is still in line;
- every accepted job ends completed, failed, expired or cancelled, once, none lost, none
  leased twice at a time, and every bucket's line counts are back to 0.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psycopg

from tests.faults.harness import JobCall
from tests.faults.scenarios import Run, ScenarioResult, _check_worker_answers, _wait_for_drain
from tests.faults.workers import LEASE_S, WorkerLog, WorkerPool

# Two dependencies, one bucket each, of one user; a job calls one or both.
FIRST, SECOND = "openai", "stripe"
CAPACITY, REFILL_PER_SECOND = 20, 10
PACING_BUCKETS = {
    FIRST: {"capacity": CAPACITY, "refill_per_second": REFILL_PER_SECOND},
    SECOND: {"capacity": CAPACITY, "refill_per_second": REFILL_PER_SECOND},
}
# Each shape takes 1 token a job from each bucket on average: at SUBMIT_PER_S jobs a second,
# ten times each bucket's refill.
JOB_SHAPES = ({FIRST: 1, SECOND: 1}, {FIRST: 2}, {SECOND: 2})
PRODUCERS = 8
SUBMIT_PER_S = 100
# Each producer sends on this many connections at once: a request waits for its bucket's lock
# while a claim walks the line, and one connection at a time would fall behind the rate.
PRODUCER_CONNECTIONS = 4
LOAD_S = 60
PRIORITIES = (2, 5, 5, 8)
TENANTS = ("tenant-x", "tenant-y")
# One job in this many is sent in reject mode (the config's default).
REJECT_ONE_IN = 10
# Short enough that the workers, at the refill, cannot hand everything out: some expire.
MAX_WAIT_S = 5
PACING_WORKERS = 4
FAIL_ONE_IN = 10
# The default reserve, so that priorities matter; retries wait 1 s to 2 s.
PACING_CONFIG: dict[str, Any] = {"priority_reserve": 0.2, "retry_backoff": (1, 2)}
# After the producers stop: every waiting job is handed out or expires within MAX_WAIT_S, a
# retry waits its backoff and then its turn.
PACING_DRAIN_LIMIT_S = 30
FINAL_STATES = {"completed", "failed", "expired", "cancelled"}
UNFINISHED_STATES = ("queued", "waiting", "running")
# Numeric noise in the window sums: the amounts are whole tokens, the refill exact.
WINDOW_EPSILON = 1e-6

AUDIT_SQL = """
CREATE TABLE pacing_audit (
    seq             bigserial PRIMARY KEY,
    job_id          uuid NOT NULL,
    user_id         uuid NOT NULL,
    old_state       text,
    new_state       text,
    old_in_line_at  timestamptz,
    new_in_line_at  timestamptz,
    at              timestamptz NOT NULL,
    priority        smallint NOT NULL,
    dependencies    jsonb NOT NULL,
    tenant_id       text,
    attempts        integer,
    lease_token     uuid,
    lease_expires_at timestamptz,
    xact            xid8 NOT NULL
);
CREATE INDEX ON pacing_audit (job_id, seq);

CREATE FUNCTION pacing_audit_row() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO pacing_audit (job_id, user_id, old_state, new_state, old_in_line_at,
                              new_in_line_at, at, priority, dependencies, tenant_id,
                              attempts, lease_token, lease_expires_at, xact)
    VALUES (NEW.job_id, NEW.user_id,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.in_line_at END, NEW.in_line_at,
            clock_timestamp(), NEW.priority, NEW.dependencies, NEW.tenant_id,
            NEW.attempts, NEW.lease_token, NEW.lease_expires_at, pg_current_xact_id());
    RETURN NULL;
END
$fn$;

CREATE TRIGGER pacing_audit AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION pacing_audit_row();
"""

# Tokens taken, per bucket, in time order: at admission for a job accepted at once (inserted
# queued), at hand-out for a waiting one or a retry (waiting -> running). Each at the moment
# it was decided, the moment the bucket was refilled to under its lock: admission's is the
# job id's (new_job_id(), read just after it), a claim's the start of the lease it gave
# (lease_expires_at - lease_seconds). The audit row's own time comes later, by as much as
# the rest of a claim's walk: beside the bound, the worst margin by it is noted too.
DEBITS_SQL = """
SELECT a.user_id, d.key, extract(epoch FROM a.at)::float8, d.value::bigint, a.job_id,
       extract(epoch FROM CASE WHEN a.old_state IS NULL THEN job_decided_at(a.job_id)
                               ELSE a.lease_expires_at - make_interval(secs => %(lease_s)s)
                          END)::float8
  FROM pacing_audit a, jsonb_each_text(a.dependencies) d
 WHERE (a.old_state IS NULL AND a.new_state = 'queued')
    OR (a.old_state = 'waiting' AND a.new_state = 'running')
 ORDER BY a.user_id, d.key, a.at, a.seq
"""

# A stay in line runs from the audit row that set a job's in_line_at to the first later row
# of the job that changed it or left waiting.
STAYS_IN_LINE = """
WITH stays AS (
    SELECT e.job_id, e.user_id, e.at AS entered, e.new_in_line_at AS line_at, e.priority,
           e.dependencies,
           l.at AS left_at, l.xact AS left_in, l.new_state AS left_for
      FROM pacing_audit e
      LEFT JOIN LATERAL (
          SELECT x.at, x.xact, x.new_state FROM pacing_audit x
           WHERE x.job_id = e.job_id AND x.seq > e.seq
             AND (x.new_state IS DISTINCT FROM 'waiting'
                  OR x.new_in_line_at IS DISTINCT FROM e.new_in_line_at)
           ORDER BY x.seq LIMIT 1) l ON true
     WHERE e.new_state = 'waiting' AND e.new_in_line_at IS NOT NULL
       AND (e.old_state IS DISTINCT FROM 'waiting'
            OR e.old_in_line_at IS DISTINCT FROM e.new_in_line_at)
)"""
SHARES_A_DEPENDENCY = (
    "EXISTS (SELECT 1 FROM jsonb_object_keys(h.dependencies) k WHERE s.dependencies ? k)"
)

# Hand-outs made while a waiting job of the same or a higher priority, sharing a dependency
# and in line before the handed-out job, was still in line. The handed-out job's place is its
# line time if it waited, else its created_at, as hand_out_jobs() orders them.
OVERTAKEN_SQL = (
    STAYS_IN_LINE
    + """, handouts AS (
    SELECT h.job_id, h.user_id, h.at, h.xact, h.priority, h.dependencies, h.attempts,
           CASE WHEN h.old_state = 'waiting' THEN h.old_in_line_at
                ELSE (SELECT j.created_at FROM jobs j WHERE j.job_id = h.job_id) END AS line_at
      FROM pacing_audit h
     WHERE h.new_state = 'running' AND h.old_state IN ('queued', 'waiting')
)
SELECT h.job_id, h.at, h.priority, h.line_at, h.attempts,
       s.job_id, s.priority, s.line_at, s.entered, s.left_at
  FROM handouts h
  JOIN stays s
    ON s.user_id = h.user_id AND s.job_id <> h.job_id AND s.priority >= h.priority
   AND s.line_at < h.line_at AND s.entered < h.at
   AND (s.left_at IS NULL OR s.left_at > h.at)
   -- Handed out by the same claim: one moment (one UPDATE sets every hand-out of a claim, in
   -- no particular row order, so their audit times say nothing of the order).
   AND NOT (s.left_in = h.xact AND s.left_for = 'running')
   AND """
    + SHARES_A_DEPENDENCY
    + """
 ORDER BY h.at
"""
)

# Jobs accepted at once (inserted queued) while a waiting job of the same or a higher priority
# sharing a dependency was in line, having entered it in an earlier transaction (both hold the
# shared bucket's lock, so that one had committed). Same columns as OVERTAKEN_SQL's.
ADMITTED_PAST_LINE_SQL = (
    STAYS_IN_LINE
    + """
SELECT h.job_id, h.at, h.priority, h.at, h.attempts,
       s.job_id, s.priority, s.line_at, s.entered, s.left_at
  FROM pacing_audit h
  JOIN stays s
    ON s.user_id = h.user_id AND s.job_id <> h.job_id AND s.priority >= h.priority
   AND s.entered < h.at AND (s.left_at IS NULL OR s.left_at > h.at)
   AND NOT EXISTS (SELECT 1 FROM pacing_audit t WHERE t.job_id = s.job_id AND t.xact = h.xact)
   AND """
    + SHARES_A_DEPENDENCY
    + """
 WHERE h.old_state IS NULL AND h.new_state = 'queued'
 ORDER BY h.at
"""
)

# Moves the queue must never make: a job leased again while its lease ran (running ->
# running under another token), out of a final state, or from waiting to queued (a hand-out
# with no payment: no job of this scenario is free).
FORBIDDEN_MOVES_SQL = """
SELECT old_state, new_state, count(*), min(job_id::text)
  FROM pacing_audit
 WHERE (old_state = 'running' AND new_state = 'running')
    OR old_state IN ('completed', 'failed', 'expired', 'cancelled')
    OR (old_state = 'waiting' AND new_state = 'queued')
 GROUP BY old_state, new_state
"""


def install_audit(db: psycopg.Connection) -> None:
    """The audit table and its trigger on jobs, before any job is sent."""
    db.execute(AUDIT_SQL)


def pacing_under_load(log_dir: Path) -> ScenarioResult:
    """Wait-mode jobs at 10x the refill while workers claim, fail some with retry, complete."""
    description = (
        f"{PRODUCERS} producers ({PRODUCER_CONNECTIONS} connections each) send "
        f"{SUBMIT_PER_S} jobs/s for {LOAD_S} s (10x the refill of "
        f"2 buckets of capacity {CAPACITY}, refill {REFILL_PER_SECOND}/s; wait mode with max wait "
        f"{MAX_WAIT_S} s, 1 in {REJECT_ONE_IN} reject mode; priorities {PRIORITIES}; tenants "
        f"{', '.join(TENANTS)} on both) while {PACING_WORKERS} workers claim, fail 1 in "
        f"{FAIL_ONE_IN} with retry and complete the rest; then drained; audited by trigger"
    )
    run = Run(
        "pacing-under-load",
        description,
        log_dir,
        buckets=PACING_BUCKETS,
        config=PACING_CONFIG,
        before_load=install_audit,
        users=("alice",),
    )
    try:
        user_id = str(run.users["alice"])
        pool = WorkerPool(
            run.service.url, [user_id], run.clock, PACING_WORKERS, fail_one_in=FAIL_ONE_IN
        ).start()
        try:
            threads = PRODUCERS * PRODUCER_CONNECTIONS
            with run.load(_paced_jobs(run, user_id, threads), threads=threads):
                time.sleep(LOAD_S)
            load_ended_at_db = run.postgres.clock()
            producers_stopped = run.clock.now()
            drained = _wait_for_drain(run, PACING_DRAIN_LIMIT_S, UNFINISHED_STATES)
        finally:
            log = pool.stop()
        result = run.finish(bound_from_jobs=False)
        _check_worker_answers(run, log)
        if drained is None:
            run.violation(f"jobs still unfinished {PACING_DRAIN_LIMIT_S} s after the producers")
        else:
            run.note(f"every job finished {drained - producers_stopped:.1f} s after the producers")
        _audit_pacing(run, log, load_ended_at_db)
        return result
    finally:
        run.close()


def _paced_jobs(run: Run, user_id: str, threads: int) -> Any:
    """Job calls at SUBMIT_PER_S in all from `threads` threads, each on its own schedule."""
    started = time.monotonic()
    sent_by_thread: Counter[int] = Counter()
    lock = threading.Lock()

    def make_call(number: int, thread_index: int) -> JobCall:
        with lock:
            turn = sent_by_thread[thread_index]
            sent_by_thread[thread_index] += 1
        due = started + (turn * threads + thread_index) / SUBMIT_PER_S
        time.sleep(max(0.0, due - time.monotonic()))
        pick = random.Random(number)
        extra: dict[str, Any] = {}
        if number % REJECT_ONE_IN:
            extra = {"when_limited": "wait", "max_wait_seconds": MAX_WAIT_S}
        return JobCall(
            user="alice",
            user_id=user_id,
            path="/system/jobs",
            batch_name=f"request-{number}",
            dependencies=JOB_SHAPES[number % len(JOB_SHAPES)],
            priority=pick.choice(PRIORITIES),
            tenant_id=pick.choice(TENANTS),
            extra=extra,
        )

    return make_call


def _audit_pacing(run: Run, log: WorkerLog, load_ended_at_db: float) -> None:
    """The checks of the module's docstring, and what happened, as notes."""
    _note_answers(run)
    with run.postgres.connect() as db:
        _check_windows(run, db, load_ended_at_db)
        _check_line_order(run, db)
        _check_endings(run, db, log)


def _note_answers(run: Run) -> None:
    attempts = run.job_attempts()
    if attempts:
        latencies = sorted(a.latency for a in attempts)
        span = attempts[-1].sent_at - attempts[0].sent_at
        run.note(
            f"sent {len(attempts)} jobs in {span:.1f} s ({len(attempts) / span:.1f}/s, paced at "
            f"{SUBMIT_PER_S}/s); answered in {_percentile_ms(latencies, 50)} ms (p50), "
            f"{_percentile_ms(latencies, 99)} ms (p99)"
        )
    kinds: Counter[str] = Counter()
    for attempt in attempts:
        call = attempt.call
        waits = isinstance(call, JobCall) and call.extra.get("when_limited") == "wait"
        body = attempt.reply.body if isinstance(attempt.reply.body, dict) else {}
        if attempt.kind == "202":
            kinds["waited" if body.get("state") == "waiting" else "accepted at once"] += 1
        else:
            kinds[f"{attempt.kind} ({'wait' if waits else 'reject'} mode)"] += 1
    run.note(f"answers: {dict(kinds)}")
    # A 503 is no decision (the shared invariants hold it to Retry-After): only a refusal is.
    refused_waiting = kinds["429 (wait mode)"]
    run.check(refused_waiting == 0, f"{refused_waiting} wait-mode jobs were refused: {kinds}")


def _check_windows(run: Run, db: psycopg.Connection, load_ended_at_db: float) -> None:
    """Tokens taken over every window from the start: at most capacity + refill x window."""
    debits: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    by_audit: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    lag = 0.0
    for _, dependency, at, cost, job_id, decided in db.execute(DEBITS_SQL, {"lease_s": LEASE_S}):
        debits[dependency].append((decided, cost, str(job_id)))
        by_audit[dependency].append((at, cost, str(job_id)))
        lag = max(lag, at - decided)
    start = run.started_at_db
    for dependency in sorted(debits):
        limit = PACING_BUCKETS[dependency]
        capacity, refill = limit["capacity"], limit["refill_per_second"]
        taken = sorted(debits[dependency])
        excess, first, last = _worst_window(taken, start, capacity, refill)
        audit_excess, _, _ = _worst_window(by_audit[dependency], start, capacity, refill)
        load_s = load_ended_at_db - start
        in_load = sum(cost for at, cost, _ in taken if at <= load_ended_at_db)
        run.note(
            f"{dependency}: {sum(c for _, c, _ in taken)} tokens taken in {len(taken)} debits; "
            f"in the {load_s:.1f} s of load {(in_load - capacity) / load_s:.2f}/s beyond the "
            f"capacity (refill {refill}/s); worst window margin {-excess:.3f} tokens (from "
            f"{first} to {last}); by the audit rows' times {-audit_excess:.3f}"
        )
        run.result.over_admitted = max(run.result.over_admitted, excess)
        run.check(
            excess <= WINDOW_EPSILON,
            f"{dependency}: {excess:.3f} tokens over capacity + refill x window, from "
            f"{first} to the debit of job {last}",
        )
    run.note(f"audit rows written up to {lag * 1000:.0f} ms after their debit was decided")


def _worst_window(
    taken: list[tuple[float, int, str]], start: float, capacity: float, refill: float
) -> tuple[float, str, str]:
    """(tokens over capacity + refill x window, the window's first debit, its last) of the
    worst window of debits sorted by time, from the scenario's start or any debit.

    With P the sum before each debit, every window i..j is within the bound when
    P[j+1] - refill t_j + max(refill t_i - P[i]) <= capacity, the max over i <= j and the start.
    """
    best_from, best_value = "the start", refill * start
    worst = (float("-inf"), "", "")
    before = 0
    for at, cost, job_id in taken:
        if refill * at - before > best_value:
            best_value, best_from = refill * at - before, job_id
        before += cost
        excess = before - refill * at + best_value - capacity
        if excess > worst[0]:
            worst = (excess, best_from, job_id)
    return worst


def _check_line_order(run: Run, db: psycopg.Connection) -> None:
    """No hand-out while an earlier waiting job of the same or a higher priority waits."""
    admitted = db.execute(ADMITTED_PAST_LINE_SQL).fetchall()
    run.check(
        not admitted,
        f"{len(admitted)} jobs accepted at once past a waiting one: {_described(admitted)}",
    )
    overtaken = db.execute(OVERTAKEN_SQL).fetchall()
    handouts = db.execute(
        "SELECT old_state, count(*) FROM pacing_audit WHERE new_state = 'running'"
        " GROUP BY old_state"
    ).fetchall()
    run.note(f"hand-outs by the state they left: {dict(handouts)}")
    run.check(
        not overtaken,
        f"{len(overtaken)} hand-outs overtook a waiting job: {_described(overtaken)}",
    )
    for first in (admitted + overtaken)[:1]:
        for job_id in (first[0], first[5]):
            run.note(f"job {job_id}'s audit: {_history(db, job_id)}")


def _described(rows: list[Any]) -> list[str]:
    """The first three rows of OVERTAKEN_SQL or ADMITTED_PAST_LINE_SQL, as words."""
    return [
        f"job {row[0]} (priority {row[2]}, attempt {row[4]}, in line {row[3]:%H:%M:%S.%f}) "
        f"at {row[1]:%H:%M:%S.%f} while job {row[5]} (priority {row[6]}, in line "
        f"{row[7]:%H:%M:%S.%f}) waited"
        for row in rows[:3]
    ]


def _history(db: psycopg.Connection, job_id: Any) -> list[str]:
    """A job's audit rows, one line each: the move, when, its line time and transaction."""
    rows = db.execute(
        "SELECT old_state, new_state, at, new_in_line_at, priority, dependencies, tenant_id,"
        " attempts, xact FROM pacing_audit WHERE job_id = %s ORDER BY seq",
        [job_id],
    ).fetchall()
    return [
        f"{old}->{new} at {at:%H:%M:%S.%f} in line {line and f'{line:%H:%M:%S.%f}'} "
        f"p{priority} {dependencies} {tenant} attempts {attempts} xact {xact}"
        for old, new, at, line, priority, dependencies, tenant, attempts, xact in rows
    ]


def _check_endings(run: Run, db: psycopg.Connection, log: WorkerLog) -> None:
    """Every accepted job ended once, in a final state; no lease twice; lines empty."""
    states: dict[str, int] = dict(
        db.execute(
            "SELECT coalesce(state, 'none'), count(*) FROM jobs WHERE status = 'Accepted'"
            " GROUP BY 1"
        ).fetchall()
    )
    run.note(f"accepted jobs by state: {states}")
    run.check(set(states) <= FINAL_STATES, f"accepted jobs not in a final state: {states}")
    errors = db.execute(
        "SELECT state, error, count(*) FROM jobs WHERE state IN ('failed', 'expired')"
        " GROUP BY state, error"
    ).fetchall()
    run.note(f"why jobs failed or expired: {errors}")
    accepted = {a.job_id for a in run.job_attempts() if a.kind == "202"}
    stored = {
        str(job_id) for (job_id,) in db.execute("SELECT job_id FROM jobs WHERE status = 'Accepted'")
    }
    run.check(accepted <= stored, f"{len(accepted - stored)} jobs answered 202 are not stored")
    if stored - accepted:
        # Stored although answered 503 or not at all (the commit's answer lost): allowed.
        run.note(f"{len(stored - accepted)} jobs stored without a 202")
    for old, new, count, example in db.execute(FORBIDDEN_MOVES_SQL):
        run.violation(f"{count} moves {old} -> {new} (e.g. job {example})")
    ended_twice = db.execute(
        "SELECT count(*) FROM (SELECT job_id FROM pacing_audit"
        " WHERE new_state IN ('completed', 'failed', 'expired', 'cancelled')"
        " GROUP BY job_id HAVING count(*) > 1) twice"
    ).fetchone()
    run.check(ended_twice == (0,), f"{ended_twice} jobs ended twice")
    leases = Counter((lease.job_id, lease.attempt) for lease in log.leases)
    run.check(max(leases.values(), default=1) == 1, "a job was leased twice at one attempt")
    tokens = Counter(lease.lease_token for lease in log.leases)
    run.check(max(tokens.values(), default=1) == 1, "a lease token was handed out twice")
    lines = db.execute(
        "SELECT dependency, line_jobs, line_tokens FROM token_buckets"
        " WHERE EXISTS (SELECT 1 FROM unnest(line_jobs) n WHERE n <> 0)"
        "    OR EXISTS (SELECT 1 FROM unnest(line_tokens) n WHERE n <> 0)"
    ).fetchall()
    run.check(not lines, f"buckets' line counts not back to 0: {lines}")
    claims = sorted(a.answered_at - a.sent_at for a in log.answers if a.route == "claim")
    run.note(
        f"{len(log.leases)} leases, {len(log.failed)} failed with retry, "
        f"{len(log.acknowledged)} completions acknowledged; {len(claims)} claims answered in "
        f"{_percentile_ms(claims, 50)} ms (p50), {_percentile_ms(claims, 99)} ms (p99)"
    )


def _percentile_ms(ordered: list[float], percent: int) -> str:
    """The nearest-rank percentile of sorted seconds, in whole milliseconds; "-" if none."""
    if not ordered:
        return "-"
    return f"{ordered[min(len(ordered) - 1, len(ordered) * percent // 100)] * 1000:.0f}"
