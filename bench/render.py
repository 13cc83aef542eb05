"""The printed report around tables.py's tables, and the facts it states about the run.

The revision, the tools' versions and the database (host, port and name only) go in the
header; the table, the soak, autovacuum and noise notes, the targets and any unexpected
answer follow.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench import report, tables
from bench.common import REPO_ROOT
from bench.measure import NOISY_OTHER_PERCENT, Run
from bench.scenarios import SOAK_SCENARIO, durations_text


def git_revision() -> str:
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


def tool_version(command: Sequence[str]) -> str:
    """The tool's name and version: the first line it prints, before any "[" or copyright."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not found"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    if not lines:
        return "unknown"
    return re.split(r" \[| Copyright", lines[0])[0].strip()


def redacted(database_url: str) -> str:
    try:
        parts = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "(unparsable)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def _twin_line(run: Run) -> str:
    """How the twin's gunicorn ran, when it did: "the same" when it matches Janus's."""
    if run.twin_worker_count is None:
        return ""
    if (run.twin_worker_count, run.twin_worker_class) == (run.worker_count, run.worker_class):
        return ", the twin's the same"
    return f", the twin's {run.twin_worker_count} workers ({run.twin_worker_class})"


def _own_connections(run: Run, args: argparse.Namespace) -> list[str]:
    """The line naming the scenarios that ran at connections of their own, if any ran."""
    own = [
        f"{name} at {shape[0]} on {shape[1]} thread{'s' * (shape[1] > 1)}"
        for name, result in run.results.items()
        if result.scenario.connections
        for shape in [result.scenario.load_shape(args.connections, args.threads)]
    ]
    if not own:
        return []
    return [
        f"Connections of their own: {', '.join(own)}; the ceilings run at "
        f"{args.connections}, so these rows have no ratio to them."
    ]


def noisy(run: Run) -> list[str]:
    """The scenarios (and soak minutes) while other processes took over NOISY_OTHER_PERCENT."""
    measured = [(name, result.cpu) for name, result in run.results.items()]
    measured += [(f"soak minute {minute.minute}", minute.cpu) for minute in run.soak]
    return [
        f"{name} ({cpu.get('other', 0):.0f}%)"
        for name, cpu in measured
        if cpu.get("other", 0) > NOISY_OTHER_PERCENT
    ]


def render(
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
        f"{args.threads} threads, {durations_text(args.duration)} per scenario after "
        f"{args.warmup:g}s warm-up; gunicorn {run.worker_count} workers "
        f"({run.worker_class}){_twin_line(run)}",
        "",
        *tables.scenario_table(run.results),
        "",
        "vs pgbench: jobs/s over its pgbench ceiling (the same admit_jobs_once call without "
        "HTTP); vs twin: jobs/s over the bare twin's",
        "(bench/twin/: the same requests, one SELECT admit() each); vs /health: req/s over "
        "GET /health's; x single: jobs/s as a multiple of single-hot's;",
        "CPU%: of one core, gunicorn (the twin's on its rows) / postgres / wrk or pgbench / "
        "everything else (high: a noisy run); !: unexpected.",
        "claim-complete: jobs/s counts only jobs a batch complete answered completed; "
        "req/s, p50 and p99 mix its claims and completes.",
        "mean group: requests per group that group admission decided during the run "
        "(GET /metrics before and after: janus_admission_group_requests, sum over count);",
        "-: the service does not count groups, or decided none.",
        *_own_connections(run, args),
        *tables.pacing_lines(run.results),
        *tables.drain_lines(run.results),
    ]
    decision_cpu = tables.decision_cpu_table(run.results)
    if decision_cpu:
        lines += [
            "",
            *decision_cpu,
            "CPU seconds of each party during the run over the jobs it decided; app: Janus's "
            "gunicorn, or the twin's on the twin's rows.",
        ]
    if run.soak:
        prefilled = f", the jobs table pre-filled to {args.soak_prefill:,} rows" * bool(
            args.soak_prefill
        )
        lines += [
            "",
            f"soak: {SOAK_SCENARIO}, minute by minute{prefilled}",
            *tables.soak_table(run.soak),
        ]
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
    noisy_names = noisy(run)
    if noisy_names:
        lines += [
            "",
            f"NOISY: other processes took more than {NOISY_OTHER_PERCENT:.0f}% of a core during "
            f"{', '.join(noisy_names)}: those numbers are low and the ratios that use them "
            "unreliable; run again.",
        ]
    lines += ["", *tables.check_table(checks)]
    if unexpected:
        lines += ["", "UNEXPECTED ANSWERS:", *(f"  {line}" for line in unexpected)]
    return "\n".join(lines)
