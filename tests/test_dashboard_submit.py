"""Submitting and quoting from the dashboard's own form, in headless Chromium on the real
service under gunicorn and Postgres: the exact answer shown, the job then in the list."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import GunicornServer
from tests.support.browser import (
    WAIT_S,
    WIDTHS,
    gauges,
    job_rows,
    read,
    screenshot,
    script_errors,
    sign_in,
    signed_in,
    wait_for_example,
)
from tests.support.factories import jobs_of, user_with_config
from tests.support.seed import SEED_SINGLE


def _answer(browser: WebDriver) -> dict[str, Any]:
    """The answer panel as a person reads it: request, status, headers and body."""
    answer: dict[str, Any] = read(
        browser,
        "return {request: document.getElementById('submit-request').textContent,"
        " status: document.getElementById('submit-status').textContent,"
        " headers: document.getElementById('submit-headers').textContent,"
        " body: document.getElementById('submit-answer-body').textContent};",
    )
    return answer


def _wait_for_answer(browser: WebDriver, status: str) -> dict[str, Any]:
    WebDriverWait(browser, WAIT_S).until(lambda b: _answer(b)["status"] == status)
    return _answer(browser)


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_the_seeds_job_sent_from_the_form_shows_the_exact_answer_and_appears(
    browser: WebDriver, gunicorn_server: GunicornServer, seed_once_user: UUID, width: str
) -> None:
    signed_in(browser, gunicorn_server.url, seed_once_user, width, gauge="openai")
    wait_for_example(browser)
    # The form starts with the seed's job, as the API's documentation writes it.
    typed = read(browser, "return document.getElementById('submit-body').value;")
    assert json.loads(typed) == SEED_SINGLE

    screenshot(browser, "submit-form", top="submit")
    browser.find_element(By.ID, "submit-send").click()
    answer = _wait_for_answer(browser, "202 Accepted")

    assert answer["request"] == "POST /dashboard/jobs"
    job_id = json.loads(answer["body"])["job_id"]
    assert json.loads(answer["body"]) == {
        "job_id": job_id,
        "status": "Accepted",
        "reason": "",
    }
    assert "content-type: application/json" in answer["headers"]
    assert "ratelimit-policy: " in answer["headers"]
    # The job appears in the list with its status, and the gauges drop by its cost.
    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 1)
    assert "Accepted" in job_rows(browser)[0] and "queued" in job_rows(browser)[0]
    WebDriverWait(browser, WAIT_S).until(lambda b: "0 / 2" in gauges(b)["openai"])
    assert "0 / 1" in gauges(browser)["stripe"]
    screenshot(browser, "submit-accepted", top="submit-answer")

    # Sent again, it is refused: the 429 is shown as the API wrote it, Retry-After absent
    # because these buckets never refill.
    browser.find_element(By.ID, "submit-send").click()
    answer = _wait_for_answer(browser, "429 Too Many Requests")
    assert json.loads(answer["body"])["status"] == "Rejected"
    assert "rate limit exceeded" in json.loads(answer["body"])["reason"]
    assert "retry-after:" not in answer["headers"]
    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 2)
    assert "Rejected" in job_rows(browser)[0]
    screenshot(browser, "submit-rejected", top="submit-answer")
    assert script_errors(browser, 429) == []


def test_a_quote_shows_what_sending_would_get_and_takes_nothing(
    browser: WebDriver,
    gunicorn_server: GunicornServer,
    seed_once_user: UUID,
    db: psycopg.Connection,
) -> None:
    signed_in(browser, gunicorn_server.url, seed_once_user, "laptop", gauge="openai")
    wait_for_example(browser)

    browser.find_element(By.ID, "submit-quote").click()
    answer = _wait_for_answer(browser, "200 OK")

    assert answer["request"] == "POST /dashboard/jobs/quote"
    quote = json.loads(answer["body"])
    assert (quote["kind"], quote["status"], quote["accepted"]) == ("single", 202, 1)
    # Nothing was stored and no token taken.
    assert jobs_of(db, seed_once_user) == 0
    assert "2 / 2" in gauges(browser)["openai"]
    screenshot(browser, "submit-quote", top="submit-answer")
    assert script_errors(browser) == []


def test_an_atomic_batch_is_quoted_and_sent_as_one(
    browser: WebDriver, gunicorn_server: GunicornServer, seed_once_user: UUID
) -> None:
    signed_in(browser, gunicorn_server.url, seed_once_user, "phone", gauge="openai")
    wait_for_example(browser)
    Select(browser.find_element(By.ID, "submit-kind")).select_by_value("atomic")
    # The seed's batch asks stripe for 5, more than its capacity of 1: all or nothing.
    typed = read(browser, "return document.getElementById('submit-body').value;")
    assert '"jobs"' in typed

    browser.find_element(By.ID, "submit-quote").click()
    quote = json.loads(_wait_for_answer(browser, "200 OK")["body"])
    assert (quote["kind"], quote["status"], quote["accepted"]) == ("atomic", 207, 0)

    browser.find_element(By.ID, "submit-send").click()
    answer = _wait_for_answer(browser, "207 Multi-Status")
    assert answer["request"] == "POST /dashboard/jobs/batch/atomic"
    assert "batch rejected atomically" in answer["body"]
    assert "2 / 2" in gauges(browser)["openai"]
    screenshot(browser, "submit-atomic", top="submit-answer")
    assert script_errors(browser) == []


def test_a_body_that_is_not_json_is_never_sent_and_a_bad_one_shows_the_apis_words(
    browser: WebDriver, gunicorn_server: GunicornServer, seed_once_user: UUID
) -> None:
    signed_in(browser, gunicorn_server.url, seed_once_user, "laptop", gauge="openai")
    wait_for_example(browser)
    box = browser.find_element(By.ID, "submit-body")

    box.clear()
    box.send_keys('{"batch_name": ')
    browser.find_element(By.ID, "submit-send").click()
    error = browser.find_element(By.ID, "submit-error")
    assert error.text.startswith("The body is not JSON")
    assert error.text.endswith("Nothing was sent.")
    assert not browser.find_element(By.ID, "submit-answer").is_displayed()

    box.clear()
    box.send_keys('{"batch_name": "b", "tenant_id": "t", "priority": 11}')
    browser.find_element(By.ID, "submit-send").click()
    answer = _wait_for_answer(browser, "400 Bad Request")
    assert "priority" in answer["body"]
    assert not error.is_displayed()
    screenshot(browser, "submit-invalid", top="submit")
    assert script_errors(browser, 400) == []


def test_the_answer_shown_goes_with_the_user_who_sent_it(
    browser: WebDriver,
    gunicorn_server: GunicornServer,
    seed_once_user: UUID,
    db: psycopg.Connection,
) -> None:
    other = user_with_config(db, {"openai": {"capacity": 4, "refill_per_second": 0}})
    signed_in(browser, gunicorn_server.url, seed_once_user, "laptop", gauge="openai")
    wait_for_example(browser)
    browser.find_element(By.ID, "submit-send").click()
    job_id = json.loads(_wait_for_answer(browser, "202 Accepted")["body"])["job_id"]

    browser.find_element(By.ID, "sign-out").click()
    sign_in(browser, str(other))
    WebDriverWait(browser, WAIT_S).until(lambda b: "4 / 4" in gauges(b).get("openai", ""))

    assert not browser.find_element(By.ID, "submit-answer").is_displayed()
    assert job_id not in read(browser, "return document.body.textContent;")
    assert script_errors(browser) == []
