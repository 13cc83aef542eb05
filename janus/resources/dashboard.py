"""GET /, its style sheet and scripts: the dashboard, files of janus/dashboard/ (FILES).

They hold no one's data (the page asks for a user id and reads the API as that user), so
they need neither X-User-ID nor the service token.
"""

from __future__ import annotations

from importlib import resources

import falcon

# The page runs only its own script and style and speaks only to this service; no site may
# frame it (`data:` images: its empty icon). Each file is read once, when the app is made.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class DashboardFile:
    """One file of the dashboard, as it is in the package."""

    def __init__(self, name: str, media_type: str) -> None:
        self._data = (resources.files("janus.dashboard") / name).read_bytes()
        self._media_type = media_type

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The file."""
        resp.content_type = self._media_type
        resp.data = self._data
        resp.set_headers(SECURITY_HEADERS)
