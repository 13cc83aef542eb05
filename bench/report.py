"""What the measured runs say together: the ratios to the ceilings, the targets with PASS or
FAIL, and each result's entry in results.json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.procstat import WorkerMemory
from bench.results import ScenarioResult, SoakMinute
from bench.scenarios import (
    FORBIDDEN_STATUSES,
    HEALTH,
    MAX_P99_OVER_P50,
    MAX_WORKER_RSS_MB,
    PACING,
    PACING_REFILL_PER_S,
    PACING_TOLERANCE,
    READINGS,
    SINGLE_BASELINE,
    SOAK_MAX_GROWTH,
    SOAK_MIN_KEPT,
    TARGETS,
    Reading,
)


@dataclass(frozen=True)
class Check:
    """One target: the measured value, what it must be, and whether it is."""

    label: str
    value: str
    target: str
    passed: bool | None  # None: not measured in this run, or judged by hand
    # Read against an earlier run (bench/scenarios.py's READINGS), by whoever reads the report.
    by_hand: bool = False


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
    (batches): its jobs/s as a multiple of the single hot bucket's. A scenario at connections
    of its own has none: the others run at --connections.
    """
    scenario = result.scenario
    if scenario.driver != "wrk" or scenario.kind == "health" or scenario.connections:
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


def _pacing_check(result: ScenarioResult | None) -> Check:
    """Issue 24: wait-mode jobs far faster than the refill are handed out at the refill."""
    ratio = (
        None
        if result is None or result.jobs_per_s is None
        else (result.jobs_per_s / PACING_REFILL_PER_S)
    )
    return Check(
        label=f"{PACING} hand-outs / refill (jobs/s, issue 24)",
        value="not run" if ratio is None else f"{ratio:.3f}x",
        target=f"1.00x ± {PACING_TOLERANCE:.0%}",
        passed=None if ratio is None else abs(ratio - 1) <= PACING_TOLERANCE,
    )


def evaluate(results: Mapping[str, ScenarioResult], workers: Sequence[WorkerMemory]) -> list[Check]:
    """Every target of bench/scenarios.py, checked against this run."""
    checks = []
    for target in TARGETS:
        ratio = _ratio(results, target.scenario, target.baseline, target.measure)
        unit = "req/s" if target.measure == "requests_per_s" else "jobs/s"
        source = f", {target.source}" if target.source else ""
        checks.append(
            Check(
                label=f"{target.scenario} / {target.baseline} ({unit}{source})",
                value="not run" if ratio is None else _times(ratio, target.minimum),
                target=f">= {_times(target.minimum, target.minimum)}",
                passed=None if ratio is None else ratio >= target.minimum,
            )
        )
    for name, status in FORBIDDEN_STATUSES:
        count = results[name].load.outcomes.get(str(status), 0) if name in results else None
        checks.append(
            Check(
                label=f"{name} answers {status}",
                value="not run" if count is None else f"{count:,}",
                target="0",
                passed=None if count is None else count == 0,
            )
        )
    checks += [_reading(results.get(reading.scenario), reading) for reading in READINGS]
    checks.append(_pacing_check(results.get(PACING)))
    checks += [
        _drain_check(result) for result in results.values() if result.scenario.kind == "drain"
    ]
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


def _drain_check(result: ScenarioResult) -> Check:
    """Issue 26: a drain loses no job and completes none twice (a worker's across SIGTERM)."""
    counters = result.load.counters
    lost, twice = counters.get("lost", 0), counters.get("completed_twice", 0)
    return Check(
        label=f"{result.name} jobs lost / completed twice (issue 26)",
        value=f"{lost} / {twice}",
        target="0 / 0",
        passed=lost == 0 and twice == 0,
    )


def _reading(result: ScenarioResult | None, reading: Reading) -> Check:
    label = {"requests_per_s": "req/s", "p50_ms": "p50"}[reading.measure]
    value = None if result is None else result.measure(reading.measure)
    shown = "not run"
    if value is not None:
        shown = f"{value:,.0f}" if reading.measure == "requests_per_s" else f"{value:.2f} ms"
    return Check(
        label=f"{reading.scenario} {label}",
        value=shown,
        target=reading.wanted,
        passed=None,
        by_hand=value is not None,
    )


def _times(ratio: float, scale: float) -> str:
    """A ratio as a percentage when its target is below 1, else as a multiple."""
    if scale < 1:
        return f"{ratio * 100:.1f}%"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def soak_checks(minutes: Sequence[SoakMinute]) -> list[Check]:
    """Issue 27's done-when: every minute that ended after the first partition of jobs was
    dropped kept SOAK_MIN_KEPT of the first minute's jobs/s, and jobs grew no more than
    SOAK_MAX_GROWTH past its largest size until then."""
    pace = "soak: slowest minute after the first drop / minute 1 (jobs/s)"
    size = "soak: largest jobs after the first drop / largest until it (MB)"
    first_drop = next((m.minute for m in minutes if m.dropped_partitions), None)
    if first_drop is None:
        none = "no partition dropped"
        return [
            Check(label=pace, value=none, target=f">= {SOAK_MIN_KEPT * 100:.0f}%", passed=False),
            Check(label=size, value=none, target=f"<= {SOAK_MAX_GROWTH * 100:.0f}%", passed=False),
        ]
    after = [m for m in minutes if m.minute > first_drop]
    until = [m for m in minutes if m.minute <= first_drop]
    checks = []
    if after:
        slowest = min(after, key=lambda minute: minute.jobs_per_s)
        first = minutes[0].jobs_per_s
        kept = slowest.jobs_per_s / first if first else 0.0
        checks.append(
            Check(
                label=pace,
                value=f"{kept * 100:.0f}% (minute {slowest.minute}; first drop in minute"
                f" {first_drop})",
                target=f">= {SOAK_MIN_KEPT * 100:.0f}%",
                passed=kept >= SOAK_MIN_KEPT,
            )
        )
        largest_until = max(m.jobs_table_mb for m in until)
        largest_after = max(m.jobs_table_mb for m in after)
        growth = largest_after / largest_until if largest_until else 0.0
        checks.append(
            Check(
                label=size,
                value=f"{growth * 100:.0f}% ({largest_after:,.0f} of {largest_until:,.0f} MB)",
                target=f"<= {SOAK_MAX_GROWTH * 100:.0f}%",
                passed=growth <= SOAK_MAX_GROWTH,
            )
        )
    else:
        checks.append(Check(label=pace, value="no minute after it", target="-", passed=False))
    return checks


def result_document(
    result: ScenarioResult, results: Mapping[str, ScenarioResult]
) -> dict[str, Any]:
    """A scenario's result as JSON."""
    scenario = result.scenario
    window_s = None
    if result.window is not None:
        window_s = (result.window[1] - result.window[0]).total_seconds()
    stored = sum(result.stored_jobs.values())
    group = result.grouping
    return {
        "description": scenario.description,
        "driver": scenario.driver,
        "route": None if scenario.driver == "pgbench" else f"{scenario.method} {scenario.path}",
        "jobs_per_request": scenario.jobs if scenario.kind != "health" else 0,
        "users": scenario.users if scenario.config else 0,
        "expected_status": None if scenario.driver == "pgbench" else scenario.expect,
        "connections": result.connections,
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
        # Group admission during the run (None: not said by the service, or no group).
        "groups": None if group is None else group.groups,
        "mean_group_requests": _rounded(None if group is None else group.mean_requests),
        "mean_group_jobs": _rounded(None if group is None else group.mean_jobs),
        "autovacuums": result.autovacuums,
        "stored_jobs": result.stored_jobs,
        "counters": result.load.counters,
        "queue_left": result.queue_left,
        "stored_jobs_per_s": round(stored / window_s, 1) if window_s and stored else None,
        "unexpected": result.unexpected(),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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
        "dropped_partitions": minute.dropped_partitions,
        "cpu_percent": {name: round(value, 1) for name, value in minute.cpu.items()},
    }
