"""What `make bench` shows of group admission (issue 23): single-hot at 16 connections and one
at a single connection.
"""

from __future__ import annotations

from bench.drivers import LoadResult
from bench.report import ratios
from bench.results import ScenarioResult
from bench.scenarios import SCENARIOS, SINGLE_BASELINE

SCENARIO = {scenario.name: scenario for scenario in SCENARIOS}


def measured(name: str, outcomes: dict[str, int]) -> ScenarioResult:
    """A result of `name` with these answers in 10 s and a p50 of 2 ms."""
    latency = {"mean": 2.5, "p50": 2.0, "p90": 3.0, "p99": 4.0, "max": 9.0}
    load = LoadResult(10.0, sum(outcomes.values()), outcomes, latency, output="")
    return ScenarioResult(SCENARIO[name], load, {})


# --- The scenarios -----------------------------------------------------------------------------


def test_the_busy_and_the_idle_rows_send_single_hots_requests_at_their_own_connections() -> None:
    hot = SCENARIO[SINGLE_BASELINE]
    for name, shape in (("single-hot-16", (16, 2)), ("single-1conn", (1, 1))):
        scenario = SCENARIO[name]
        assert (scenario.path, scenario.body, scenario.users) == (hot.path, hot.body, hot.users)
        assert scenario.load_shape(8, 2) == shape
        # The ceilings run at --connections: these rows are read against none of them.
        assert ratios({name: measured(name, {"202": 100})}, measured(name, {"202": 100})) == {}
    assert hot.load_shape(8, 2) == (8, 2)
