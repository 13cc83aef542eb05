"""The dashboard's chart of jobs per minute, as a person sees it: headless Chromium on the real
service under gunicorn and Postgres (tests/support/browser.py)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import GunicornServer
from tests.support.answers import RATE_LIMITED
from tests.support.browser import (
    WAIT_S,
    WIDTHS,
    gauges,
    post_seed_job,
    read,
    screenshot,
    script_errors,
    signed_in,
)

TOTALS = f"Last hour: 1 accepted, 1 rejected ({RATE_LIMITED} 1)"


def _chart(browser: WebDriver) -> dict[str, Any]:
    """The chart as a person and a screen reader meet it, read in one go."""
    chart: dict[str, Any] = read(
        browser,
        "const svg = document.getElementById('activity-chart');"
        "const box = svg.getBoundingClientRect();"
        "return {summary: document.getElementById('activity-summary').textContent,"
        " label: svg.getAttribute('aria-label'),"
        " title: (svg.querySelector('title') || {}).textContent,"
        " fills: Array.from(svg.querySelectorAll('g.chart-minute rect'),"
        "   (r) => r.getAttribute('fill')),"
        " legend: Array.from(document.querySelectorAll('#activity-legend li'),"
        "   (li) => li.textContent),"
        " left: box.left, right: box.right, viewport: document.documentElement.clientWidth,"
        " scroll: document.documentElement.scrollWidth};",
    )
    return chart


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_the_chart_shows_the_seeds_job_accepted_then_rejected_for_its_rate_limit(
    browser: WebDriver, gunicorn_server: GunicornServer, seed_once_user: UUID, width: str
) -> None:
    user = seed_once_user
    answers = [post_seed_job(gunicorn_server.url, user) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [202, 429]
    assert answers[1].json()["reason"] == RATE_LIMITED

    signed_in(browser, gunicorn_server.url, user, width)
    WebDriverWait(browser, WAIT_S).until(lambda b: _chart(b)["summary"] == TOTALS)

    chart = _chart(browser)
    # The totals are what a screen reader is told too.
    assert chart["label"] == TOTALS and chart["title"] == TOTALS
    # One minute holds both jobs: a bar of accepted and one of the reason's colour on it.
    assert len(chart["fills"]) == 2 and len(set(chart["fills"])) == 2
    assert chart["legend"] == ["Accepted: 1", f"Rejected, {RATE_LIMITED}: 1"]
    # Inside the page at its width: nothing to scroll sideways for.
    assert 0 <= chart["left"] < chart["right"] <= chart["viewport"]
    assert chart["scroll"] <= chart["viewport"]
    screenshot(browser, "activity", top="activity")
    # The top of the page, as docs/dashboard.png shows it in the README.
    browser.execute_script("window.scrollTo(0, 0)")
    WebDriverWait(browser, WAIT_S).until(lambda b: "0 / 2" in gauges(b).get("openai", ""))
    screenshot(browser, "overview")
    assert script_errors(browser) == []
