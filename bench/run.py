"""`make bench`: load-test Janus as deployed, next to what its HTTP stack and Postgres can do alone.

    python -m bench.run [--duration S] [--connections N] [--only NAME,...] [--soak]

It starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, provisions
the users and configs of every scenario (bench/scenarios.py), starts the service as the
Procfile's web line does, and, when a twin scenario is chosen, the bare twin (bench/twin/)
next to it with the same gunicorn workers. It runs each scenario with wrk (the service, the
twin) or pgbench (the SQL alone), a short unrecorded warm-up first. It prints one table, the
targets with PASS/FAIL, and writes everything as JSON under bench/results/. Exit status: 0
once the bench has run, whatever it found (a FAIL or an unexpected status is a finding,
printed); with --strict, 1 when a target FAILs or any answer was unexpected.

The parts, one concern each: arguments.py (the options), database.py (the database, its
migration and the scenarios' users), scenarios.py (what is measured and the targets),
measure.py (how: warm-up, wrk or pgbench through drivers.py, CPU from procstat.py, the soak),
pgbench_script.py (the SQL of the pgbench ceilings), results.py (what a run measured),
report.py (ratios, targets, the JSON), tables.py (the tables) and render.py (the printed
report). The service is gunicorn from devtools.service; the twin is
bench/twin/ (app, schema, gunicorn settings, server.py to start it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import arguments, measure, pgbouncer, procstat, render, report
from bench.common import REPO_ROOT, RESULTS_DIR, BenchError, say
from bench.database import database, migrate, postmaster_pid, provision, server_facts
from bench.drivers import LoadError
from bench.pgbench_script import pgbench_binary
from bench.results import ScenarioResult
from bench.scenarios import (
    SCENARIOS,
    SOAK_SCENARIO,
    TWIN_CAPACITY,
    TWIN_REFILL_PER_SECOND,
    Scenario,
    durations_text,
)
from bench.soak import partition_settings
from bench.soak import soak as run_soak
from bench.twin import database as twin_database
from bench.twin import server as twin_server
from bench.twin.app import BUCKET as TWIN_BUCKET
from devtools import localdb
from devtools.service import Service, ServiceError
from janus.settings import SettingsError

SERVER_START_TIMEOUT_S = 30


def _worker_class(log_path: Path) -> str:
    """The worker class gunicorn reported using (its setting may come from the environment)."""
    found = re.search(r"Using worker: (\S+)", log_path.read_text(errors="replace"))
    return found.group(1) if found else "unknown"


@contextlib.contextmanager
def _twin(
    chosen: Sequence[Scenario],
    database_url: str,
    conn: psycopg.Connection[Any],
    service: Service,
    run_dir: Path,
) -> Iterator[Service | None]:
    """The bare twin, serving with as many workers as `service`, when a twin scenario is
    chosen (its schema loaded and its bucket full); stopped on leaving."""
    if not any(scenario.driver == "twin" for scenario in chosen):
        yield None
        return
    say("loading the twin's schema and starting it ...")
    twin_database.install(conn)
    twin_database.fill_bucket(conn, TWIN_BUCKET, TWIN_CAPACITY, TWIN_REFILL_PER_SECOND)
    with twin_server.start(
        database_url,
        run_dir / "twin-gunicorn.log",
        workers=len(procstat.children(service.master_pid)),
        timeout_s=SERVER_START_TIMEOUT_S,
    ) as twin:
        yield twin


def _run(args: argparse.Namespace, chosen: Sequence[Scenario], run_dir: Path) -> measure.Run:
    """Set everything up, run the scenarios (and the soak), tear everything down."""
    soak_scenario = next(s for s in SCENARIOS if s.name == SOAK_SCENARIO)
    provisioned = list(chosen)
    if args.soak and soak_scenario not in provisioned:
        provisioned.append(soak_scenario)
    workdir = Path(tempfile.mkdtemp(prefix="janus-bench-"))
    try:
        with database(workdir) as (database_url, database_origin):
            if args.soak:
                # Partitions of 5 minutes kept 10, for the migration, the service and
                # janus maintain alike (bench/soak.py).
                os.environ.update(partition_settings())
            say(f"migrating {render.redacted(database_url)} ...")
            migrate(database_url)
            say("provisioning users and configs ...")
            users = provision(database_url, provisioned)
            with (
                psycopg.connect(database_url, autocommit=True) as conn,
                Service.start(
                    database_url,
                    run_dir / "gunicorn.log",
                    workers=args.workers,
                    # Its own process group: a Ctrl-C here reaches us, and we stop it in order.
                    new_session=True,
                    timeout_s=SERVER_START_TIMEOUT_S,
                ) as service,
                _twin(chosen, database_url, conn, service, run_dir) as twin,
            ):
                cpu_roots = {"app": service.master_pid}
                postmaster = postmaster_pid(conn)
                if postmaster is not None:
                    cpu_roots["postgres"] = postmaster
                bench = measure.Bench(
                    args, database_url, conn, service, users, workdir, run_dir, cpu_roots, twin
                )
                worker_count = len(procstat.children(service.master_pid))
                say(
                    f"gunicorn up with {worker_count} workers; {len(chosen)} scenarios of "
                    f"{durations_text(args.duration)} (+{args.warmup:g}s warm-up) at "
                    f"{args.connections} connections"
                )
                results: dict[str, ScenarioResult] = {}
                for scenario in chosen:
                    result = bench.measure(scenario)
                    results[scenario.name] = result
                    say(
                        f"  {scenario.name:<16} {result.requests_per_s:>9,.1f} req/s  "
                        f"p99 {result.load.latency_ms['p99']:.1f} ms  "
                        + " ".join(f"{k}:{v}" for k, v in result.load.outcomes.items())
                    )
                if args.pgbouncer:
                    pgbouncer.compare(bench, chosen, results, run_dir)
                workers = procstat.worker_memory(service.master_pid)
                soak = (
                    run_soak(bench, soak_scenario, args.soak_minutes, args.soak_prefill)
                    if args.soak
                    else []
                )
                workers_after_soak = procstat.worker_memory(service.master_pid) if soak else []
                # Only now, with no request in flight, are the stored jobs final.
                time.sleep(0.5)
                for result in results.values():
                    bench.count_stored_jobs(result)
                return measure.Run(
                    results=results,
                    soak=soak,
                    workers=workers,
                    workers_after_soak=workers_after_soak,
                    server=server_facts(conn),
                    database_origin=database_origin,
                    worker_count=worker_count,
                    worker_class=_worker_class(run_dir / "gunicorn.log"),
                    twin_worker_count=(
                        None if twin is None else len(procstat.children(twin.master_pid))
                    ),
                    twin_worker_class=None if twin is None else _worker_class(twin.log_path),
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; the process's exit status."""
    args = arguments.parse(argv)
    # The soak's scenario runs in the soak only, unless asked for by name.
    chosen = [
        s
        for s in SCENARIOS
        if (args.only is None and s.name != SOAK_SCENARIO) or (args.only and s.name in args.only)
    ]
    started_at = datetime.now(UTC)
    run_dir = RESULTS_DIR / started_at.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    busy_before = procstat.machine_busy_percent()
    if busy_before > measure.BUSY_MACHINE_PERCENT:
        say(
            f"bench: warning: the machine is already busy ({busy_before:.0f}% of a core before "
            "starting); the numbers will be low, see the 'other' CPU column"
        )
    try:
        run = _run(args, chosen, run_dir)
    except (BenchError, LoadError, ServiceError, localdb.LocalDbError, SettingsError) as error:
        say(f"bench: error: {error}")
        return 1
    except KeyboardInterrupt:
        say("bench: interrupted")
        return 130

    facts = {
        **procstat.machine(),
        "postgres": run.server["server_version"],
        "postgres_origin": run.database_origin,
        "postgres_settings": run.server,
        "wrk": render.tool_version(["wrk", "--version"]),
        "pgbench": render.tool_version([str(pgbench_binary()), "--version"]),
    }
    settings = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "soak_minutes": args.soak_minutes if args.soak else None,
        "soak_prefill_rows": args.soak_prefill if args.soak else None,
        "gunicorn_workers": run.worker_count,
        "gunicorn_worker_class": run.worker_class,
        "twin_gunicorn_workers": run.twin_worker_count,
        "twin_gunicorn_worker_class": run.twin_worker_class,
        "janus_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("JANUS_")},
        "revision": render.git_revision(),
        "machine_busy_before_percent": round(busy_before, 1),
        "started_at": started_at.isoformat(timespec="seconds"),
    }
    checks = report.evaluate(run.results, run.workers)
    if run.soak:
        checks += report.soak_checks(run.soak)
    unexpected = [line for result in run.results.values() for line in result.unexpected()]
    soak_expects = next(s for s in SCENARIOS if s.name == SOAK_SCENARIO).expected_outcome
    unexpected += [
        f"soak minute {minute.minute}: {count} x {outcome}"
        for minute in run.soak
        for outcome, count in minute.load.outcomes.items()
        if outcome != soak_expects
    ]
    table = render.render(run, args, facts, settings, checks, unexpected)
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
        "noisy": render.noisy(run),
        "unexpected": unexpected,
        "outputs": {name: result.load.output for name, result in run.results.items()},
    }
    (run_dir / "results.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (run_dir / "table.txt").write_text(table + "\n")
    print(
        f"\nwritten: {(run_dir / 'results.json').relative_to(REPO_ROOT)} "
        "(and table.txt, the gunicorn logs, the pgbench scripts)"
    )
    failed = unexpected or any(check.passed is False for check in checks)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
