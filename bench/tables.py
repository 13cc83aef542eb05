"""The printed tables: one row per scenario, CPU per decision beside the twin's, the targets,
the soak minute by minute; numbers right-aligned, text left."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bench.report import Check, ratios
from bench.results import CPU_GROUPS, DECISION_CPU_GROUPS, ScenarioResult, SoakMinute
from bench.scenarios import PACING_REFILL_PER_S


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


def _group(result: ScenarioResult) -> str:
    """Requests per group admission decided during the run; "-" when it did not say."""
    mean = None if result.grouping is None else result.grouping.mean_requests
    return "-" if mean is None else f"{mean:.2f}"


def _cpu(cpu: Mapping[str, float]) -> str:
    return "/".join(f"{cpu.get(name, 0):.0f}" for name in CPU_GROUPS)


def _outcomes(result: ScenarioResult) -> str:
    expected = result.scenario.expected_outcomes
    shown = " ".join(
        f"{outcome}:{count}" + ("" if outcome in expected else "!")
        for outcome, count in result.load.outcomes.items()
    )
    if result.scenario.kind in ("claim", "drain"):
        counters = result.load.counters
        shown += f" completed:{counters.get('completed', 0)}"
        for name in ("empty_claims", "short_claims", "not_completed", "lost", "completed_twice"):
            if counters.get(name):
                shown += f" {name}:{counters[name]}!"
        if counters.get("given_back"):
            shown += f" given_back:{counters['given_back']}"
    return shown


def scenario_table(results: Mapping[str, ScenarioResult]) -> list[str]:
    """One row per scenario: rates, latency, ratios to the ceilings, the mean group, CPU, every
    status."""
    header = (
        "scenario", "req/s", "jobs/s", "p50 ms", "p99 ms", "p99/p50", "vs pgbench", "vs twin",
        "vs /health", "x single", "mean group", "CPU% app/pg/load/other", "statuses",
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
                "-" if math.isnan(result.p99_over_p50) else f"{result.p99_over_p50:.1f}",
                _percent(found.get("vs_sql")),
                _percent(found.get("vs_twin")),
                _percent(found.get("vs_health")),
                _multiple(found.get("x_single")),
                _group(result),
                _cpu(result.cpu),
                _outcomes(result),
            )
        )
    return aligned(header, rows, left_columns={0, 12})


def pacing_lines(results: Mapping[str, ScenarioResult]) -> list[str]:
    """What a pacing run did: jobs submitted and handed out per second against the refill,
    and the claims' latency (its row's req/s, p50 and p99 are its claims')."""
    lines = []
    for result in results.values():
        if result.scenario.kind != "pacing":
            continue
        counters, wall_s = result.load.counters, result.load.wall_s
        handed = counters.get("handed_out", 0) / wall_s
        latency = result.load.latency_ms
        lines.append(
            f"{result.name} ({wall_s:g}s): submitted {counters.get('submitted', 0) / wall_s:,.1f} "
            f"jobs/s ({counters.get('waited', 0):,} answered waiting), handed out "
            f"{handed:,.2f} jobs/s against a refill of {PACING_REFILL_PER_S}/s "
            f"({handed / PACING_REFILL_PER_S:.3f}x); {result.load.requests:,} claims "
            f"({counters.get('empty_claims', 0):,} empty), p50 {latency['p50']:.2f} ms, "
            f"p99 {latency['p99']:.2f} ms; jobs/s is the hand-out rate, req/s, p50 and p99 "
            "the claims'."
        )
    return lines


def drain_lines(results: Mapping[str, ScenarioResult]) -> list[str]:
    """What each drain did: jobs, the time spent draining and end to end, the audit."""
    lines = []
    for result in results.values():
        if result.scenario.kind != "drain":
            continue
        counters = result.load.counters
        end_to_end_s = counters.get("end_to_end_ms", 0) / 1000
        rate = counters.get("completed", 0) / end_to_end_s if end_to_end_s else None
        lines.append(
            f"{result.name}: {counters.get('completed', 0):,} of {counters.get('jobs', 0):,} "
            f"jobs completed in {result.load.wall_s:.2f}s draining ({_rate(result.jobs_per_s)} "
            f"jobs/s), {end_to_end_s:.2f}s from the first start to the last job "
            f"({_rate(rate)} jobs/s) over {counters.get('runs', 0)} run(s); lost "
            f"{counters.get('lost', 0)}, completed twice {counters.get('completed_twice', 0)}."
        )
    return lines


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
    """The targets, each with its measured value and PASS, FAIL, or "by hand" for a value
    to compare with an earlier run's."""
    header = ("target", "value", "wanted", "result")
    rows = [(check.label, check.value, check.target, _verdict(check)) for check in checks]
    return aligned(header, rows, left_columns={0, 3})


def _verdict(check: Check) -> str:
    if check.by_hand:
        return "by hand"
    if check.passed is None:
        return "-"
    return "PASS" if check.passed else "FAIL"


def soak_table(minutes: Sequence[SoakMinute]) -> list[str]:
    """Jobs/s and latency minute by minute, with the jobs table, WAL, checkpoints and
    autovacuum runs."""
    header = (
        "minute", "jobs/s", "p50 ms", "p99 ms", "jobs rows", "jobs MB", "dropped", "WAL MB",
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
            str(minute.dropped_partitions),
            f"{minute.wal_mb:,.0f}",
            "-" if minute.checkpoints is None else str(minute.checkpoints),
            str(minute.autovacuums),
            _cpu(minute.cpu),
            " ".join(f"{outcome}:{count}" for outcome, count in minute.load.outcomes.items()),
        )
        for minute in minutes
    ]
    return aligned(header, rows, left_columns={11})


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
