"""GET /, /dashboard.css and /dashboard.js: the dashboard's files, served open and as they are.

What the page does in a browser is for the browser tests; these hold what the server
promises: the files, their media types, the headers that keep the page to its own code and
this service, and that they need neither a user id nor the service token.
"""

from __future__ import annotations

import re
from pathlib import Path

import falcon.testing
import pytest

from janus.dashboard import FILES
from janus.resources.dashboard import SECURITY_HEADERS
from janus.settings import Settings
from tests.support.app import serve_app

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "janus" / "dashboard"


@pytest.mark.parametrize("token", [None, "s3cret-token"])
@pytest.mark.parametrize("path", sorted(FILES))
def test_each_file_is_served_as_it_is_without_user_or_token(
    database_url: str, path: str, token: str | None
) -> None:
    name, media_type, _ = FILES[path]
    with serve_app(Settings(database_url=database_url, service_token=token)) as client:
        answer = client.simulate_get(path)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == media_type
    assert answer.content == (DASHBOARD_DIR / name).read_bytes()
    for header, value in SECURITY_HEADERS.items():
        assert answer.headers[header] == value


def test_the_api_still_wants_the_token_the_page_asks_for(
    token_client: falcon.testing.TestClient,
) -> None:
    page = token_client.simulate_get("/")
    quotas = token_client.simulate_get(
        "/dashboard/quotas", headers={"X-User-ID": "00000000-0000-4000-8000-000000000000"}
    )
    assert page.status_code == 200
    assert quotas.status_code == 401


def test_the_page_loads_only_files_that_are_served() -> None:
    page = (DASHBOARD_DIR / "index.html").read_text()
    referenced = set(re.findall(r'(?:href|src)="(/[^"]*)"', page))
    # Every file served is one the page loads, and nothing else.
    assert referenced == FILES.keys() - {"/"}


def test_the_script_never_puts_the_user_id_in_a_url_or_the_page() -> None:
    """The id travels in X-User-ID only, and text reaches the page as text, never as HTML."""
    scripts = {path.name: path.read_text() for path in DASHBOARD_DIR.glob("*.js")}
    assert '"X-User-ID"' in scripts["dashboard.js"]
    for script in scripts.values():
        assert "innerHTML" not in script and "document.write" not in script
    # Paths written as strings, and as templates (`/dashboard/jobs/${…}/cancel`).
    fetched = [
        path
        for script in scripts.values()
        for _, path in re.findall(r'(?:api|call|readInto)\(([`"])([^`"]+)\1', script)
    ]
    # The user's own routes, and the API's document (the submit form's example bodies).
    assert fetched and all(
        (path.startswith("/dashboard/") or path == "/openapi.json") and "?" not in path
        for path in fetched
    )


def test_other_methods_are_refused(app_client: falcon.testing.TestClient) -> None:
    assert app_client.simulate_post("/").status_code == 405
