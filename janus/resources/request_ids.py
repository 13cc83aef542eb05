"""Every request gets an id, echoed in `X-Request-ID` and written on its log lines."""

from __future__ import annotations

import falcon

from janus import logs


class RequestIdMiddleware:
    """Name each request for the logs; the first middleware, so every answer carries it."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Take the client's X-Request-ID when well formed, or make one."""
        request_id = logs.request_id_from(req.get_header(logs.REQUEST_ID_HEADER))
        req.context.request_id = request_id
        req.context.request_id_token = logs.begin_request(request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Echo the id and stop naming it on this thread's log lines."""
        resp.set_header(logs.REQUEST_ID_HEADER, req.context.request_id)
        logs.end_request(req.context.request_id_token)
