"""The dashboard as a person uses it: headless Chromium (Debian's, through Selenium) on the
real service under gunicorn and Postgres.

`make test` installs Debian's chromium and chromium-driver when they are missing, as `make
bench` installs wrk. Each test writes a screenshot of each screen it reaches, at a phone's
and a laptop's width, to screenshots/ (git-ignored; JANUS_SCREENSHOTS names another folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import REPO_ROOT, GunicornServer
from tests.support.factories import user_with_config
from tests.support.seed import SEED_SINGLE

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(os.environ.get("JANUS_SCREENSHOTS", REPO_ROOT / "screenshots"))
WIDTHS = {"phone": 390, "laptop": 1280}
WAIT_S = 10
# What Chromium needs to run headless here, as root, and quietly on a closed network.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a profile of its own."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Chromium is missing: `make test` installs Debian's chromium and chromium-driver"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(browser: WebDriver, screen: str, width: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{screen}-{width}.png"))


def _script_errors(browser: WebDriver) -> list[str]:
    """What the console logged, but the API's refusals the page was meant to meet."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE"
        and "the server responded with a status of 401" not in entry["message"]
    ]


def _sign_in(browser: WebDriver, user_id: str) -> None:
    box = browser.find_element(By.ID, "user-id")
    box.clear()
    box.send_keys(user_id)
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()


def _gauges(browser: WebDriver) -> dict[str, str]:
    """Each bucket's gauge as a person reads it: dependency -> its text, and its meter's value.

    Read in one script: the page redraws the gauges every refresh, so elements found one call
    may be gone the next.
    """
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#bucket-list li'),"
        " (li) => [li.dataset.dependency, li.innerText + '\\nmeter ' +"
        " li.querySelector('meter').value]);"
    )
    return {dependency: text for dependency, text in rows}


def _open(browser: WebDriver, server: GunicornServer, width: str) -> None:
    browser.set_window_size(WIDTHS[width], 900)
    browser.get(f"{server.url}/")
    browser.execute_script("window.sessionStorage.clear()")
    browser.get(f"{server.url}/")


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_a_person_enters_their_id_and_sees_their_buckets(
    browser: WebDriver, gunicorn_server: GunicornServer, openai_user: UUID, width: str
) -> None:
    _open(browser, gunicorn_server, width)
    _screenshot(browser, "sign-in", width)

    _sign_in(browser, str(openai_user))
    WebDriverWait(browser, WAIT_S).until(lambda b: "openai" in _gauges(b))

    assert "1,000 / 1,000" in _gauges(browser)["openai"]
    assert "Full in\nfull" in _gauges(browser)["openai"]
    assert browser.find_element(By.ID, "who-id").text == str(openai_user)
    # The id travels in a header, never in the address.
    assert str(openai_user) not in browser.current_url
    _screenshot(browser, "buckets", width)
    assert _script_errors(browser) == []


def test_a_job_taken_drops_its_gauge_by_its_cost(
    browser: WebDriver, gunicorn_server: GunicornServer, openai_user: UUID
) -> None:
    _open(browser, gunicorn_server, "laptop")
    _sign_in(browser, str(openai_user))
    WebDriverWait(browser, WAIT_S).until(lambda b: "1,000 / 1,000" in _gauges(b).get("openai", ""))

    answer = requests.post(
        f"{gunicorn_server.url}/dashboard/jobs",
        json={"batch_name": "b", "tenant_id": "t", "priority": 5, "dependencies": {"openai": 7}},
        headers={"X-User-ID": str(openai_user)},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text

    # The bucket never refills, so the next refresh shows exactly the job's cost gone.
    WebDriverWait(browser, WAIT_S).until(lambda b: "993 / 1,000" in _gauges(b)["openai"])
    assert "\nmeter 993" in _gauges(browser)["openai"]
    assert "never: it does not refill" in _gauges(browser)["openai"]
    _screenshot(browser, "buckets-after-a-job", "laptop")
    assert _script_errors(browser) == []


def test_a_malformed_or_unknown_id_gets_a_clear_message(
    browser: WebDriver, gunicorn_server: GunicornServer
) -> None:
    _open(browser, gunicorn_server, "phone")
    error = browser.find_element(By.ID, "sign-in-error")

    _sign_in(browser, "alice")
    assert error.text.startswith("That is not a user id")

    _sign_in(browser, "00000000-0000-4000-8000-000000000000")
    WebDriverWait(browser, WAIT_S).until(lambda b: "does not name a Janus user" in error.text)
    assert error.text.startswith("401 Unauthorized")
    assert browser.find_element(By.ID, "sign-in").is_displayed()
    _screenshot(browser, "unknown-user", "phone")
    assert _script_errors(browser) == []


def test_changing_user_shows_only_the_new_users_buckets(
    browser: WebDriver, gunicorn_server: GunicornServer, openai_user: UUID, db: psycopg.Connection
) -> None:
    other = user_with_config(db, {"stripe": {"capacity": 4, "refill_per_second": 1}})
    _open(browser, gunicorn_server, "laptop")
    _sign_in(browser, str(openai_user))
    WebDriverWait(browser, WAIT_S).until(lambda b: "openai" in _gauges(b))

    browser.find_element(By.ID, "sign-out").click()
    _sign_in(browser, str(other))
    WebDriverWait(browser, WAIT_S).until(lambda b: "stripe" in _gauges(b))

    assert list(_gauges(browser)) == ["stripe"]
    assert browser.find_element(By.ID, "who-id").text == str(other)
    assert _script_errors(browser) == []


def _jobs(browser: WebDriver) -> list[str]:
    """The rows of the jobs table as a person reads them, newest first (read in one script)."""
    rows: list[str] = browser.execute_script(
        "return Array.from(document.querySelectorAll('#job-table tbody tr'), (tr) => tr.innerText);"
    )
    return rows


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
    _open(browser, gunicorn_server, width)
    _sign_in(browser, str(user))
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

    WebDriverWait(browser, WAIT_S).until(lambda b: len(_jobs(b)) == 2)
    rejected, accepted = _jobs(browser)
    assert "Rejected" in rejected and "tenant-abc" in rejected
    assert f"rate limit exceeded; retry after {retry_after} s" in rejected
    assert "Accepted" in accepted and "queued" in accepted
    _screenshot(browser, "jobs", width)

    # The accepted job opens to show its costs and payload.
    browser.find_elements(By.CSS_SELECTOR, "#job-table tbody tr td button")[1].click()
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.ID, "job-detail").is_displayed()
    )
    detail = browser.find_element(By.ID, "job-detail").text
    assert '"custom_key": "custom_value"' in detail
    assert '{"openai":2,"stripe":1}' in detail
    _screenshot(browser, "job-detail", width)
    assert _script_errors(browser) == []


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
    _open(browser, gunicorn_server, "laptop")
    _sign_in(browser, str(user))
    WebDriverWait(browser, WAIT_S).until(lambda b: len(_jobs(b)) == 2)

    browser.find_element(By.CSS_SELECTOR, '#filter-status option[value="Rejected"]').click()
    browser.find_element(By.CSS_SELECTOR, "#job-filters button").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: len(_jobs(b)) == 1)
    assert "Rejected" in _jobs(browser)[0]
    assert _script_errors(browser) == []


def _post_seed_job(server: GunicornServer, user: UUID) -> requests.Response:
    return requests.post(
        f"{server.url}/dashboard/jobs",
        json=SEED_SINGLE,
        headers={"X-User-ID": str(user)},
        timeout=10,
    )


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_pausing_after_confirming_makes_jobs_403_and_resuming_undoes_it(
    browser: WebDriver, gunicorn_server: GunicornServer, open_user: UUID, width: str
) -> None:
    _open(browser, gunicorn_server, width)
    _sign_in(browser, str(open_user))
    state = browser.find_element(By.ID, "pause-state")
    WebDriverWait(browser, WAIT_S).until(lambda b: state.text == "Admitting jobs.")
    assert "Config version 1 (enforce mode)" in browser.find_element(By.ID, "rules-summary").text

    # Nothing changes until the person confirms.
    browser.find_element(By.ID, "pause-toggle").click()
    assert browser.find_element(By.ID, "pause-confirm").is_displayed()
    _screenshot(browser, "pause-confirm", width)
    browser.find_element(By.ID, "pause-no").click()
    assert _post_seed_job(gunicorn_server, open_user).status_code == 202

    browser.find_element(By.ID, "pause-toggle").click()
    browser.find_element(By.ID, "pause-yes").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: state.text.startswith("Paused since"))
    refused = _post_seed_job(gunicorn_server, open_user)
    assert refused.status_code == 403
    assert refused.json()["description"] == "service paused"
    _screenshot(browser, "paused", width)

    browser.find_element(By.ID, "pause-toggle").click()
    browser.find_element(By.ID, "pause-yes").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: state.text == "Admitting jobs.")
    assert _post_seed_job(gunicorn_server, open_user).status_code == 202
    assert _script_errors(browser) == []
