"""GET /openapi.json: the OpenAPI document, built once when the app is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import falcon

from janus.schemas.answers import DocumentSchema


class OpenApiResource:
    """Serves the document it is given, dumped and serialized once."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._text = json.dumps(DocumentSchema().dump(document))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The document, as JSON."""
        resp.content_type = falcon.MEDIA_JSON
        resp.text = self._text
