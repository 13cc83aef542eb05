"""The dashboard as a person uses it: headless Chromium on the real service under gunicorn and
Postgres (tests/support/browser.py: the browser, and the steps every browser test takes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest
import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from janus.db.keys import create_key
from janus.history import PAGE_READS_AT_MOST
from janus.keys import Scope
from tests.conftest import GunicornServer
from tests.support.browser import (
    WAIT_S,
    WIDTHS,
    gauges,
    job_rows,
    open_page,
    post_seed_job,
    read,
    screenshot,
    script_errors,
    sign_in,
    signed_in,
    wait_for_example,
)
from tests.support.factories import user_with_config
from tests.support.history import insert_jobs
from tests.support.seed import SEED_SINGLE


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_a_person_enters_their_id_and_sees_their_buckets(
    browser: WebDriver, gunicorn_server: GunicornServer, openai_user: UUID, width: str
) -> None:
    open_page(browser, gunicorn_server.url, width)
    screenshot(browser, "sign-in")

    sign_in(browser, str(openai_user))
    WebDriverWait(browser, WAIT_S).until(lambda b: "openai" in gauges(b))

    assert "1,000 / 1,000" in gauges(browser)["openai"]
    assert "Full in\nfull" in gauges(browser)["openai"]
    assert browser.find_element(By.ID, "who-id").text == str(openai_user)
    # The id travels in a header, never in the address.
    assert str(openai_user) not in browser.current_url
    screenshot(browser, "buckets")
    assert script_errors(browser) == []


def test_a_job_taken_drops_its_gauge_by_its_cost(
    browser: WebDriver, gunicorn_server: GunicornServer, openai_user: UUID
) -> None:
    signed_in(browser, gunicorn_server.url, openai_user, "laptop")
    WebDriverWait(browser, WAIT_S).until(lambda b: "1,000 / 1,000" in gauges(b).get("openai", ""))

    answer = requests.post(
        f"{gunicorn_server.url}/dashboard/jobs",
        json={"batch_name": "b", "tenant_id": "t", "priority": 5, "dependencies": {"openai": 7}},
        headers={"X-User-ID": str(openai_user)},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text

    # The bucket never refills, so the next refresh shows exactly the job's cost gone.
    WebDriverWait(browser, WAIT_S).until(lambda b: "993 / 1,000" in gauges(b)["openai"])
    assert "\nmeter 993" in gauges(browser)["openai"]
    assert "never: it does not refill" in gauges(browser)["openai"]
    screenshot(browser, "buckets-after-a-job")
    assert script_errors(browser) == []


def test_a_missing_malformed_or_unknown_id_gets_a_clear_message(
    browser: WebDriver, gunicorn_server: GunicornServer
) -> None:
    open_page(browser, gunicorn_server.url, "phone")
    error = browser.find_element(By.ID, "sign-in-error")

    # None at all: the browser asks for it (a required field) and nothing is read.
    sign_in(browser, "")
    assert browser.find_element(By.ID, "user-id").get_property("validationMessage")
    assert browser.find_element(By.ID, "sign-in").is_displayed()
    assert not browser.find_element(By.ID, "buckets").is_displayed()

    sign_in(browser, "alice")
    assert error.text.startswith("That is neither an API key (janus_…) nor a user id")

    sign_in(browser, "00000000-0000-4000-8000-000000000000")
    WebDriverWait(browser, WAIT_S).until(lambda b: "does not name a Janus user" in error.text)
    assert error.text.startswith("401 Unauthorized")
    assert browser.find_element(By.ID, "sign-in").is_displayed()
    screenshot(browser, "unknown-user")
    assert script_errors(browser) == []


def test_a_person_signs_in_with_an_api_key_and_its_scopes_hold(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    user = user_with_config(db, {"openai": {"capacity": 1000, "refill_per_second": 0}})
    reader, _ = create_key(db, user, "dashboard", (Scope.READ,), None)
    open_page(browser, gunicorn_server.url, "laptop")

    # The key's user, once it has a key, cannot be signed in as by its id alone.
    sign_in(browser, str(user))
    error = browser.find_element(By.ID, "sign-in-error")
    WebDriverWait(browser, WAIT_S).until(lambda b: "this user has API keys" in error.text)

    sign_in(browser, reader.text)
    WebDriverWait(browser, WAIT_S).until(lambda b: "openai" in gauges(b))
    assert "1,000 / 1,000" in gauges(browser)["openai"]
    # A read key cannot pause: the page says why, in the API's words.
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.ID, "pause-toggle").is_displayed()
    )
    browser.find_element(By.ID, "pause-toggle").click()
    browser.find_element(By.ID, "pause-yes").click()
    refusal = browser.find_element(By.ID, "rules-error")
    WebDriverWait(browser, WAIT_S).until(lambda b: refusal.text != "")
    assert refusal.text == "403 Forbidden: this API key lacks the scope this route needs: admin"
    assert reader.text not in browser.current_url
    screenshot(browser, "signed-in-with-a-key")
    assert script_errors(browser, 401, 403) == []


def test_changing_user_shows_only_the_new_users_buckets(
    browser: WebDriver, gunicorn_server: GunicornServer, openai_user: UUID, db: psycopg.Connection
) -> None:
    other = user_with_config(db, {"stripe": {"capacity": 4, "refill_per_second": 1}})
    signed_in(browser, gunicorn_server.url, openai_user, "laptop", gauge="openai")

    browser.find_element(By.ID, "sign-out").click()
    sign_in(browser, str(other))
    WebDriverWait(browser, WAIT_S).until(lambda b: "stripe" in gauges(b))

    assert list(gauges(browser)) == ["stripe"]
    assert browser.find_element(By.ID, "who-id").text == str(other)
    assert script_errors(browser) == []


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_the_seeds_job_appears_with_its_status_and_a_rejection_with_its_reason(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection, width: str
) -> None:
    # Room for the seed's job once (openai 2, stripe 1), refilling a token a second.
    user = user_with_config(
        db,
        {
            "openai": {"capacity": 2, "refill_per_second": 1},
            "stripe": {"capacity": 1, "refill_per_second": 1},
        },
    )
    signed_in(browser, gunicorn_server.url, user, width)
    WebDriverWait(browser, WAIT_S).until(
        lambda b: browser.find_element(By.ID, "jobs-empty").is_displayed()
    )

    answers = [
        requests.post(
            f"{gunicorn_server.url}/dashboard/jobs",
            json=SEED_SINGLE,
            headers={"X-User-ID": str(user)},
            timeout=10,
        )
        for _ in range(2)
    ]
    assert [answer.status_code for answer in answers] == [202, 429]
    retry_after = answers[1].headers["Retry-After"]

    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 2)
    rejected, accepted = job_rows(browser)
    assert "Rejected" in rejected and "tenant-abc" in rejected
    assert f"rate limit exceeded; retry after {retry_after} s" in rejected
    assert "Accepted" in accepted and "queued" in accepted
    screenshot(browser, "jobs")

    # The accepted job opens to show its costs and payload.
    browser.find_elements(By.CSS_SELECTOR, "#job-table tbody tr td button")[1].click()
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.ID, "job-detail").is_displayed()
    )
    detail = browser.find_element(By.ID, "job-detail").text
    assert '"custom_key": "custom_value"' in detail
    assert '{"openai":2,"stripe":1}' in detail
    screenshot(browser, "job-detail")
    assert script_errors(browser) == []


def test_jobs_are_filtered_by_status(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    user = user_with_config(db, {"openai": {"capacity": 2, "refill_per_second": 0}})
    for cost in (2, 2):
        requests.post(
            f"{gunicorn_server.url}/dashboard/jobs",
            json={**SEED_SINGLE, "dependencies": {"openai": cost}},
            headers={"X-User-ID": str(user)},
            timeout=10,
        )
    signed_in(browser, gunicorn_server.url, user, "laptop")
    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 2)

    browser.find_element(By.CSS_SELECTOR, '#filter-status option[value="Rejected"]').click()
    browser.find_element(By.CSS_SELECTOR, "#job-filters button").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 1)
    assert "Rejected" in job_rows(browser)[0]
    assert script_errors(browser) == []


def test_a_page_that_read_its_bound_without_a_match_says_so_and_older_finds_the_match(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    user = user_with_config(db, {"openai": {"capacity": 2, "refill_per_second": 0}})
    now = datetime.now(UTC)
    [accepted] = insert_jobs(db, user, 1, newest=now - timedelta(hours=1))
    insert_jobs(db, user, PAGE_READS_AT_MOST, newest=now, spacing_s=1e-3, status="Rejected",
                state=None)  # fmt: skip
    signed_in(browser, gunicorn_server.url, user, "laptop")
    browser.find_element(By.CSS_SELECTOR, '#filter-status option[value="Accepted"]').click()
    browser.find_element(By.CSS_SELECTOR, "#job-filters button").click()
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.ID, "jobs-none-yet").is_displayed()
    )
    assert not browser.find_element(By.ID, "jobs-empty").is_displayed()

    browser.find_element(By.ID, "jobs-older").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 1)
    assert str(accepted)[-8:] in job_rows(browser)[0]
    assert not browser.find_element(By.ID, "jobs-none-yet").is_displayed()
    assert script_errors(browser) == []


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_pausing_after_confirming_makes_jobs_403_and_resuming_undoes_it(
    browser: WebDriver, gunicorn_server: GunicornServer, open_user: UUID, width: str
) -> None:
    signed_in(browser, gunicorn_server.url, open_user, width)
    state = browser.find_element(By.ID, "pause-state")
    WebDriverWait(browser, WAIT_S).until(lambda b: state.text == "Admitting jobs.")
    assert "Config version 1 (enforce mode)" in browser.find_element(By.ID, "rules-summary").text

    # Nothing changes until the person confirms.
    browser.find_element(By.ID, "pause-toggle").click()
    assert browser.find_element(By.ID, "pause-confirm").is_displayed()
    screenshot(browser, "pause-confirm")
    browser.find_element(By.ID, "pause-no").click()
    assert post_seed_job(gunicorn_server.url, open_user).status_code == 202

    browser.find_element(By.ID, "pause-toggle").click()
    browser.find_element(By.ID, "pause-yes").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: state.text.startswith("Paused since"))
    refused = post_seed_job(gunicorn_server.url, open_user)
    assert refused.status_code == 403
    assert refused.json()["description"] == "service paused"
    screenshot(browser, "paused")
    # The page's own form meets the same refusal, and shows it.
    browser.find_element(By.ID, "submit-send").click()
    status = browser.find_element(By.ID, "submit-status")
    WebDriverWait(browser, WAIT_S).until(lambda b: status.text == "403 Forbidden")
    assert (
        '"description": "service paused"' in browser.find_element(By.ID, "submit-answer-body").text
    )
    screenshot(browser, "paused-submit", top="submit-answer")

    browser.find_element(By.ID, "pause-toggle").click()
    browser.find_element(By.ID, "pause-yes").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: state.text == "Admitting jobs.")
    assert post_seed_job(gunicorn_server.url, open_user).status_code == 202
    assert script_errors(browser, 403) == []


def _focused(browser: WebDriver) -> str:
    focused: str = read(browser, "return document.activeElement.id;")
    return focused


def test_a_person_with_only_a_keyboard_signs_in_sends_a_job_and_pauses(
    browser: WebDriver, gunicorn_server: GunicornServer, open_user: UUID
) -> None:
    open_page(browser, gunicorn_server.url, "laptop")
    # The page starts with the cursor in the user id box; Enter sends the form.
    assert _focused(browser) == "user-id"
    ActionChains(browser).send_keys(str(open_user), Keys.ENTER).perform()
    WebDriverWait(browser, WAIT_S).until(lambda b: "openai" in gauges(b))
    wait_for_example(browser)

    # From the body of the submit form, Tab reaches the key, Quote and Send in that order.
    browser.find_element(By.ID, "submit-body").click()
    order = []
    for _ in range(3):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        order.append(_focused(browser))
    assert order == ["submit-key", "submit-quote", "submit-send"]
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    status = browser.find_element(By.ID, "submit-status")
    WebDriverWait(browser, WAIT_S).until(lambda b: status.text == "202 Accepted")

    # Pause: Enter on the button, then the confirmation has the focus on Yes.
    browser.find_element(By.ID, "pause-toggle").send_keys(Keys.ENTER)
    assert _focused(browser) == "pause-yes"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    state = browser.find_element(By.ID, "pause-state")
    WebDriverWait(browser, WAIT_S).until(lambda b: state.text.startswith("Paused since"))

    # Every control a person can reach has a name a screen reader says.
    unnamed = read(
        browser,
        "return Array.from(document.querySelectorAll('button, input, select, textarea, a'))"
        ".filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
        " && !e.textContent.trim()).map((e) => e.id || e.outerHTML);",
    )
    assert unnamed == []
    assert script_errors(browser) == []


def test_a_jobs_payload_is_shown_exactly_as_it_was_sent(
    browser: WebDriver, gunicorn_server: GunicornServer, open_user: UUID
) -> None:
    # Numbers a browser's JSON.parse would change: beyond a double, and a zero after a point.
    payload = (
        '{"big": 1e400, "n": 1234567890123456789012345678901234567890, "x": 1.10, "s": "a,\\"b}"}'
    )
    body = f'{{"batch_name": "b", "tenant_id": "t", "priority": 5, "payload": {payload}}}'
    answer = requests.post(
        f"{gunicorn_server.url}/dashboard/jobs",
        data=body.encode(),
        headers={"X-User-ID": str(open_user), "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    signed_in(browser, gunicorn_server.url, open_user, "laptop")
    WebDriverWait(browser, WAIT_S).until(lambda b: len(job_rows(b)) == 1)

    browser.find_element(By.CSS_SELECTOR, "#job-table tbody tr td button").click()
    shown = browser.find_element(By.ID, "job-detail-payload")
    WebDriverWait(browser, WAIT_S).until(lambda b: shown.text != "")
    assert shown.text == (
        "{\n"
        '  "big": 1e400,\n'
        '  "n": 1234567890123456789012345678901234567890,\n'
        '  "x": 1.10,\n'
        '  "s": "a,\\"b}"\n'
        "}"
    )
    assert script_errors(browser) == []
