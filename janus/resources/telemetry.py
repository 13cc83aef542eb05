"""Every request timed, counted by route, and logged as one JSON line when it is answered."""

from __future__ import annotations

import time
from collections.abc import Sequence

import falcon

from janus import logs, metrics
from janus.admission import Decision
from janus.keys import Identity, user_tag


def note_decisions(req: falcon.Request, decisions: Sequence[Decision]) -> None:
    """Tell the request's log line how many of its jobs were accepted and rejected."""
    accepted = sum(decision.accepted for decision in decisions)
    req.context.jobs_accepted = accepted
    req.context.jobs_rejected = len(decisions) - accepted


def note_identity(req: falcon.Request, identity: Identity) -> None:
    """Tell the request's log line whom it was authenticated as: the user's tag (never its
    id, which is a credential for a user without keys) and the key's id."""
    req.context.user_tag = user_tag(identity.user_id)
    req.context.key_id = identity.key_id


class RequestTelemetryMiddleware:
    """The outermost middleware: it starts first and sees the final answer last.

    The line names the request by what Janus made of it (route template, status, the user's
    tag and key id once authenticated, decision counts), never by what the client wrote: no
    path, query, header or body text, so neither a payload nor a credential can reach it.
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Start the request's clock."""
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Count the answer, observe its latency, and log its line."""
        seconds = time.perf_counter() - req.context.started
        route = metrics.route_label(req.uri_template)
        method = metrics.method_label(req.method)
        status = resp.status_code
        metrics.observe_request(route, method, status, seconds)
        if not logs.request_log_enabled():
            return
        context = req.context
        logs.log_request(
            request_id=context.get("request_id"),
            method=method,
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 3),
            user=context.get("user_tag"),
            key_id=context.get("key_id"),
            jobs=(context.jobs_accepted, context.jobs_rejected)
            if "jobs_accepted" in context
            else None,
        )
