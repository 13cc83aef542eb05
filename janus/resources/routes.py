"""One URI served by several resources: Falcon routes a URI template to one resource only."""

from __future__ import annotations

import falcon


class SharedRoute:
    """Answers each HTTP method with the responder of the one resource given that has it.

    POST /dashboard/jobs submits a job and GET /dashboard/jobs lists them: two resources of
    their own, one URI.
    """

    def __init__(self, *resources: object) -> None:
        for resource in resources:
            for method in falcon.COMBINED_METHODS:
                name = f"on_{method.lower()}"
                responder = getattr(resource, name, None)
                if responder is None:
                    continue
                if hasattr(self, name):
                    raise ValueError(f"two resources answer {method} on one route")
                setattr(self, name, responder)
