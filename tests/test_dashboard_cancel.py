"""Cancelling a queued job from its detail on the dashboard, in headless Chromium on the real
service under gunicorn and Postgres (tests/support/browser.py): only once the person confirms,
only while the job is queued, and its tokens back."""

from __future__ import annotations

from uuid import UUID

import psycopg
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
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
from tests.support.factories import bucket_tokens, stored_job
from tests.support.job_detail import (
    claim_over_http,
    facts,
    fail_over_http,
    focused,
    open_only_job,
    shown,
    submit_over_http,
)


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_a_person_cancels_a_queued_job_after_confirming_and_its_tokens_come_back(
    browser: WebDriver,
    gunicorn_server: GunicornServer,
    db: psycopg.Connection,
    openai_user: UUID,
    width: str,
) -> None:
    job = submit_over_http(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, width, gauge="openai")
    assert "993 / 1,000" in gauges(browser)["openai"]
    open_only_job(browser)
    assert facts(browser)["State"] == "queued"

    browser.find_element(By.ID, "job-cancel").click()
    assert shown(browser, "job-cancel-confirm")
    assert "the tokens it took go back" in browser.find_element(By.ID, "job-cancel-question").text
    screenshot(browser, "cancel-confirm", top="job-detail")
    browser.find_element(By.ID, "job-cancel-yes").click()

    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b)["State"] == "cancelled")
    WebDriverWait(browser, WAIT_S).until(lambda b: "cancelled" in job_rows(b)[0])
    # The bucket never refills: the gauge is full again only because the 7 tokens came back.
    WebDriverWait(browser, WAIT_S).until(lambda b: "1,000 / 1,000" in gauges(b)["openai"])
    assert not shown(browser, "job-cancel-offer")
    assert not shown(browser, "job-cancel-error")
    assert stored_job(db, job, "state")["state"] == "cancelled"
    assert bucket_tokens(db, openai_user, "openai") == 1000
    screenshot(browser, "cancelled", top="job-detail")
    assert script_errors(browser) == []


def test_saying_no_cancels_nothing(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    job = submit_over_http(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")
    open_only_job(browser)

    browser.find_element(By.ID, "job-cancel").click()
    browser.find_element(By.ID, "job-cancel-no").click()

    assert not shown(browser, "job-cancel-confirm")
    assert shown(browser, "job-cancel-offer")
    assert stored_job(db, job, "state")["state"] == "queued"
    assert bucket_tokens(db, openai_user, "openai") == 993
    assert facts(browser)["State"] == "queued"
    assert script_errors(browser) == []


def test_a_running_job_offers_no_cancel(
    browser: WebDriver, gunicorn_server: GunicornServer, openai_user: UUID
) -> None:
    job = submit_over_http(gunicorn_server.url, openai_user, 7)
    assert [one["job_id"] for one in claim_over_http(gunicorn_server.url, openai_user)] == [job]
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")

    open_only_job(browser)

    assert facts(browser)["State"] == "running"
    assert not shown(browser, "job-cancel-offer")
    assert script_errors(browser) == []


def test_a_job_waiting_for_its_next_attempt_is_cancelled_and_its_tokens_stay_spent(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    job = submit_over_http(gunicorn_server.url, openai_user, 7)
    [claimed] = claim_over_http(gunicorn_server.url, openai_user)
    failed = fail_over_http(gunicorn_server.url, openai_user, claimed, retry_after_seconds=600)
    assert failed["state"] == "waiting"
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")
    open_only_job(browser)
    assert facts(browser)["State"] == "waiting"

    browser.find_element(By.ID, "job-cancel").click()
    assert "its tokens stay spent" in browser.find_element(By.ID, "job-cancel-question").text
    browser.find_element(By.ID, "job-cancel-yes").click()

    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b)["State"] == "cancelled")
    assert stored_job(db, job, "state")["state"] == "cancelled"
    assert bucket_tokens(db, openai_user, "openai") == 993
    assert script_errors(browser) == []


def test_a_job_claimed_while_its_detail_is_open_is_refused_with_the_apis_words(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    job = submit_over_http(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")
    open_only_job(browser)
    # A worker takes the job after the page showed it queued.
    assert [one["job_id"] for one in claim_over_http(gunicorn_server.url, openai_user)] == [job]

    browser.find_element(By.ID, "job-cancel").click()
    browser.find_element(By.ID, "job-cancel-yes").click()

    error = browser.find_element(By.ID, "job-cancel-error")
    WebDriverWait(browser, WAIT_S).until(lambda b: error.text != "")
    assert error.text.startswith("409 Conflict: the job is running")
    # The job is read anew: it shows running, with nothing left to cancel.
    assert facts(browser)["State"] == "running"
    assert not shown(browser, "job-cancel-offer")
    assert stored_job(db, job, "state")["state"] == "running"
    assert bucket_tokens(db, openai_user, "openai") == 993
    screenshot(browser, "cancel-refused", top="job-detail")
    assert script_errors(browser, 409) == []


def test_a_person_with_only_a_keyboard_cancels_a_job(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, openai_user: UUID
) -> None:
    job = submit_over_http(gunicorn_server.url, openai_user, 7)
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")
    open_only_job(browser)

    # From Close, Shift+Tab reaches Cancel; Enter asks, with the focus on Yes, as Pause… does.
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    assert focused(browser) == "job-cancel"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert focused(browser) == "job-cancel-yes"
    # No gives the focus back to Cancel, and cancels nothing.
    ActionChains(browser).send_keys(Keys.TAB, Keys.ENTER).perform()
    assert focused(browser) == "job-cancel"
    assert not shown(browser, "job-cancel-confirm")
    assert stored_job(db, job, "state")["state"] == "queued"

    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert focused(browser) == "job-cancel-yes"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    WebDriverWait(browser, WAIT_S).until(lambda b: facts(b)["State"] == "cancelled")
    # The button went with the queued state; the focus is on Close, as when a job opens.
    assert focused(browser) == "job-detail-close"
    assert stored_job(db, job, "state")["state"] == "cancelled"
    assert script_errors(browser) == []
