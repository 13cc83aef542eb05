"""What `make bench` shows of group admission (issue 23): single-hot at 16 connections and one
at a single connection, the mean group each run saw (read from GET /metrics before and after
it), and the issue's targets under the table.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.drivers import LoadResult
from bench.report import evaluate, ratios, result_document
from bench.results import ScenarioResult
from bench.scenarios import SCENARIOS, SINGLE_BASELINE
from bench.service_metrics import (
    GROUP_JOBS,
    GROUP_REQUESTS,
    Grouping,
    Totals,
    grouping,
    histogram_totals,
    scrape_groups,
)
from bench.tables import check_table, scenario_table

SCENARIO = {scenario.name: scenario for scenario in SCENARIOS}


def exposition(groups: list[tuple[str, int, int]]) -> bytes:
    """GET /metrics's text with the two group histograms, observed once per (label, requests,
    jobs): labels as a route family would be, to show that every label's series is added."""
    registry = CollectorRegistry()
    requests = Histogram(GROUP_REQUESTS, "Requests per group.", ["source"], registry=registry)
    jobs = Histogram(GROUP_JOBS, "Jobs per group.", ["source"], registry=registry)
    for source, request_count, job_count in groups:
        requests.labels(source).observe(request_count)
        jobs.labels(source).observe(job_count)
    return generate_latest(registry)


def measured(name: str, outcomes: dict[str, int], group: Grouping | None = None) -> ScenarioResult:
    """A result of `name` with these answers in 10 s and a p50 of 2 ms."""
    latency = {"mean": 2.5, "p50": 2.0, "p90": 3.0, "p99": 4.0, "max": 9.0}
    load = LoadResult(10.0, sum(outcomes.values()), outcomes, latency, output="")
    return ScenarioResult(SCENARIO[name], load, {}, grouping=group)


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


def test_every_scenario_janus_admits_reads_its_groups() -> None:
    assert {s.name for s in SCENARIOS if s.admits} == {
        "single-hot",
        "single-hot-16",
        "single-spread",
        "single-rejected",
        "single-1conn",
        "partial-100",
        "partial-1000",
        "soak-100",
        "atomic-100",
    }


# --- The mean group ----------------------------------------------------------------------------


def test_a_histograms_totals_add_up_every_label() -> None:
    text = exposition([("dashboard", 3, 3), ("api", 1, 1), ("api", 4, 400)]).decode()

    assert histogram_totals(text, (GROUP_REQUESTS, GROUP_JOBS)) == {
        GROUP_REQUESTS: Totals(count=3, sum=8),
        GROUP_JOBS: Totals(count=3, sum=404),
    }
    assert histogram_totals(text, ("janus_absent",)) == {}


def test_the_mean_group_is_what_the_run_added() -> None:
    before = histogram_totals(exposition([("api", 1, 1)]).decode(), (GROUP_REQUESTS, GROUP_JOBS))
    after = histogram_totals(
        exposition([("api", 1, 1), ("api", 2, 2), ("api", 6, 6)]).decode(),
        (GROUP_REQUESTS, GROUP_JOBS),
    )

    assert grouping(before, after) == Grouping(groups=2, mean_requests=4.0, mean_jobs=4.0)
    # A labelled series appears with its first observation: absent before is empty before.
    assert grouping({}, after) == Grouping(groups=3, mean_requests=3.0, mean_jobs=3.0)
    assert grouping(after, after) == Grouping(groups=0)


def test_no_group_histogram_or_no_scrape_says_nothing() -> None:
    after = {GROUP_REQUESTS: Totals(count=2, sum=5)}

    assert grouping({}, {}) == Grouping()
    assert grouping(None, after) == Grouping()
    assert grouping({}, None) == Grouping()
    assert grouping({}, after) == Grouping(groups=2, mean_requests=2.5)


class _Metrics(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        found = self.path == "/metrics"
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(self.body if found else b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """A server whose GET /metrics shows a group of 3 requests and 30 jobs."""
    _Metrics.body = exposition([("dashboard", 3, 30)])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_scrape_reads_get_metrics_and_a_failed_one_reads_nothing(metrics_url: str) -> None:
    assert scrape_groups(metrics_url) == {
        GROUP_REQUESTS: Totals(count=1, sum=3),
        GROUP_JOBS: Totals(count=1, sum=30),
    }
    assert scrape_groups(f"{metrics_url}/nowhere") is None


def test_the_table_and_the_json_show_the_mean_group_or_a_dash() -> None:
    results = {
        "single-hot": measured("single-hot", {"202": 1000}, Grouping(2, 3.456, 3.456)),
        "single-1conn": measured("single-1conn", {"202": 500}, Grouping()),
        "twin-single": measured("twin-single", {"202": 2000}),
    }

    header, *rows = (re.split(r"\s{2,}", line) for line in scenario_table(results))
    column = header.index("mean group")
    assert {row[0]: row[column] for row in rows} == {
        "single-hot": "3.46",
        "single-1conn": "-",
        "twin-single": "-",
    }
    hot = result_document(results["single-hot"], results)
    assert (hot["groups"], hot["mean_group_requests"], hot["mean_group_jobs"]) == (2, 3.456, 3.456)
    idle = result_document(results["single-1conn"], results)
    assert (idle["groups"], idle["mean_group_requests"]) == (None, None)


# --- The targets -------------------------------------------------------------------------------


def test_issue_23s_targets_are_printed_under_the_table() -> None:
    results = {
        "single-hot": measured("single-hot", {"202": 1000}),
        "twin-single": measured("twin-single", {"202": 1000}),
        "single-spread": measured("single-spread", {"202": 12040}),
        "single-1conn": measured("single-1conn", {"202": 400}),
        "partial-100": measured("partial-100", {"200": 100}),
        "twin-100": measured("twin-100", {"200": 200}),
        "atomic-100": measured("atomic-100", {"202": 90, "503": 3}),
    }

    printed = [line.split() for line in check_table(evaluate(results, []))]

    for wanted in (
        "single-hot / twin-single (jobs/s, issue 23)  1.00x  >= 1.00x  PASS",
        "partial-100 / twin-100 (jobs/s)  50.0%  >= 90.0%  FAIL",
        "partial-100 / twin-100 (jobs/s, issue 23)  50.0%  >= 60.0%  FAIL",
        "atomic-100 / partial-100 (jobs/s, issue 23)  90.0%  >= 85.0%  PASS",
        "atomic-100 answers 503  3  0  FAIL",
        "single-spread req/s  1,204  >= the README's table  by hand",
        "single-1conn p50  2.00 ms  <= 1.1x before group admission  by hand",
    ):
        assert wanted.split() in printed, wanted


def test_a_reading_of_a_scenario_not_run_is_not_judged() -> None:
    [reading] = [check for check in evaluate({}, []) if check.label.startswith("single-1conn p50")]

    assert (reading.value, reading.passed, reading.by_hand) == ("not run", None, False)
