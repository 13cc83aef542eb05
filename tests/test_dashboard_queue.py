"""The dashboard's Queue section, in headless Chromium on the real service under gunicorn and
Postgres (tests/support/browser.py): the jobs in each state, the oldest waiting job, and the
table by dependency with how long each bucket takes to pay for what waits, refreshed with the
page; a job's data only ever written as text."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import GunicornServer
from tests.support.browser import (
    WAIT_S,
    WIDTHS,
    job_rows,
    read,
    screenshot,
    script_errors,
    signed_in,
    terms,
)
from tests.support.job_detail import facts
from tests.support.queue import CLAIM, lease_route, queued_job


@pytest.fixture
def user(queue_user: UUID) -> UUID:
    """openai never refills; search refills a token a second; anything else has no bucket."""
    return queue_user


def _post(url: str, user: UUID, path: str, body: Any) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, headers={"X-User-ID": str(user)}, timeout=10)


def _submit(
    url: str, user: UUID, dependencies: dict[str, int], priority: int = 5, **pacing: Any
) -> None:
    body = {**queued_job(dependencies, priority=priority), **pacing}
    answer = _post(url, user, "/dashboard/jobs", body)
    assert answer.status_code == 202, answer.text


def _make_one_wait(url: str, user: UUID) -> None:
    """Claim the highest-priority job and fail it so that it waits ten minutes."""
    claimed = _post(url, user, CLAIM, {"limit": 1})
    [job] = claimed.json()["jobs"]
    failed = _post(
        url,
        user,
        lease_route(job["job_id"], "fail"),
        {"lease_token": job["lease_token"], "error": "429", "retry_after_seconds": 600},
    )
    assert failed.json()["state"] == "waiting", failed.text


def _states(browser: WebDriver) -> dict[str, str]:
    """The count of each state as a person reads it: name -> count."""
    return terms(browser, "queue-states")


def _rows(browser: WebDriver) -> dict[str, list[str]]:
    """The table by dependency as a person reads it: dependency -> its cells."""
    rows = read(
        browser,
        "return Array.from(document.querySelectorAll('#queue-table tbody tr'),"
        " (tr) => Array.from(tr.cells, (td) => td.textContent));",
    )
    return {row[0]: row[1:] for row in rows}


def _text(browser: WebDriver, element_id: str) -> str:
    text: str = browser.find_element(By.ID, element_id).text
    return text


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_the_queue_shows_each_state_each_dependency_and_how_long_the_buckets_take(
    browser: WebDriver, gunicorn_server: GunicornServer, user: UUID, width: str
) -> None:
    url = gunicorn_server.url
    _submit(url, user, {"openai": 10}, priority=9)
    _make_one_wait(url, user)
    _submit(url, user, {"openai": 80, "search": 1000})
    _submit(url, user, {"openai": 5, "elsewhere": 3})
    _submit(url, user, {"search": 500}, when_limited="wait")
    signed_in(browser, url, user, width, gauge="openai")

    WebDriverWait(browser, WAIT_S).until(lambda b: "openai" in _rows(b))

    assert _states(browser) == {
        "Waiting": "2", "Queued": "2", "Running": "0", "Completed": "0", "Failed": "0",
        "Cancelled": "0", "Expired": "0",
    }  # fmt: skip
    assert _text(browser, "queue-oldest").startswith("The oldest waiting job was submitted ")
    rows = _rows(browser)
    assert list(rows) == ["elsewhere", "openai", "search"]
    # openai: 95 of 100 paid by the queued jobs; the retry waits for 10, and the 5 left never
    # grow.
    assert rows["openai"] == ["1", "2", "0", "10", "5", "never: it does not refill"]
    assert rows["elsewhere"][3:] == ["0", "", "no bucket"]
    # search: all 1,000 paid by the queued job; refilled at 1 a second, the waiting job's 500
    # come in a little over 8 minutes.
    assert rows["search"][:4] == ["1", "1", "0", "500"]
    assert rows["search"][5].endswith(" min")
    assert _text(browser, "queue-drain") == (
        "A bucket that does not refill will never pay for what waits."
    )
    assert not browser.find_element(By.ID, "queue-truncated").is_displayed()
    screenshot(browser, "queue", top="queue")
    assert script_errors(browser) == []


def test_a_waiting_job_shows_when_it_should_start_in_the_list_and_its_detail(
    browser: WebDriver, gunicorn_server: GunicornServer, user: UUID
) -> None:
    url = gunicorn_server.url
    _submit(url, user, {"search": 1000})
    answer = _post(
        url, user, "/dashboard/jobs", {**queued_job({"search": 300}), "when_limited": "wait"}
    )
    assert answer.json()["state"] == "waiting", answer.text
    signed_in(browser, url, user, "laptop", gauge="search")
    # In this browser's own words: what admission told the producer.
    told = read(browser, f"return new Date('{answer.json()['estimated_start']}').toLocaleString();")

    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 2)
    newest, oldest = job_rows(browser)
    assert f"waiting, starts {told}" in newest
    assert "queued" in oldest and "starts" not in oldest
    browser.find_element(By.CSS_SELECTOR, "#job-table tbody tr td button").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b).get("State") == "waiting")
    assert facts(browser)["Estimated start"] == told
    screenshot(browser, "waiting-job", top="job-detail")
    assert script_errors(browser) == []


def test_the_queue_follows_the_jobs_as_the_page_refreshes(
    browser: WebDriver, gunicorn_server: GunicornServer, user: UUID
) -> None:
    url = gunicorn_server.url
    signed_in(browser, url, user, "laptop", gauge="openai")
    WebDriverWait(browser, WAIT_S).until(lambda b: _states(b).get("Queued") == "0")
    assert _text(browser, "queue-oldest") == "No job is waiting or queued."
    assert _rows(browser)["openai"] == ["0", "0", "0", "0", "100", "now"]

    _submit(url, user, {"openai": 7})

    WebDriverWait(browser, WAIT_S).until(lambda b: _states(b).get("Queued") == "1")
    # Paid when it was admitted: nothing waits for the bucket.
    WebDriverWait(browser, WAIT_S).until(lambda b: _rows(b)["openai"][4] == "93")
    assert _rows(browser)["openai"][:4] == ["0", "1", "0", "0"]
    assert _text(browser, "queue-drain") == ""
    assert _text(browser, "queue-oldest").startswith("The oldest queued job ")
    assert script_errors(browser) == []


def test_a_dependency_name_is_shown_as_text(
    browser: WebDriver, gunicorn_server: GunicornServer, user: UUID
) -> None:
    name = "<img src=x onerror=alert(1)>"
    _submit(gunicorn_server.url, user, {name: 1})
    signed_in(browser, gunicorn_server.url, user, "laptop", gauge="openai")

    WebDriverWait(browser, WAIT_S).until(lambda b: name in _rows(b))

    assert read(browser, "return document.querySelectorAll('#queue-table img').length;") == 0
    assert script_errors(browser) == []


def test_signing_out_forgets_the_queue(
    browser: WebDriver, gunicorn_server: GunicornServer, user: UUID
) -> None:
    _submit(gunicorn_server.url, user, {"openai": 7})
    signed_in(browser, gunicorn_server.url, user, "laptop", gauge="openai")
    WebDriverWait(browser, WAIT_S).until(lambda b: "openai" in _rows(b))

    browser.find_element(By.ID, "sign-out").click()

    assert not browser.find_element(By.ID, "queue").is_displayed()
    assert _rows(browser) == {} and _states(browser) == {}
    assert _text(browser, "queue-oldest") == ""
    assert script_errors(browser) == []
