"""Retrying an ended job from its detail on the dashboard, in headless Chromium on the real
service under gunicorn and Postgres (tests/support/browser.py): only once the person confirms,
only a failed, expired or cancelled job, and it pays its tokens when a worker is handed it."""

from __future__ import annotations

from uuid import UUID

import psycopg
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import GunicornServer
from tests.support.browser import (
    WAIT_S,
    WIDTHS,
    gauges,
    job_rows,
    screenshot,
    script_errors,
    signed_in,
)
from tests.support.factories import bucket_tokens, stored_job, user_with_config
from tests.support.job_detail import (
    claim_over_http,
    facts,
    fail_over_http,
    focused,
    open_only_job,
    shown,
    submit_over_http,
)
from tests.support.queue import queued_job


def _failed_job(url: str, user: UUID, cost: int) -> str:
    """A job accepted, handed out and failed for good over HTTP; its id."""
    job = submit_over_http(url, user, cost)
    [claimed] = claim_over_http(url, user)
    assert fail_over_http(url, user, claimed, retry=False)["state"] == "failed"
    return job


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_a_person_retries_a_failed_job_after_confirming_and_it_pays_when_handed_out(
    browser: WebDriver,
    gunicorn_server: GunicornServer,
    db: psycopg.Connection,
    openai_user: UUID,
    width: str,
) -> None:
    job = _failed_job(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, width, gauge="openai")
    _open_only_job_in(browser, "failed")
    assert not shown(browser, "job-cancel-offer")

    browser.find_element(By.ID, "job-retry").click()
    assert shown(browser, "job-retry-confirm")
    question = browser.find_element(By.ID, "job-retry-question").text
    assert "takes its tokens from its buckets when a worker is handed it" in question
    screenshot(browser, "retry-confirm", top="job-detail")
    browser.find_element(By.ID, "job-retry-yes").click()

    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b)["State"] == "waiting")
    WebDriverWait(browser, WAIT_S).until(lambda b: "waiting" in job_rows(b)[0])
    # Waiting, it offers Cancel, and no longer Retry.
    assert not shown(browser, "job-retry-offer")
    assert shown(browser, "job-cancel-offer")
    assert not shown(browser, "job-retry-error")
    assert stored_job(db, job, "state, attempts") == {"state": "waiting", "attempts": 0}
    # Nothing is paid until a worker is handed it: the first run's 7 tokens stay spent.
    assert bucket_tokens(db, openai_user, "openai") == 993
    screenshot(browser, "retried", top="job-detail")

    [claimed] = claim_over_http(gunicorn_server.url, openai_user)
    assert (claimed["job_id"], claimed["attempt"]) == (job, 1)
    assert bucket_tokens(db, openai_user, "openai") == 986
    WebDriverWait(browser, WAIT_S).until(lambda b: "986 / 1,000" in gauges(b)["openai"])
    assert script_errors(browser) == []


def test_saying_no_retries_nothing(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    job = _failed_job(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")
    _open_only_job_in(browser, "failed")

    browser.find_element(By.ID, "job-retry").click()
    assert focused(browser) == "job-retry-yes"
    browser.find_element(By.ID, "job-retry-no").click()

    assert not shown(browser, "job-retry-confirm")
    assert shown(browser, "job-retry-offer")
    assert focused(browser) == "job-retry"
    assert stored_job(db, job, "state")["state"] == "failed"
    assert facts(browser)["State"] == "failed"
    assert script_errors(browser) == []


def test_a_person_cancels_a_job_then_retries_it_each_after_confirming(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    job = submit_over_http(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")
    _open_only_job_in(browser, "queued")
    assert not shown(browser, "job-retry-offer")

    browser.find_element(By.ID, "job-cancel").click()
    browser.find_element(By.ID, "job-cancel-yes").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b)["State"] == "cancelled")
    assert bucket_tokens(db, openai_user, "openai") == 1000
    assert shown(browser, "job-retry-offer")

    browser.find_element(By.ID, "job-retry").click()
    assert shown(browser, "job-retry-confirm")
    browser.find_element(By.ID, "job-retry-yes").click()

    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b)["State"] == "waiting")
    assert stored_job(db, job, "state")["state"] == "waiting"
    # Its tokens came back with the cancel; it pays them again when it is handed out.
    assert bucket_tokens(db, openai_user, "openai") == 1000
    assert script_errors(browser) == []


def test_an_expired_job_is_retried_after_confirming_and_waits_in_line_again(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    # A refill too slow to show, but not 0: a bucket that never refills cannot be waited for.
    user = user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0.0001}})
    db.execute(
        "UPDATE token_buckets SET tokens = 0, refilled_at = now() WHERE user_id = %s", [user]
    )
    waiting = requests.post(
        f"{gunicorn_server.url}/dashboard/jobs",
        json={**queued_job({"openai": 6}), "when_limited": "wait"},
        headers={"X-User-ID": str(user)},
        timeout=10,
    )
    assert waiting.status_code == 202, waiting.text
    job = waiting.json()["job_id"]
    db.execute("UPDATE jobs SET expires_at = now() - interval '1 second' WHERE job_id = %s", [job])
    assert claim_over_http(gunicorn_server.url, user) == []
    signed_in(browser, gunicorn_server.url, user, "laptop", gauge="openai")
    _open_only_job_in(browser, "expired")

    browser.find_element(By.ID, "job-retry").click()
    browser.find_element(By.ID, "job-retry-yes").click()

    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b)["State"] == "waiting")
    assert claim_over_http(gunicorn_server.url, user) == []
    assert stored_job(db, job, "state, in_line_at IS NOT NULL AS in_line") == {
        "state": "waiting",
        "in_line": True,
    }
    assert script_errors(browser) == []


def test_a_job_retried_elsewhere_while_its_detail_is_open_is_refused_with_the_apis_words(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    job = _failed_job(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")
    _open_only_job_in(browser, "failed")
    # Retried, and handed out again, after the page showed it failed.
    db.execute("SELECT retry_jobs(%s, ARRAY[%s]::uuid[])", [openai_user, job])
    assert [one["job_id"] for one in claim_over_http(gunicorn_server.url, openai_user)] == [job]

    browser.find_element(By.ID, "job-retry").click()
    browser.find_element(By.ID, "job-retry-yes").click()

    error = browser.find_element(By.ID, "job-retry-error")
    WebDriverWait(browser, WAIT_S).until(lambda b: error.text != "")
    assert error.text.startswith("409 Conflict: the job has not ended (running)")
    assert facts(browser)["State"] == "running"
    assert not shown(browser, "job-retry-offer")
    assert stored_job(db, job, "state, attempts") == {"state": "running", "attempts": 1}
    screenshot(browser, "retry-refused", top="job-detail")
    assert script_errors(browser, 409) == []


def _open_only_job_in(browser: WebDriver, state: str) -> None:
    """Open the one job of the list, which must be in `state`."""
    open_only_job(browser)
    assert facts(browser)["State"] == state
