"""The dashboard as a person uses it: headless Chromium (Debian's, through Selenium).

A pytest plugin (tests/conftest.py registers it): the `browser` fixture, and the steps every
browser test takes (open the page at a width, sign in, read the page, write a screenshot).

`make test` installs Debian's chromium and chromium-driver when they are missing, as `make
bench` installs wrk. Each test writes a screenshot of each screen it reaches, at a phone's
and a laptop's width, to screenshots/ (git-ignored; JANUS_SCREENSHOTS names another folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.chromium.webdriver import ChromiumDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.seed import SEED_SINGLE

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(os.environ.get("JANUS_SCREENSHOTS", REPO_ROOT / "screenshots"))
WIDTHS = {"phone": 390, "laptop": 1280}
HEIGHT = 900
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives the page is marked `browser` (CI's second pass leaves them out)."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


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


def screenshot(browser: WebDriver, screen: str, top: str | None = None) -> None:
    """Write what the browser shows to screenshots/<screen>-<width>.png, at a phone's and at a
    laptop's width: the page as it is scrolled, or from the element with id `top` down. The
    window gets its size back after."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = browser.get_window_size()
    for width, pixels in WIDTHS.items():
        browser.set_window_size(pixels, HEIGHT)
        if top is not None:
            browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", top)
        browser.save_screenshot(str(SCREENSHOTS / f"{screen}-{width}.png"))
    browser.set_window_size(size["width"], size["height"])


def script_errors(browser: WebDriver, *expected_statuses: int) -> list[str]:
    """What the console logged, but the API's refusals the page was meant to meet: 401
    always, and any of `expected_statuses` (a refusal a test provokes on purpose)."""
    expected = [f"status of {status} " for status in (401, *expected_statuses)]
    assert isinstance(browser, ChromiumDriver)  # the browser fixture's; it keeps the console log
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and not any(status in entry["message"] for status in expected)
    ]


def open_page(browser: WebDriver, url: str, width: str) -> None:
    """The dashboard at `url`, in a window as wide as a phone or a laptop, signed out."""
    browser.set_window_size(WIDTHS[width], HEIGHT)
    browser.get(f"{url}/")
    browser.execute_script("window.sessionStorage.clear()")
    browser.get(f"{url}/")


def sign_in(browser: WebDriver, user_id: str) -> None:
    """Type a user id into the sign-in form and send it."""
    box = browser.find_element(By.ID, "user-id")
    box.clear()
    box.send_keys(user_id)
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()


def signed_in(
    browser: WebDriver, url: str, user: UUID, width: str, *, gauge: str | None = None
) -> None:
    """The dashboard at `url`, as wide as a phone or a laptop, signed in as `user`; with
    `gauge`, once that dependency's gauge is shown."""
    open_page(browser, url, width)
    sign_in(browser, str(user))
    if gauge is not None:
        WebDriverWait(browser, WAIT_S).until(lambda b: gauge in gauges(b))


def read(browser: WebDriver, script: str) -> Any:
    """What `script` returns, read in one go: the page redraws parts of itself every
    refresh, so elements found one call may be gone the next."""
    return browser.execute_script(script)


def terms(browser: WebDriver, list_id: str) -> dict[str, str]:
    """The terms of the description list `list_id` as a person reads them: term -> its
    description's text."""
    pairs = read(
        browser,
        f"return Array.from(document.querySelectorAll('#{list_id} dt'),"
        " (dt) => [dt.textContent, dt.nextElementSibling.textContent]);",
    )
    return dict(pairs)


def gauges(browser: WebDriver) -> dict[str, str]:
    """Each bucket's gauge as a person reads it: dependency -> its text, and its meter's value."""
    rows = read(
        browser,
        "return Array.from(document.querySelectorAll('#bucket-list li'),"
        " (li) => [li.dataset.dependency, li.innerText + '\\nmeter ' +"
        " li.querySelector('meter').value]);",
    )
    return {dependency: text for dependency, text in rows}


def wait_for_example(browser: WebDriver) -> str:
    """The submit form's body once the page has put its example in (it reads it from
    GET /openapi.json after signing in)."""
    box = "return document.getElementById('submit-body').value;"
    WebDriverWait(browser, WAIT_S).until(lambda b: read(b, box) != "")
    text: str = read(browser, box)
    return text


def job_rows(browser: WebDriver) -> list[str]:
    """The rows of the jobs table as a person reads them, newest first."""
    rows: list[str] = read(
        browser,
        "return Array.from(document.querySelectorAll('#job-table tbody tr'),"
        " (tr) => tr.innerText);",
    )
    return rows


def post_seed_job(url: str, user: UUID) -> requests.Response:
    """The seed's single job, sent to the service at `url` as `user` over HTTP."""
    return requests.post(
        f"{url}/dashboard/jobs", json=SEED_SINGLE, headers={"X-User-ID": str(user)}, timeout=10
    )
