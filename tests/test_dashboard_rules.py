"""The dashboard's Rules screens in headless Chromium on the real service under gunicorn and
Postgres: the active config, its versions and what changed between two of them, editing it
with If-Match, and rolling back, each only once the person confirms."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import GunicornServer
from tests.support.app import CONFIG
from tests.support.browser import (
    WAIT_S,
    WIDTHS,
    gauges,
    read,
    screenshot,
    script_errors,
    sign_in,
    signed_in,
)
from tests.support.factories import create_user, user_with_config
from tests.support.seed import SEED_SINGLE

# What GET /dashboard/config adds to the config a PUT takes.
NOT_EDITED = ("version", "activated_at", "paused")


@pytest.fixture
def thousand_user(db: psycopg.Connection) -> UUID:
    """Version 1: openai holds 1,000 tokens and refills them within a second."""
    return user_with_config(db, {"openai": {"capacity": 1000, "refill_per_second": 1000}})


def _get(url: str, user: UUID) -> requests.Response:
    answer = requests.get(f"{url}{CONFIG}", headers={"X-User-ID": str(user)}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def _editable(url: str, user: UUID) -> dict[str, Any]:
    """The active config as a PUT takes it."""
    body: dict[str, Any] = _get(url, user).json()
    return {name: value for name, value in body.items() if name not in NOT_EDITED}


def _put_capacity(url: str, user: UUID, capacity: int) -> requests.Response:
    """A new version over HTTP: the active config with openai's capacity changed."""
    config = _editable(url, user)
    config["dependencies"]["openai"]["capacity"] = capacity
    answer = requests.put(
        f"{url}{CONFIG}", json=config, headers={"X-User-ID": str(user)}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer


def _post_job(url: str, user: UUID, cost: int) -> requests.Response:
    return requests.post(
        f"{url}/dashboard/jobs",
        json={**SEED_SINGLE, "dependencies": {"openai": cost}},
        headers={"X-User-ID": str(user)},
        timeout=10,
    )


def _rules(browser: WebDriver) -> dict[str, Any]:
    """The Rules section as a person reads it, in one go."""
    rules: dict[str, Any] = read(
        browser,
        """
        // Shown: laid out, as a person sees it (hidden, or under a hidden parent, is not).
        const shown = (id) => document.getElementById(id).getClientRects().length > 0;
        const text = (id) => shown(id) ? document.getElementById(id).textContent : "";
        const items = (id) => Array.from(document.querySelectorAll(`#${id} li`),
          (li) => li.textContent);
        return {
          summary: text("rules-summary"),
          active: text("active-config"),
          versions: Array.from(document.querySelectorAll("#version-list li"),
            (li) => [Number(li.dataset.version), li.textContent]),
          diff: items("diff-list"),
          diffEmpty: text("diff-empty"),
          from: document.getElementById("diff-from").value,
          to: document.getElementById("diff-to").value,
          versionsDone: text("versions-done"),
          versionsError: text("versions-error"),
          editOpen: shown("edit-form"),
          editDone: text("edit-done"),
          editError: text("edit-error-text"),
          fieldErrors: items("edit-error-fields"),
          reload: shown("edit-reload"),
          editConfirm: shown("edit-confirm") ? text("edit-question") : "",
          activateConfirm: shown("activate-confirm") ? text("activate-question") : "",
          focused: document.activeElement.id,
        };
        """,
    )
    return rules


def _wait(browser: WebDriver, ready: Any) -> dict[str, Any]:
    WebDriverWait(browser, WAIT_S).until(lambda b: ready(_rules(b)))
    return _rules(browser)


def _click(browser: WebDriver, selector: str) -> None:
    browser.find_element(By.CSS_SELECTOR, selector).click()


def _type_config(browser: WebDriver, text: str) -> None:
    box = browser.find_element(By.ID, "edit-config")
    box.clear()
    box.send_keys(text)


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_a_person_rolls_back_to_version_1_after_confirming(
    browser: WebDriver, gunicorn_server: GunicornServer, thousand_user: UUID, width: str
) -> None:
    url = gunicorn_server.url
    _put_capacity(url, thousand_user, 5)
    # Version 2 never has room for a job costing 6.
    assert _post_job(url, thousand_user, 6).status_code == 429

    signed_in(browser, gunicorn_server.url, thousand_user, width)
    rules = _wait(browser, lambda r: r["summary"].startswith("Config version 2") and r["diff"])
    assert '"capacity": 5' in rules["active"]
    assert [version for version, _ in rules["versions"]] == [2, 1]
    assert "active" in rules["versions"][0][1] and "Activate…" not in rules["versions"][0][1]
    assert "Activate…" in rules["versions"][1][1]
    assert rules["activateConfirm"] == "" and rules["editConfirm"] == ""
    # By default: the active version against the one before it.
    assert (rules["from"], rules["to"]) == ("1", "2")
    assert rules["diff"] == ["dependencies.openai.capacity: 1000 → 5"]
    screenshot(browser, "rules-versions", top="versions-title")
    screenshot(browser, "rules-diff", top="diff-title")

    # Cancel changes nothing.
    _click(browser, '#version-list li[data-version="1"] button')
    rules = _rules(browser)
    assert rules["activateConfirm"] == (
        "Make version 1 the active config again? Jobs are decided by it from now on."
    )
    assert rules["focused"] == "activate-yes"
    screenshot(browser, "rules-confirm", top="versions-title")
    _click(browser, "#activate-no")
    rules = _rules(browser)
    assert rules["activateConfirm"] == ""
    # Back to the button that asked, for a keyboard user.
    assert read(browser, "return document.activeElement.textContent;") == "Activate…"
    assert _get(url, thousand_user).json()["version"] == 2

    _click(browser, '#version-list li[data-version="1"] button')
    _click(browser, "#activate-yes")
    rules = _wait(browser, lambda r: r["summary"].startswith("Config version 1"))
    assert rules["versionsDone"] == "Version 1 is the active config now."
    assert rules["versionsError"] == "" and rules["activateConfirm"] == ""
    # A rollback adds no version: version 1 itself is active again, with its ETag.
    answer = _get(url, thousand_user)
    assert answer.json()["version"] == 1 and answer.headers["ETag"] == '"1"'
    rules = _wait(browser, lambda r: "active" in dict(r["versions"]).get(1, ""))
    assert [version for version, _ in rules["versions"]] == [2, 1]
    assert (rules["from"], rules["to"]) == ("2", "1")
    assert rules["diff"] == ["dependencies.openai.capacity: 5 → 1000"]

    # The bucket is back to 1,000 tokens (it refills in a second), so the job now fits.
    WebDriverWait(browser, WAIT_S).until(lambda b: "1,000 / 1,000" in gauges(b).get("openai", ""))
    assert _post_job(url, thousand_user, 6).status_code == 202
    assert script_errors(browser) == []


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_an_edit_confirmed_becomes_the_next_active_version(
    browser: WebDriver, gunicorn_server: GunicornServer, thousand_user: UUID, width: str
) -> None:
    url = gunicorn_server.url
    signed_in(browser, gunicorn_server.url, thousand_user, width)
    # The config and its versions are two reads: wait for both.
    rules = _wait(browser, lambda r: r["summary"].startswith("Config version 1") and r["diffEmpty"])
    assert rules["diffEmpty"] == "Only one version so far: nothing to compare."

    _click(browser, "#edit-open")
    typed = read(browser, "return document.getElementById('edit-config').value;")
    # Exactly what a PUT takes: the active config's rules, without version or pause state.
    assert json.loads(typed) == _editable(url, thousand_user)
    assert _rules(browser)["focused"] == "edit-config"
    screenshot(browser, "rules-edit", top="active-title")

    config = json.loads(typed)
    config["dependencies"]["openai"]["capacity"] = 750
    _type_config(browser, json.dumps(config))
    _click(browser, "#edit-save")
    rules = _rules(browser)
    assert rules["editConfirm"] and rules["focused"] == "edit-yes"
    # Nothing is sent before Yes.
    assert _get(url, thousand_user).json()["version"] == 1
    _click(browser, "#edit-yes")

    rules = _wait(browser, lambda r: r["editDone"] and r["summary"].startswith("Config version 2"))
    assert rules["editDone"] == "Saved: version 2 is the active config now."
    assert not rules["editOpen"]
    answer = _get(url, thousand_user)
    assert answer.json()["version"] == 2
    assert answer.json()["dependencies"]["openai"]["capacity"] == 750
    rules = _wait(browser, lambda r: len(r["versions"]) == 2)
    assert rules["diff"] == ["dependencies.openai.capacity: 1000 → 750"]
    assert script_errors(browser) == []


def test_the_diff_names_what_was_added_removed_and_changed_by_key_path(
    browser: WebDriver, gunicorn_server: GunicornServer, thousand_user: UUID
) -> None:
    url = gunicorn_server.url
    config = _editable(url, thousand_user)
    config.update(
        mode="shadow",
        tenant_overrides={"tenant-abc": 0.5},
        dependencies={"stripe": {"capacity": 4, "refill_per_second": 1}},
    )
    answer = requests.put(
        f"{url}{CONFIG}", json=config, headers={"X-User-ID": str(thousand_user)}, timeout=10
    )
    assert answer.status_code == 200, answer.text

    signed_in(browser, gunicorn_server.url, thousand_user, "laptop")
    rules = _wait(browser, lambda r: r["summary"].startswith("Config version 2") and r["diff"])
    assert rules["diff"] == [
        '\N{MINUS SIGN} dependencies.openai: {"capacity":1000,"refill_per_second":1000}',
        '+ dependencies.stripe: {"capacity":4,"refill_per_second":1}',
        "mode: enforce → shadow",
        "+ tenant_overrides.tenant-abc: 0.5",
    ]

    Select(browser.find_element(By.ID, "diff-from")).select_by_value("2")
    rules = _rules(browser)
    assert (rules["diff"], rules["diffEmpty"]) == ([], "No differences.")
    assert script_errors(browser) == []


def test_an_invalid_config_shows_the_apis_field_error_and_stores_nothing(
    browser: WebDriver, gunicorn_server: GunicornServer, thousand_user: UUID
) -> None:
    url = gunicorn_server.url
    signed_in(browser, gunicorn_server.url, thousand_user, "phone")
    _wait(browser, lambda r: r["summary"].startswith("Config version 1"))
    _click(browser, "#edit-open")

    # Not JSON: caught in the browser, never sent.
    _type_config(browser, '{"dependencies": ')
    _click(browser, "#edit-save")
    rules = _rules(browser)
    assert rules["editError"].startswith("The config is not JSON")
    assert rules["editError"].endswith("Nothing was sent.")
    assert not rules["editConfirm"]

    config = _editable(url, thousand_user)
    config["dependencies"]["openai"]["capacity"] = -1
    _type_config(browser, json.dumps(config))
    _click(browser, "#edit-save")
    _click(browser, "#edit-yes")
    rules = _wait(browser, lambda r: r["fieldErrors"])
    assert rules["editError"] == (
        "400 Bad Request: the body does not match the schema. Nothing was stored:"
    )
    [field_error] = rules["fieldErrors"]
    assert field_error.startswith(
        "dependencies.openai.capacity: Must be greater than or equal to 1"
    )
    assert rules["editOpen"] and not rules["editConfirm"]
    assert _get(url, thousand_user).json()["version"] == 1
    screenshot(browser, "rules-edit-refused", top="edit-title")
    assert script_errors(browser, 400) == []


def test_a_stale_edit_is_refused_412_in_words_and_reload_offers_the_new_version(
    browser: WebDriver, gunicorn_server: GunicornServer, thousand_user: UUID
) -> None:
    url = gunicorn_server.url
    signed_in(browser, gunicorn_server.url, thousand_user, "laptop")
    _wait(browser, lambda r: r["summary"].startswith("Config version 1"))
    _click(browser, "#edit-open")
    config = json.loads(read(browser, "return document.getElementById('edit-config').value;"))

    # Someone else stores version 2 while the person edits version 1.
    _put_capacity(url, thousand_user, 300)
    config["dependencies"]["openai"]["capacity"] = 400
    _type_config(browser, json.dumps(config))
    _click(browser, "#edit-save")
    _click(browser, "#edit-yes")

    rules = _wait(browser, lambda r: r["reload"])
    assert rules["editError"].startswith(
        '412 Precondition Failed: If-Match is not the active config version (it is "2")'
    )
    assert "Someone else changed the config" in rules["editError"]
    assert "nothing was stored" in rules["editError"]
    assert not rules["editConfirm"]
    answer = _get(url, thousand_user)
    assert answer.json()["version"] == 2
    assert answer.json()["dependencies"]["openai"]["capacity"] == 300
    screenshot(browser, "rules-edit-stale", top="edit-title")

    _click(browser, "#edit-reload")
    rules = _wait(
        browser, lambda r: r["summary"].startswith("Config version 2") and not r["reload"]
    )
    typed = json.loads(read(browser, "return document.getElementById('edit-config').value;"))
    assert typed["dependencies"]["openai"]["capacity"] == 300
    assert rules["editOpen"] and rules["editError"] == ""
    assert script_errors(browser, 412) == []


def test_a_user_without_a_config_is_told_so_and_can_write_version_1(
    browser: WebDriver, gunicorn_server: GunicornServer, db: psycopg.Connection
) -> None:
    user = create_user(db)
    signed_in(browser, gunicorn_server.url, user, "laptop")
    WebDriverWait(browser, WAIT_S).until(
        lambda b: "no active config" in b.find_element(By.ID, "rules-error").text
    )
    assert browser.find_element(By.ID, "rules-error").text == (
        "404 Not Found: this user has no active config; PUT /dashboard/config to set one"
    )
    # The versions list is read by a request of its own, which may answer after the config's.
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.ID, "versions-empty").is_displayed()
    )

    _click(browser, "#edit-open")
    _type_config(
        browser, json.dumps({"dependencies": {"openai": {"capacity": 3, "refill_per_second": 1}}})
    )
    _click(browser, "#edit-save")
    _click(browser, "#edit-yes")
    rules = _wait(browser, lambda r: r["summary"].startswith("Config version 1"))
    assert rules["editDone"] == "Saved: version 1 is the active config now."
    assert browser.find_element(By.ID, "rules-error").text == ""
    assert _get(gunicorn_server.url, user).json()["dependencies"]["openai"]["capacity"] == 3
    assert script_errors(browser, 404) == []


def test_older_versions_come_a_page_at_a_time(
    browser: WebDriver, gunicorn_server: GunicornServer, thousand_user: UUID
) -> None:
    for capacity in range(1, 21):
        _put_capacity(gunicorn_server.url, thousand_user, capacity)
    signed_in(browser, gunicorn_server.url, thousand_user, "laptop")
    rules = _wait(browser, lambda r: len(r["versions"]) == 20)
    assert rules["versions"][0][0] == 21 and rules["versions"][-1][0] == 2
    assert browser.find_element(By.ID, "versions-older").is_displayed()

    browser.find_element(By.ID, "diff-from").send_keys("Version 2")
    _click(browser, "#versions-older")
    rules = _wait(browser, lambda r: len(r["versions"]) == 21)
    assert not browser.find_element(By.ID, "versions-older").is_displayed()
    # The versions compared stay as chosen; the oldest can now be chosen too.
    assert (rules["from"], rules["to"]) == ("2", "21")
    assert rules["diff"] == ["dependencies.openai.capacity: 1 → 20"]
    assert script_errors(browser) == []


def test_what_one_user_was_shown_is_gone_after_changing_user(
    browser: WebDriver, gunicorn_server: GunicornServer, thousand_user: UUID, db: psycopg.Connection
) -> None:
    _put_capacity(gunicorn_server.url, thousand_user, 5)
    other = user_with_config(db, {"stripe": {"capacity": 4, "refill_per_second": 1}})
    signed_in(browser, gunicorn_server.url, thousand_user, "laptop")
    _wait(browser, lambda r: r["summary"].startswith("Config version 2") and r["diff"])
    _click(browser, "#edit-open")

    browser.find_element(By.ID, "sign-out").click()
    sign_in(browser, str(other))
    # The versions list is read by a request of its own, which may answer after the config's.
    rules = _wait(browser, lambda r: "stripe" in r["summary"] and r["versions"])
    assert [version for version, _ in rules["versions"]] == [1]
    assert not rules["editOpen"] and rules["diff"] == []
    assert "openai" not in read(browser, "return document.getElementById('rules').innerText;")
    assert script_errors(browser) == []
