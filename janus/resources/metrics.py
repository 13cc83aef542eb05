"""GET /metrics: Prometheus's text format, every worker's values added up."""

from __future__ import annotations

from collections.abc import Callable

import falcon


class MetricsResource:
    """Serves what `render` returns, with `content_type`, on every scrape."""

    def __init__(self, render: Callable[[], bytes], content_type: str) -> None:
        self._render = render
        self._content_type = content_type

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The metrics as of now."""
        resp.content_type = self._content_type
        resp.data = self._render()
