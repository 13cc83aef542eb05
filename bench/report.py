"""Turn measured runs into the printed tables, the ratios, the PASS/FAIL targets and the JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.drivers import LoadResult
from bench.procstat import WorkerMemory
from bench.scenarios import (
    HEALTH,
    MAX_P99_OVER_P50,
    MAX_WORKER_RSS_MB,
    SINGLE_BASELINE,
    SOAK_MIN_KEPT,
    SOAK_PAST_ROWS,
    TARGETS,
    Scenario,
)

# The CPU column: gunicorn, Postgres, the load generator, everything else.
CPU_GROUPS = ("app", "postgres", "load", "other")
# The parties whose CPU per decision is reported: gunicorn (Janus's or the twin's), Postgres.
DECISION_CPU_GROUPS = ("app", "postgres")


@dataclass
class ScenarioResult:
    """A scenario's measured run, and what it says once read."""

    scenario: Scenario
    load: LoadResult
    # CPU in % of one core while it ran: "app" (gunicorn), "postgres", "load" (wrk or
    # pgbench), "other" (anything else on the machine) and "machine" (all of it).
    cpu: Mapping[str, float]
    # Jobs stored during the run, by status (filled in once all load has stopped).
    stored_jobs: dict[str, int] = field(default_factory=dict)
    # The database clock around the measured run.
    window: tuple[Any, Any] | None = None
    # Autovacuum and autoanalyze runs during it.
    autovacuums: int = 0
    # A claim scenario: jobs still queued after the run (0: the queue may have run dry).
    queue_left: int | None = None
    # CPU seconds each party used during the run (the same reading as `cpu`).
    cpu_s: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.scenario.name

    @property
    def requests_per_s(self) -> float:
        """Requests (or pgbench transactions) answered per second, whatever their status."""
        return self.load.requests_per_s

    @property
    def decided_requests(self) -> int:
        """Requests answered as expected: each decided all of its jobs."""
        return self.load.outcomes.get(self.scenario.expected_outcome, 0)

    @property
    def jobs_per_s(self) -> float | None:
        """Jobs decided per second (None for /health, which decides none)."""
        if self.scenario.kind == "health":
            return None
        if self.scenario.kind == "claim":
            # Only jobs a batch complete answered "completed"; a claim alone counts nothing.
            return self.load.counters.get("completed", 0) / self.load.wall_s
        return self.decided_requests * self.scenario.jobs / self.load.wall_s

    @property
    def decisions(self) -> int | None:
        """Jobs decided during the run (None for /health); a claim's: jobs completed."""
        if self.scenario.kind == "health":
            return None
        if self.scenario.kind == "claim":
            return self.load.counters.get("completed", 0)
        return self.decided_requests * self.scenario.jobs

    @property
    def cpu_us_per_decision(self) -> dict[str, float]:
        """CPU microseconds each party (gunicorn, Postgres) spent per job decided in the run."""
        if not self.decisions:
            return {}
        return {
            name: self.cpu_s[name] / self.decisions * 1e6
            for name in DECISION_CPU_GROUPS
            if name in self.cpu_s
        }

    @property
    def p99_over_p50(self) -> float:
        """How much slower the 99th percentile is than the median."""
        p50, p99 = self.load.latency_ms["p50"], self.load.latency_ms["p99"]
        return p99 / p50 if p50 else math.nan

    def unexpected(self) -> list[str]:
        """Every answer that is not the one this scenario should get, as readable lines."""
        lines = []
        for outcome, count in self.load.outcomes.items():
            if outcome != self.scenario.expected_outcome:
                lines.append(f"{self.name}: {count} x {outcome}")
        for status, count in self.stored_jobs.items():
            if status != self.scenario.expected_job_status:
                lines.append(f"{self.name}: {count} jobs stored as {status}")
        if self.scenario.kind == "claim":
            lines += self._queue_unexpected()
        return lines

    def _queue_unexpected(self) -> list[str]:
        counters = self.load.counters
        lines = [
            f"{self.name}: {counters[name]} {what}"
            for name, what in (
                ("empty_claims", "claims found the queue empty"),
                ("short_claims", f"claims leased fewer than {self.scenario.jobs} jobs"),
                ("not_completed", "jobs of a batch complete not answered completed"),
            )
            if counters.get(name)
        ]
        if self.queue_left == 0:
            lines.append(f"{self.name}: the queue was empty after the run")
        # wrk's count must be backed by the database: jobs finished within the run's window.
        finished = self.stored_jobs.get("completed")
        if finished is not None and finished < counters.get("completed", 0):
            lines.append(
                f"{self.name}: wrk counted {counters.get('completed', 0)} completed jobs, "
                f"the database {finished} finished in the run"
            )
        return lines

    def measure(self, name: str) -> float | None:
        """`requests_per_s` or `jobs_per_s` by name."""
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class Check:
    """One target: the measured value, what it must be, and whether it is."""

    label: str
    value: str
    target: str
    passed: bool | None  # None: not measured in this run


def _ratio(
    results: Mapping[str, ScenarioResult], name: str, over: str, measure: str
) -> float | None:
    if name not in results or over not in results:
        return None
    value, base = results[name].measure(measure), results[over].measure(measure)
    if value is None or not base:
        return None
    return value / base


def ratios(
    results: Mapping[str, ScenarioResult], result: ScenarioResult
) -> dict[str, float | None]:
    """The ratios printed next to a scenario of the service.

    vs_sql: its jobs/s over its pgbench ceiling's; vs_twin: its jobs/s over the bare twin's
    for the same requests; vs_health (single jobs): its requests/s over /health's; x_single
    (batches): its jobs/s as a multiple of the single hot bucket's.
    """
    scenario = result.scenario
    if scenario.driver != "wrk" or scenario.kind == "health":
        return {}
    found: dict[str, float | None] = {}
    if scenario.sql_ceiling:
        found["vs_sql"] = _ratio(results, scenario.name, scenario.sql_ceiling, "jobs_per_s")
    if scenario.twin_ceiling:
        found["vs_twin"] = _ratio(results, scenario.name, scenario.twin_ceiling, "jobs_per_s")
    if scenario.kind == "single":
        found["vs_health"] = _ratio(results, scenario.name, HEALTH, "requests_per_s")
    else:
        found["x_single"] = _ratio(results, scenario.name, SINGLE_BASELINE, "jobs_per_s")
    return found


def evaluate(results: Mapping[str, ScenarioResult], workers: Sequence[WorkerMemory]) -> list[Check]:
    """Every target of bench/scenarios.py, checked against this run."""
    checks = []
    for target in TARGETS:
        ratio = _ratio(results, target.scenario, target.baseline, target.measure)
        unit = "req/s" if target.measure == "requests_per_s" else "jobs/s"
        checks.append(
            Check(
                label=f"{target.scenario} / {target.baseline} ({unit})",
                value="not run" if ratio is None else _times(ratio, target.minimum),
                target=f">= {_times(target.minimum, target.minimum)}",
                passed=None if ratio is None else ratio >= target.minimum,
            )
        )
    for result in results.values():
        if result.scenario.driver == "wrk" and result.scenario.kind == "single":
            tail = result.p99_over_p50
            checks.append(
                Check(
                    label=f"{result.name} p99 / p50",
                    value=f"{tail:.1f}x",
                    target=f"<= {MAX_P99_OVER_P50:g}x",
                    passed=tail <= MAX_P99_OVER_P50,
                )
            )
    for worker in workers:
        checks.append(
            Check(
                label=f"worker {worker.pid} RSS (peak {worker.peak_mb:.1f} MB)",
                value=f"{worker.rss_mb:.1f} MB",
                target=f"< {MAX_WORKER_RSS_MB:g} MB",
                passed=worker.rss_mb < MAX_WORKER_RSS_MB,
            )
        )
    return checks


def _times(ratio: float, scale: float) -> str:
    """A ratio as a percentage when its target is below 1, else as a multiple."""
    if scale < 1:
        return f"{ratio * 100:.1f}%"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _multiple(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _cpu(cpu: Mapping[str, float]) -> str:
    return "/".join(f"{cpu.get(name, 0):.0f}" for name in CPU_GROUPS)


def _outcomes(result: ScenarioResult) -> str:
    expected = result.scenario.expected_outcome
    shown = " ".join(
        f"{outcome}:{count}" + ("" if outcome == expected else "!")
        for outcome, count in result.load.outcomes.items()
    )
    if result.scenario.kind == "claim":
        counters = result.load.counters
        shown += f" completed:{counters.get('completed', 0)}"
        for name in ("empty_claims", "short_claims", "not_completed"):
            if counters.get(name):
                shown += f" {name}:{counters[name]}!"
    return shown


def scenario_table(results: Mapping[str, ScenarioResult]) -> list[str]:
    """One row per scenario: rates, latency, ratios to the ceilings, CPU, every status."""
    header = (
        "scenario", "req/s", "jobs/s", "p50 ms", "p99 ms", "p99/p50",
        "vs pgbench", "vs twin", "vs /health", "x single", "CPU% app/pg/load/other", "statuses",
    )  # fmt: skip
    rows = []
    for result in results.values():
        found = ratios(results, result)
        latency = result.load.latency_ms
        rows.append(
            (
                result.name,
                _rate(result.requests_per_s),
                _rate(result.jobs_per_s),
                _ms(latency["p50"]),
                _ms(latency["p99"]),
                f"{result.p99_over_p50:.1f}",
                _percent(found.get("vs_sql")),
                _percent(found.get("vs_twin")),
                _percent(found.get("vs_health")),
                _multiple(found.get("x_single")),
                _cpu(result.cpu),
                _outcomes(result),
            )
        )
    return aligned(header, rows, left_columns={0, 11})


def _microseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def decision_cpu_table(results: Mapping[str, ScenarioResult]) -> list[str]:
    """CPU microseconds per decision, gunicorn and Postgres apart, of each scenario of the
    service that has a twin and of its twin, with the service's as a multiple of the twin's.
    """
    header = ("CPU µs per decision", "app", "pg", "app+pg")
    rows = []
    for result in results.values():
        twin_name = result.scenario.twin_ceiling
        if twin_name is None or twin_name not in results:
            continue
        pair = [result.cpu_us_per_decision, results[twin_name].cpu_us_per_decision]
        sums = [
            sum(used.values()) if len(used) == len(DECISION_CPU_GROUPS) else None for used in pair
        ]
        for name, used, total in zip((result.name, twin_name), pair, sums, strict=True):
            rows.append(
                (
                    name,
                    *(_microseconds(used.get(group)) for group in DECISION_CPU_GROUPS),
                    _microseconds(total),
                )
            )
        multiples = [_over(pair[0].get(group), pair[1].get(group)) for group in DECISION_CPU_GROUPS]
        rows.append(
            (
                f"  {result.name} / {twin_name}",
                *(_multiple(value) for value in multiples),
                _multiple(_over(sums[0], sums[1])),
            )
        )
    if not rows:
        return []
    return aligned(header, rows, left_columns={0})


def _over(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def check_table(checks: Sequence[Check]) -> list[str]:
    """The targets, each with its measured value and PASS or FAIL."""
    header = ("target", "value", "wanted", "result")
    rows = [
        (
            check.label,
            check.value,
            check.target,
            "-" if check.passed is None else "PASS" if check.passed else "FAIL",
        )
        for check in checks
    ]
    return aligned(header, rows, left_columns={0, 3})


@dataclass(frozen=True)
class SoakMinute:
    """One minute of the soak, and what it did to the database."""

    minute: int
    load: LoadResult
    jobs_per_s: float
    jobs_rows: int
    jobs_table_mb: float
    wal_mb: float
    checkpoints: int | None
    cpu: Mapping[str, float]
    # Autovacuum and autoanalyze runs during the minute, on every table.
    autovacuums: int


def soak_table(minutes: Sequence[SoakMinute]) -> list[str]:
    """Jobs/s and latency minute by minute, with the jobs table, WAL, checkpoints and
    autovacuum runs."""
    header = (
        "minute", "jobs/s", "p50 ms", "p99 ms", "jobs rows", "jobs MB", "WAL MB",
        "checkpoints", "autovacuums", "CPU% app/pg/load/other", "statuses",
    )  # fmt: skip
    rows = [
        (
            str(minute.minute),
            _rate(minute.jobs_per_s),
            _ms(minute.load.latency_ms["p50"]),
            _ms(minute.load.latency_ms["p99"]),
            f"{minute.jobs_rows:,}",
            f"{minute.jobs_table_mb:,.0f}",
            f"{minute.wal_mb:,.0f}",
            "-" if minute.checkpoints is None else str(minute.checkpoints),
            str(minute.autovacuums),
            _cpu(minute.cpu),
            " ".join(f"{outcome}:{count}" for outcome, count in minute.load.outcomes.items()),
        )
        for minute in minutes
    ]
    return aligned(header, rows, left_columns={10})


def soak_document(minute: SoakMinute) -> dict[str, Any]:
    """A minute of the soak as JSON."""
    return {
        "minute": minute.minute,
        "jobs_per_s": round(minute.jobs_per_s, 1),
        "latency_ms": {name: round(value, 3) for name, value in minute.load.latency_ms.items()},
        "statuses": minute.load.outcomes,
        "jobs_rows": minute.jobs_rows,
        "jobs_table_mb": round(minute.jobs_table_mb, 1),
        "wal_mb": round(minute.wal_mb, 1),
        "checkpoints": minute.checkpoints,
        "autovacuums": minute.autovacuums,
        "cpu_percent": {name: round(value, 1) for name, value in minute.cpu.items()},
    }


def soak_checks(minutes: Sequence[SoakMinute]) -> list[Check]:
    """Issue 13's done-when: the jobs table passed SOAK_PAST_ROWS during the soak, and every
    minute that ended past it kept SOAK_MIN_KEPT of the first minute's jobs/s."""
    last = minutes[-1]
    reached = Check(
        label=f"soak: jobs rows after minute {last.minute}",
        value=f"{last.jobs_rows:,}",
        target=f">= {SOAK_PAST_ROWS:,}",
        passed=last.jobs_rows >= SOAK_PAST_ROWS,
    )
    label = f"soak: slowest minute past {SOAK_PAST_ROWS:,} rows / minute 1 (jobs/s)"
    target = f">= {SOAK_MIN_KEPT * 100:.0f}%"
    past = [minute for minute in minutes if minute.jobs_rows >= SOAK_PAST_ROWS]
    if not past:
        return [reached, Check(label=label, value="no such minute", target=target, passed=None)]
    slowest = min(past, key=lambda minute: minute.jobs_per_s)
    first = minutes[0].jobs_per_s
    kept = slowest.jobs_per_s / first if first else 0.0
    kept_check = Check(
        label=label,
        value=f"{kept * 100:.0f}% (minute {slowest.minute})",
        target=target,
        passed=kept >= SOAK_MIN_KEPT,
    )
    return [reached, kept_check]


def aligned(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, left_columns: set[int]
) -> list[str]:
    """Columns two spaces apart: text columns left-aligned, numbers right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if i in left_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def result_document(
    result: ScenarioResult, results: Mapping[str, ScenarioResult]
) -> dict[str, Any]:
    """A scenario's result as JSON."""
    scenario = result.scenario
    window_s = None
    if result.window is not None:
        window_s = (result.window[1] - result.window[0]).total_seconds()
    stored = sum(result.stored_jobs.values())
    return {
        "description": scenario.description,
        "driver": scenario.driver,
        "route": None if scenario.driver == "pgbench" else f"{scenario.method} {scenario.path}",
        "jobs_per_request": scenario.jobs if scenario.kind != "health" else 0,
        "users": scenario.users if scenario.config else 0,
        "expected_status": None if scenario.driver == "pgbench" else scenario.expect,
        "duration_s": round(result.load.wall_s, 3),
        "requests": result.load.requests,
        "requests_per_s": round(result.requests_per_s, 1),
        "jobs_per_s": None if result.jobs_per_s is None else round(result.jobs_per_s, 1),
        "latency_ms": {name: round(value, 3) for name, value in result.load.latency_ms.items()},
        "p99_over_p50": round(result.p99_over_p50, 2),
        "statuses": result.load.outcomes,
        "ratios": {
            name: None if value is None else round(value, 4)
            for name, value in ratios(results, result).items()
        },
        "cpu_percent": {name: round(value, 1) for name, value in result.cpu.items()},
        "cpu_seconds": {name: round(value, 3) for name, value in result.cpu_s.items()},
        "decisions": result.decisions,
        "cpu_us_per_decision": {
            name: round(value, 1) for name, value in result.cpu_us_per_decision.items()
        },
        "autovacuums": result.autovacuums,
        "stored_jobs": result.stored_jobs,
        "counters": result.load.counters,
        "queue_left": result.queue_left,
        "stored_jobs_per_s": round(stored / window_s, 1) if window_s and stored else None,
        "unexpected": result.unexpected(),
    }
