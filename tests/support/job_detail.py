"""A job's detail on the dashboard, with its Cancel and Retry buttons, as the browser tests
of both read and drive it (tests/test_dashboard_cancel.py, tests/test_dashboard_retry.py),
and the queue calls they make over HTTP on the real service meanwhile.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import WAIT_S, job_rows, read, terms
from tests.support.queue import CLAIM, lease_route, queued_job


def submit_over_http(url: str, user: UUID, cost: int) -> str:
    """One job costing `cost` openai tokens, accepted over HTTP; its id."""
    answer = requests.post(
        f"{url}/dashboard/jobs",
        json=queued_job({"openai": cost}),
        headers={"X-User-ID": str(user)},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


def claim_over_http(url: str, user: UUID) -> list[dict[str, Any]]:
    """POST /system/jobs/claim over HTTP, as a worker does; the jobs handed out."""
    answer = requests.post(
        f"{url}{CLAIM}", json={"limit": 10}, headers={"X-User-ID": str(user)}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    jobs: list[dict[str, Any]] = answer.json()["jobs"]
    return jobs


def fail_over_http(url: str, user: UUID, claimed: dict[str, Any], **body: Any) -> dict[str, Any]:
    """POST /system/jobs/{job_id}/fail over HTTP under the claimed job's lease; the answer."""
    answer = requests.post(
        f"{url}{lease_route(claimed['job_id'], 'fail')}",
        json={"lease_token": claimed["lease_token"], "error": "upstream down", **body},
        headers={"X-User-ID": str(user)},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    failed: dict[str, Any] = answer.json()
    return failed


def open_only_job(browser: WebDriver) -> None:
    """Open the one job of the list once it is listed; its detail has the focus on Close."""
    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 1)
    browser.find_element(By.CSS_SELECTOR, "#job-table tbody tr td button").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: focused(b) == "job-detail-close")


def facts(browser: WebDriver) -> dict[str, str]:
    """The open job's facts as a person reads them: name -> value."""
    return terms(browser, "job-detail-facts")


def shown(browser: WebDriver, element_id: str) -> bool:
    """Whether the element is on screen."""
    on_screen: bool = browser.find_element(By.ID, element_id).is_displayed()
    return on_screen


def focused(browser: WebDriver) -> str:
    """The id of the element with the focus."""
    element_id: str = read(browser, "return document.activeElement.id;")
    return element_id
