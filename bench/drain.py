"""The drains of issue 26: DRAIN_JOBS queued jobs drained to the end, by claims and batch
completes sent directly (`raw-drain`, bench/drain_driver.py) and by the worker runtime
(`worker-drain`, `worker-drain-10`: janus-worker on bench/nothing.py, stopped by SIGTERM
once DRAIN_SIGTERM_AT of the jobs are done, then started again), each timed and audited
from the database. A scenario's `jobs` is its claims' limit.

Both are measured the same way. The bench starts the driver and looks at the queue every
POLL_S. The jobs/s is the jobs completed over the time each process was draining: from its
first job's `finished_at` to its last's (so a process's start-up, the Python interpreter and
its imports, is left out, and so is the gap while the worker restarts); the time from the
first start to the last job's end is reported beside it as `end to end`. The audit: every job
of the run must end `completed` (`lost`: any other state), and the worker runs' own counts of
completions must add up to the database's (`completed twice`: the excess).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from bench.common import BIN, REPO_ROOT, say
from bench.database import fill_queue, queued_jobs
from bench.drain_driver import RESULT_PREFIX
from bench.drivers import LoadError, LoadResult
from bench.scenarios import (
    DRAIN_SIGTERM_AT,
    DRAIN_TIMEOUT_S,
    WORKER_DRAIN_CONCURRENCY,
    Scenario,
)

if TYPE_CHECKING:
    from bench.measure import Bench

POLL_S = 0.05
# A worker stopped by SIGTERM must be gone by then.
EXIT_TIMEOUT_S = 30.0
# The worker's last log line: its counters (janus_client.worker).
STOPPED_PREFIX = "worker stopped: "
NO_LATENCY = {name: math.nan for name in ("mean", "p50", "p90", "p99", "max")}

_UNFINISHED = (
    "SELECT count(*) FROM jobs WHERE user_id = %s AND state IN ('queued', 'waiting', 'running')"
)


@dataclass
class _Process:
    """A driver or worker process, and the database clock when it started and ended."""

    process: subprocess.Popen[bytes]
    log: Path
    started_at: datetime
    ended_at: datetime | None = None


def fill(bench: Bench, user: UUID, jobs: int) -> None:
    """Queue exactly `jobs` jobs for `user`, whose queue must be empty."""
    left = queued_jobs(bench.conn, [user])
    if left:
        raise LoadError(f"the drain's queue still holds {left} jobs")
    fill_queue(bench.conn, user, jobs)


def drive(bench: Bench, scenario: Scenario) -> LoadResult:
    """Drain what is queued for the scenario's user, by its driver; the run as a LoadResult
    whose wall_s is the draining time, counters the audit's."""
    user = bench.users[scenario.name][0]
    # Job ids grow with time (new_job_id()): the run's jobs are the user's from its first on.
    first = bench.conn.execute(
        "SELECT job_id, count(*) OVER () FROM jobs WHERE user_id = %s AND state = 'queued'"
        " ORDER BY job_id LIMIT 1",
        [user],
    ).fetchone()
    assert first is not None, "nothing queued to drain"
    first_job, jobs = first
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    runs = [_start(bench, scenario, user)]
    if scenario.driver == "worker":
        _wait_until(bench, user, lambda left: left <= jobs * (1 - DRAIN_SIGTERM_AT), deadline)
        _stop(bench, runs[-1])
        runs.append(_start(bench, scenario, user))
    drained = _wait_until(bench, user, lambda left: left == 0, deadline)
    if scenario.driver == "worker" or not drained:
        _stop(bench, runs[-1])
    else:
        _end(bench, runs[-1])
    return _result(bench, scenario, user, first_job, runs)


def _start(bench: Bench, scenario: Scenario, user: UUID) -> _Process:
    # Each process its own log (the warm-up's, a retried run's, each worker run's).
    number = 1 + len(list(bench.run_dir.glob(f"{scenario.name}-*.log")))
    log = bench.run_dir / f"{scenario.name}-{number}.log"
    started_at = bench.now()
    with log.open("wb") as output:
        process = subprocess.Popen(
            _command(bench, scenario, user),
            cwd=REPO_ROOT,
            env={**os.environ, "JANUS_URL": bench.service.url, "JANUS_USER_ID": str(user)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return _Process(process, log, started_at)


def _command(bench: Bench, scenario: Scenario, user: UUID) -> list[str]:
    if scenario.driver == "worker":
        return [
            str(BIN / "janus-worker"),
            "bench.nothing:handle",
            f"--concurrency={WORKER_DRAIN_CONCURRENCY}",
            f"--claim-limit={scenario.jobs}",
        ]
    spec = {
        "base_url": bench.service.url,
        "user_id": str(user),
        "connections": bench.args.connections,
        "claim_limit": scenario.jobs,
        "timeout_s": bench.args.timeout,
    }
    return [sys.executable, "-m", "bench.drain_driver", json.dumps(spec)]


def _wait_until(bench: Bench, user: UUID, done: Any, deadline: float) -> bool:
    """Look at the queue every POLL_S until `done(unfinished jobs)`; False at the deadline."""
    while time.monotonic() < deadline:
        row = bench.conn.execute(_UNFINISHED, [user]).fetchone()
        if row is not None and done(int(row[0])):
            return True
        time.sleep(POLL_S)
    return False


def _stop(bench: Bench, run: _Process) -> None:
    run.process.send_signal(signal.SIGTERM)
    _end(bench, run)


def _end(bench: Bench, run: _Process) -> None:
    try:
        run.process.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.process.kill()
        run.process.wait()
    run.ended_at = bench.now()


def _result(
    bench: Bench, scenario: Scenario, user: UUID, first_job: UUID, runs: Sequence[_Process]
) -> LoadResult:
    states = dict(
        bench.conn.execute(
            "SELECT state, count(*) FROM jobs WHERE user_id = %s AND job_id >= %s GROUP BY 1",
            [user, first_job],
        ).fetchall()
    )
    completed = states.get("completed", 0)
    active_s = 0.0
    for run in runs:
        first, last = bench.conn.execute(
            "SELECT min(finished_at), max(finished_at) FROM jobs"
            " WHERE user_id = %s AND job_id >= %s AND state = 'completed'"
            " AND finished_at >= %s AND finished_at < %s",
            [user, first_job, run.started_at, run.ended_at],
        ).fetchone() or (None, None)
        if first is not None and last is not None:
            active_s += (last - first).total_seconds()
    drained_at = bench.conn.execute(
        "SELECT max(finished_at) FROM jobs WHERE user_id = %s AND job_id >= %s",
        [user, first_job],
    ).fetchone()
    end_to_end_s = (
        (drained_at[0] - runs[0].started_at).total_seconds()
        if drained_at and drained_at[0]
        else math.nan
    )
    say(
        f"  {scenario.name}: {completed:,} of {sum(states.values()):,} jobs completed, "
        f"{active_s:.2f}s draining, {end_to_end_s:.2f}s end to end"
    )
    output = "".join(run.log.read_text(errors="replace") for run in runs)
    counters = {
        "jobs": sum(states.values()),
        "completed": completed,
        "lost": sum(states.values()) - completed,
        "runs": len(runs),
        "end_to_end_ms": round(end_to_end_s * 1000) if not math.isnan(end_to_end_s) else 0,
    }
    if scenario.driver == "worker":
        outcomes: dict[str, int] = {}
        for run in runs:
            status = f"exit {run.process.returncode}"
            outcomes[status] = outcomes.get(status, 0) + 1
        counted = _worker_counters(output)
        counters |= {name: counted.get(name, 0) for name in ("claimed", "given_back")}
        counters["completed_twice"] = max(0, counted.get("completed", 0) - completed)
        counters["uncounted"] = max(0, completed - counted.get("completed", 0))
        return LoadResult(active_s, 0, outcomes, dict(NO_LATENCY), output, counters)
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise LoadError(f"the raw drain printed no result:\n{output}")
    seen = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    counters |= {name: seen["counters"].get(name, 0) for name in ("claimed", "not_completed")}
    return LoadResult(
        active_s, seen["requests"], dict(sorted(seen["statuses"].items())), seen["latency_ms"],
        output, counters,
    )  # fmt: skip


def _worker_counters(output: str) -> dict[str, int]:
    """The worker runs' counters, added up from their `worker stopped:` lines."""
    total: dict[str, int] = {}
    for line in output.splitlines():
        _, found, counters = line.partition(STOPPED_PREFIX)
        if found:
            for pair in counters.split():
                name, _, value = pair.partition("=")
                total[name] = total.get(name, 0) + int(value)
    return total
