"""How each number is made: a scenario driven by wrk or pgbench, the CPU of each party read
around it, warm-up, quiet and noise, the soak minute by minute, and the jobs stored.

The twin's scenarios (driver "twin") are sent by wrk to the twin's gunicorn instead of
Janus's, and for them that gunicorn is the `app` party; the other, idle, counts as `other`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from bench import drain, procstat
from bench.common import say
from bench.database import fill_queue, queued_jobs
from bench.drivers import (
    LUA_SCRIPT,
    QUEUE_LUA_SCRIPT,
    HttpLoad,
    LoadResult,
    SqlLoad,
    run_pgbench,
    run_wrk,
)
from bench.pacing import PacingLoad, run_pacing
from bench.pgbench_script import pgbench_binary, pgbench_script, pgbench_statement
from bench.results import ScenarioResult, SoakMinute
from bench.scenarios import (
    COMPLETE_PATH,
    DEFAULT_DURATION_S,
    DRAIN_JOBS,
    DRAIN_WARMUP_JOBS,
    QUEUE_FILL_JOBS_PER_S,
    Scenario,
)
from bench.service_metrics import grouping, scrape_groups
from bench.soak import partitions_mb
from bench.twin import database as twin_database
from bench.twin.app import BUCKET as TWIN_BUCKET
from devtools.service import Service

# Above this (in % of one core) before the bench starts, other work shares the machine and
# every number will be low: say so.
BUSY_MACHINE_PERCENT = 25.0
# Above this (in % of one core) during a scenario, its numbers are not to be trusted.
NOISY_OTHER_PERCENT = 30.0
# How long a scenario waits for the machine to be quiet before it starts anyway.
QUIET_WAIT_S = 10.0


def wait_for_quiet() -> None:
    """Wait, QUIET_WAIT_S at most, until the machine is busy less than BUSY_MACHINE_PERCENT.

    Called while the service and the database are idle, so what it sees is other work.
    """
    deadline = time.monotonic() + QUIET_WAIT_S
    while time.monotonic() < deadline:
        if procstat.machine_busy_percent(0.5) < BUSY_MACHINE_PERCENT:
            return


@dataclass
class Bench:
    """Everything a scenario run needs."""

    args: argparse.Namespace
    database_url: str
    conn: psycopg.Connection[Any]
    service: Service
    users: Mapping[str, list[UUID]]
    workdir: Path
    run_dir: Path
    # The parties whose CPU is read around each run: "app" (Janus's gunicorn), "postgres".
    cpu_roots: Mapping[str, int]
    # The bare twin's gunicorn, when a twin scenario was chosen.
    twin: Service | None = None

    def cpu_roots_for(self, scenario: Scenario) -> Mapping[str, int]:
        """The parties of `scenario`: the twin's gunicorn is the `app` of the twin's runs."""
        if scenario.driver == "twin":
            assert self.twin is not None
            return {**self.cpu_roots, "app": self.twin.master_pid}
        return self.cpu_roots

    def http_load(self, scenario: Scenario) -> HttpLoad:
        """The wrk run of `scenario`, its body and users written to files for the Lua."""
        body_file = users_file = None
        if scenario.body is not None:
            body_file = self.workdir / f"{scenario.name}.json"
            body_file.write_text(json.dumps(scenario.body, ensure_ascii=False))
        if scenario.name in self.users:
            users_file = self.workdir / f"{scenario.name}.users"
            users_file.write_text("".join(f"{user}\n" for user in self.users[scenario.name]))
        base_url = self.service.url
        if scenario.driver == "twin":
            assert self.twin is not None
            base_url = self.twin.url
        if scenario.kind == "claim":
            assert body_file is not None and users_file is not None
            return HttpLoad(
                base_url,
                QUEUE_LUA_SCRIPT,
                [scenario.path, COMPLETE_PATH, str(body_file), str(users_file)],
            )
        return HttpLoad(
            base_url,
            LUA_SCRIPT,
            [scenario.method, scenario.path, str(body_file or "-"), str(users_file or "-")],
        )

    def fill_queue(self, scenario: Scenario, seconds: float) -> None:
        """Queue enough jobs for `seconds` of a claim scenario at QUEUE_FILL_JOBS_PER_S."""
        users = self.users[scenario.name]
        wanted = math.ceil(seconds * QUEUE_FILL_JOBS_PER_S) * len(users)
        missing = wanted - queued_jobs(self.conn, users)
        if missing <= 0:
            return
        started = time.monotonic()
        per_user = math.ceil(missing / len(users))
        for user_id in users:
            fill_queue(self.conn, user_id, per_user)
        say(
            f"  {scenario.name}: queued {per_user * len(users):,} more jobs in "
            f"{time.monotonic() - started:.1f}s"
        )

    def sql_load(self, scenario: Scenario) -> SqlLoad:
        """The pgbench run of `scenario`: its script, written next to the results."""
        query, params = pgbench_statement(scenario, self.users[scenario.name][0])
        script = self.run_dir / f"{scenario.name}.sql"
        script.write_text(pgbench_script(scenario, query, params))
        variables = {name: value for name, value in params.items() if value is not None}
        return SqlLoad(
            pgbench_binary(), self.database_url, script, variables, self.workdir / scenario.name
        )

    def duration_of(self, scenario: Scenario) -> float:
        """Seconds of `scenario`'s measured run: --duration, else its own, else the default."""
        if self.args.duration is not None:
            return float(self.args.duration)
        return scenario.duration_s or DEFAULT_DURATION_S

    def drive(self, scenario: Scenario, duration_s: float) -> LoadResult:
        """One run of `scenario` for `duration_s` (a drain: until its queue is empty)."""
        if scenario.kind == "drain":
            return drain.drive(self, scenario)
        if scenario.kind == "pacing":
            load = PacingLoad.of(scenario, self.service.url, self.users[scenario.name][0])
            return run_pacing(load, duration_s=duration_s, timeout_s=self.args.timeout)
        connections, threads = scenario.load_shape(self.args.connections, self.args.threads)
        if scenario.driver == "pgbench":
            return run_pgbench(
                self.sql_load(scenario),
                duration_s=duration_s,
                connections=connections,
                threads=threads,
            )
        return run_wrk(
            self.http_load(scenario),
            duration_s=duration_s,
            connections=connections,
            threads=threads,
            timeout_s=self.args.timeout,
        )

    def measure(self, scenario: Scenario) -> ScenarioResult:
        """Warm up, then one recorded run with the CPU of each party read around it."""
        if scenario.kind == "claim":
            # Before the vacuum, so that it covers the jobs queued for the warm-up and the run.
            self.fill_queue(scenario, self.args.warmup + self.duration_of(scenario))
        # Vacuum and analyze what provisioning and the earlier scenarios wrote, so autovacuum
        # does not pick this run to do it, and checkpoint now rather than in the middle of the
        # run (durability untouched).
        for maintenance in ("VACUUM (ANALYZE)", "CHECKPOINT"):
            with contextlib.suppress(psycopg.Error):
                self.conn.execute(maintenance)
        if scenario.kind == "drain":
            drain.fill(self, self.users[scenario.name][0], DRAIN_WARMUP_JOBS)
        if self.args.warmup > 0 or scenario.kind == "drain":
            self.drive(scenario, self.args.warmup)
        # The machine is shared: a run during which other processes took much of it is
        # measured again (after waiting a little for quiet), and the quietest run kept.
        best: ScenarioResult | None = None
        for _ in range(1 + self.args.noisy_retries):
            if best is not None:
                say(
                    f"  {scenario.name}: other processes took {best.cpu['other']:.0f}% of a "
                    "core, measuring again"
                )
            if scenario.kind == "claim":
                self.fill_queue(scenario, self.duration_of(scenario))
            if scenario.kind == "drain":
                drain.fill(self, self.users[scenario.name][0], DRAIN_JOBS)
                for maintenance in ("VACUUM (ANALYZE) jobs", "CHECKPOINT"):
                    self.conn.execute(maintenance)
            wait_for_quiet()
            started_at, autovacuums = self.now(), self.autovacuums()
            # Outside the CPU readings, so that the scrapes count in none of them.
            groups_before = scrape_groups(self.service.url) if scenario.admits else None
            load, cpu, cpu_s = self.drive_timed(scenario, self.duration_of(scenario))
            result = ScenarioResult(
                scenario,
                load,
                cpu,
                cpu_s=cpu_s,
                window=(started_at, self.now()),
                connections=scenario.load_shape(self.args.connections, self.args.threads)[0],
            )
            if scenario.admits:
                result.grouping = grouping(groups_before, scrape_groups(self.service.url))
            result.autovacuums = self.autovacuums() - autovacuums
            if scenario.kind == "claim":
                result.queue_left = queued_jobs(self.conn, self.users[scenario.name])
            if best is None or result.cpu["other"] < best.cpu["other"]:
                best = result
            if best.cpu["other"] <= NOISY_OTHER_PERCENT:
                break
        assert best is not None
        return best

    def autovacuums(self) -> int:
        """Autovacuum and autoanalyze runs on the database's tables so far."""
        row = self.conn.execute(
            "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables"
        ).fetchone()
        return int(row[0]) if row else 0

    def drive_timed(
        self, scenario: Scenario, duration_s: float
    ) -> tuple[LoadResult, dict[str, float], dict[str, float]]:
        """One run of `scenario`, and the CPU each party used during it: in % of a core
        (procstat.cpu_percent) and in seconds (procstat.cpu_seconds)."""
        roots = self.cpu_roots_for(scenario)
        before, started = procstat.read_cpu(roots), time.monotonic()
        load = self.drive(scenario, duration_s)
        after, wall_s = procstat.read_cpu(roots), time.monotonic() - started
        return (
            load,
            procstat.cpu_percent(before, after, wall_s),
            procstat.cpu_seconds(before, after),
        )

    def count_stored_jobs(self, result: ScenarioResult) -> None:
        """Fill in how many jobs the scenario's users got stored during its run, by status.

        For a claim scenario: how many of its user's jobs finished during the run, by state;
        for the twin's: how many of its bucket's jobs it stored during the run, by status.
        """
        if result.window is None:
            return
        if result.scenario.driver == "twin":
            result.stored_jobs = twin_database.stored_jobs(self.conn, TWIN_BUCKET, *result.window)
            return
        if result.name not in self.users:
            return
        if result.scenario.kind in ("claim", "drain"):
            rows = self.conn.execute(
                "SELECT state, count(*) FROM jobs"
                " WHERE user_id = ANY(%s) AND finished_at >= %s AND finished_at < %s"
                " GROUP BY state ORDER BY state",
                [self.users[result.name], *result.window],
            ).fetchall()
            result.stored_jobs = {state: count for state, count in rows}
            return
        # The jobs decided within the window: a range of the primary key (user_id, job_id),
        # since a job id starts with that moment (janus/db/sql/first_job_id_at.sql).
        rows = self.conn.execute(
            "SELECT status, count(*) FROM jobs"
            " WHERE user_id = ANY(%s)"
            " AND job_id >= first_job_id_at(%s) AND job_id < first_job_id_at(%s)"
            " GROUP BY status ORDER BY status",
            [self.users[result.name], *result.window],
        ).fetchall()
        result.stored_jobs = {status: count for status, count in rows}

    def jobs_table(self) -> tuple[int, float]:
        """Rows in jobs, and its size with indexes and TOAST in MB."""
        row = self.conn.execute("SELECT count(*) FROM jobs").fetchone()
        assert row is not None
        # jobs is partitioned (migration 0024): its size is its partitions'.
        return int(row[0]), partitions_mb(self.conn)

    def wal_and_checkpoints(self) -> tuple[float, int | None]:
        """WAL written since the server was created, in MB, and checkpoints done since start."""
        row = self.conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()
        wal_mb = float(row[0]) / 1048576 if row else 0.0
        # The view and its columns changed in PostgreSQL 17 and again in 18.
        for query in (
            "SELECT num_done FROM pg_stat_checkpointer",
            "SELECT num_timed + num_requested FROM pg_stat_checkpointer",
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",
        ):
            with contextlib.suppress(psycopg.Error):
                done = self.conn.execute(query).fetchone()
                return wal_mb, int(done[0]) if done else None
        return wal_mb, None

    def now(self) -> datetime:
        """The database's clock."""
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        now: datetime = row[0]
        return now


@dataclass
class Run:
    """What one bench run measured, gathered while the database and the service were up."""

    results: dict[str, ScenarioResult]
    soak: list[SoakMinute]
    workers: list[procstat.WorkerMemory]
    workers_after_soak: list[procstat.WorkerMemory]
    server: dict[str, str]
    database_origin: str
    worker_count: int
    # As gunicorn named it at start-up ("Using worker: ..."), e.g. janus.worker.JanusWorker.
    worker_class: str
    # The same of the twin's gunicorn; None when no twin scenario ran.
    twin_worker_count: int | None = None
    twin_worker_class: str | None = None
