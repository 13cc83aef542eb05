"""What an answer must look like: the one error shape, and decisions as the contract gives them.

`Answer` wraps a response from Falcon's test client, `requests` or a raw socket alike, so the
same checks serve tests in-process, over HTTP and on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from janus.reasons import ReasonCode
from tests.support.app import ATOMIC_ROUTES, PARTIAL_ROUTES, SINGLE_ROUTES

MIB = 1024 * 1024
JSON = "application/json"
ERROR_KEYS = {"title", "description"}
DECISION_KEYS = ["job_id", "status", "reason"]
# A partial batch's results are ours, not the seed's: each also tells when to try it again.
RESULT_KEYS = [*DECISION_KEYS, "reason_code", "retry_after"]
# What a rejection's code may be (ReasonCode's values), in a result or Janus-Reason-Code.
REASON_CODES = {code.value for code in ReasonCode}


def rate_limited(dependency: str = "openai") -> str:
    """The contract's reason for a job turned away by the dependency's own bucket."""
    return f"dependency '{dependency}' rate limit exceeded"


def over_share(tenant: str, dependency: str = "openai") -> str:
    """The contract's reason for a job turned away by its tenant's share alone."""
    return f"tenant '{tenant}' exceeded its share of dependency '{dependency}'"


# The reason most tests meet: openai, the dependency of the seed's example, out of tokens.
RATE_LIMITED = rate_limited("openai")


@dataclass(frozen=True)
class Answer:
    """A response, whether from Falcon's test client, `requests` or a raw socket."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes

    @classmethod
    def of(cls, result: Any) -> Answer:
        """Wrap a Falcon test result or a `requests` response."""
        status = getattr(result, "status_code", None)
        assert isinstance(status, int)
        headers = {name.lower(): value for name, value in result.headers.items()}
        return cls(status, headers, result.content)

    @property
    def text(self) -> str:
        """The body as text, for messages."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.content)


def assert_clear_error(result: Any, *statuses: int) -> dict[str, Any]:
    """`result` is a 4xx in the one error shape, with one of `statuses` when they are given."""
    answer = result if isinstance(result, Answer) else Answer.of(result)
    assert 400 <= answer.status < 500, (answer.status, answer.text[:2000])
    if statuses:
        assert answer.status in statuses, (answer.status, answer.text[:2000])
    assert answer.headers.get("content-type", "").startswith(JSON), answer.headers
    assert b"Traceback" not in answer.content
    body = answer.json()
    assert isinstance(body, dict), body
    assert set(body) in (ERROR_KEYS, ERROR_KEYS | {"errors"}), body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["description"], str) and body["description"], body
    if "errors" in body:
        assert isinstance(body["errors"], dict) and body["errors"], body
    return body


def assert_decisions(path: str, result: Any, jobs: int) -> list[dict[str, Any]]:
    """`result` is one of the seed's decision answers for `path`; returns its decisions."""
    answer = result if isinstance(result, Answer) else Answer.of(result)
    assert answer.headers.get("content-type", "").startswith(JSON), answer.headers
    body = answer.json()
    if path in SINGLE_ROUTES:
        assert answer.status in (202, 429), (answer.status, answer.text[:2000])
        decisions = [body]
    elif path in PARTIAL_ROUTES:
        assert answer.status == 200, (answer.status, answer.text[:2000])
        assert list(body) == ["total", "accepted", "rejected", "results"], body
        decisions = body["results"]
        accepted = sum(decision["status"] == "Accepted" for decision in decisions)
        assert (body["total"], body["accepted"], body["rejected"]) == (
            jobs,
            accepted,
            jobs - accepted,
        )
    else:
        assert answer.status in (202, 207), (answer.status, answer.text[:2000])
        assert isinstance(body, list), body
        decisions = body
    assert len(decisions) == jobs
    for decision in decisions:
        assert list(decision) == (RESULT_KEYS if path in PARTIAL_ROUTES else DECISION_KEYS), (
            decision
        )
        if path in PARTIAL_ROUTES:
            rejected = decision["status"] == "Rejected"
            assert (decision["reason_code"] in REASON_CODES) == rejected, decision
            assert rejected or decision["reason_code"] is None, decision
        if path in PARTIAL_ROUTES and decision["retry_after"] is not None:
            assert decision["status"] == "Rejected", decision
            assert isinstance(decision["retry_after"], int) and decision["retry_after"] >= 1
        assert str(UUID(decision["job_id"])) == decision["job_id"]
        assert decision["status"] in ("Accepted", "Rejected"), decision
        assert (decision["reason"] == "") == (decision["status"] == "Accepted"), decision
    statuses = {decision["status"] for decision in decisions}
    if path in SINGLE_ROUTES or path in ATOMIC_ROUTES:
        assert (answer.status == 202) == (statuses == {"Accepted"}), (answer.status, decisions)
    if path in ATOMIC_ROUTES and answer.status == 207:
        assert statuses == {"Rejected"}, decisions
        own_reasons = [d for d in decisions if d["reason"] != "batch rejected atomically"]
        assert own_reasons, decisions
    # The code of a rejection the seed's body has no room for: a single job's 429, the job
    # that sank an atomic batch's 207.
    code = answer.headers.get("janus-reason-code")
    sunk = (path in SINGLE_ROUTES and answer.status == 429) or (
        path in ATOMIC_ROUTES and answer.status == 207
    )
    assert (code is not None) == sunk, (answer.status, answer.headers)
    assert code is None or code in REASON_CODES - {"atomic_batch"}, answer.headers
    if "retry-after" in answer.headers:
        assert path in SINGLE_ROUTES and answer.status == 429, answer.headers
        assert int(answer.headers["retry-after"]) >= 1, answer.headers
    return list(decisions)
