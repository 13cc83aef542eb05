"""What `make bench` shows of pacing (issue 24): wait-mode jobs far faster than the refill,
handed out at the refill within 2% over the run, and the claims' latency."""

from __future__ import annotations

from typing import Any

import pytest

from bench.arguments import parse
from bench.drivers import LoadResult
from bench.measure import Bench
from bench.report import evaluate
from bench.results import ScenarioResult
from bench.scenarios import (
    DEFAULT_DURATION_S,
    PACING,
    PACING_CONFIG,
    PACING_DURATION_S,
    PACING_REFILL_PER_S,
    PACING_SUBMIT_PER_S,
    SCENARIOS,
    durations_text,
)
from bench.tables import pacing_lines, scenario_table

SCENARIO = {scenario.name: scenario for scenario in SCENARIOS}


def pacing_result(handed_out: int, wall_s: float = 60.0) -> ScenarioResult:
    """A pacing run that handed out `handed_out` jobs in `wall_s`."""
    load = LoadResult(
        wall_s=wall_s,
        requests=1200,
        outcomes={"200": 2400, "202": 30000},
        latency_ms={"mean": 4.0, "p50": 3.5, "p90": 6.0, "p99": 12.0, "max": 40.0},
        output="",
        counters={
            "submitted": 30000,
            "waited": 30000,
            "not_waited": 0,
            "handed_out": handed_out,
            "completed": handed_out,
            "empty_claims": 40,
        },
    )
    return ScenarioResult(SCENARIO[PACING], load, {"app": 1.0, "postgres": 1.0})


def test_the_pacing_scenario_submits_wait_mode_jobs_at_ten_times_its_one_refill() -> None:
    scenario = SCENARIO[PACING]
    body: dict[str, Any] = scenario.body or {}
    assert scenario.kind == "pacing" and scenario.path == "/system/jobs"
    assert body["when_limited"] == "wait" and body["dependencies"] == {"openai": 1}
    # Nothing expires within any run, however long.
    assert body["max_wait_seconds"] >= 3600
    [bucket] = PACING_CONFIG["dependencies"].values()
    assert bucket["refill_per_second"] == PACING_REFILL_PER_S
    assert PACING_SUBMIT_PER_S == 10 * PACING_REFILL_PER_S
    # Last: it leaves a line of waiting jobs behind.
    assert SCENARIOS[-1] is scenario


@pytest.mark.parametrize(
    ("argv", "pacing_s", "single_s"),
    [([], PACING_DURATION_S, DEFAULT_DURATION_S), (["--duration", "15"], 15.0, 15.0)],
)
def test_the_pacing_run_lasts_its_own_60_s_unless_duration_is_given(
    argv: list[str], pacing_s: float, single_s: float
) -> None:
    args = parse(argv)
    bench = Bench(args, "", None, None, {}, None, None, {})  # type: ignore[arg-type]
    assert bench.duration_of(SCENARIO[PACING]) == pacing_s
    assert bench.duration_of(SCENARIO["single-hot"]) == single_s
    assert durations_text(args.duration) == (
        "15s" if argv else f"{DEFAULT_DURATION_S:g}s ({PACING} {PACING_DURATION_S:g}s)"
    )


@pytest.mark.parametrize(
    ("of_refill", "verdict"), [(1.0, True), (1.019, True), (0.981, True), (1.025, False)]
)
def test_the_hand_out_rate_must_be_the_refill_within_2_percent(
    of_refill: float, verdict: bool
) -> None:
    handed_out = round(of_refill * PACING_REFILL_PER_S * 60)
    results = {PACING: pacing_result(handed_out)}
    [check] = [c for c in evaluate(results, []) if c.label.startswith(PACING)]
    assert check.passed is verdict
    assert check.value == f"{handed_out / 60 / PACING_REFILL_PER_S:.3f}x"


def test_a_bench_without_the_pacing_run_does_not_judge_it() -> None:
    [check] = [c for c in evaluate({}, []) if c.label.startswith(PACING)]
    assert check.passed is None and check.value == "not run"


def test_the_report_prints_both_rates_and_the_claim_latency() -> None:
    result = pacing_result(PACING_REFILL_PER_S * 60 + 12)
    [line] = pacing_lines({PACING: result})
    assert "submitted 500.0 jobs/s" in line
    handed = PACING_REFILL_PER_S + 0.2
    assert (
        f"handed out {handed:.2f} jobs/s against a refill of {PACING_REFILL_PER_S}/s "
        f"({handed / PACING_REFILL_PER_S:.3f}x)"
    ) in line
    assert "1,200 claims (40 empty), p50 3.50 ms, p99 12.00 ms" in line
    # Claims and completes answer 200, submissions 202: neither is unexpected.
    assert result.unexpected() == []
    [row] = scenario_table({PACING: result})[1:]
    assert "200:2400 202:30000" in row and "!" not in row


def test_a_job_that_did_not_wait_is_reported() -> None:
    result = pacing_result(PACING_REFILL_PER_S * 60)
    counters = dict(result.load.counters, not_waited=3)
    result.load = LoadResult(**{**result.load.__dict__, "counters": counters})
    assert result.unexpected() == [f"{PACING}: 3 jobs did not wait, though submitted at ten "
                                   "times the refill"]  # fmt: skip
