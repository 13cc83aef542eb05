"""What the blocking and the asyncio clients share: where Janus is and who calls it, the
headers of a call, how long to wait before retrying one, and how an answer is read. No I/O
here: client.py and aio.py send what this builds, each with its own httpx client."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from janus_client.errors import error_for

DEFAULT_URL = "http://127.0.0.1:8000"
# Every phase of a call (connect, write, read, pool) gives up after this many seconds.
DEFAULT_TIMEOUT_S = 10.0
# A call is sent at most this many times, and retried only within this many seconds.
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_WITHIN_S = 30.0
# Waits between attempts when the answer names none: doubling from the first, jittered.
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True)
class Credentials:
    """Who calls: an API key (`Authorization: Bearer`), or a user id alone (`X-User-ID`, for
    a user that never had a key) with the service's token when it has one."""

    api_key: str | None = None
    user_id: str | None = None
    service_token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """JANUS_API_KEY, else JANUS_USER_ID (and JANUS_SERVICE_TOKEN)."""
        environ = os.environ if environ is None else environ
        return cls(
            api_key=environ.get("JANUS_API_KEY") or None,
            user_id=environ.get("JANUS_USER_ID") or None,
            service_token=environ.get("JANUS_SERVICE_TOKEN") or None,
        )

    def headers(self) -> dict[str, str]:
        """The headers that say who calls."""
        headers: dict[str, str] = {}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif self.service_token is not None:
            headers["Authorization"] = f"Bearer {self.service_token}"
        if self.user_id is not None:
            headers["X-User-ID"] = self.user_id
        if not headers:
            raise ValueError(
                "no credential: pass api_key= or user_id=, or set JANUS_API_KEY or JANUS_USER_ID"
            )
        return headers


def base_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """JANUS_URL, else the service `make run` starts."""
    environ = os.environ if environ is None else environ
    return (environ.get("JANUS_URL") or DEFAULT_URL).rstrip("/")


@dataclass(frozen=True)
class RetryPolicy:
    """When a call is sent again: after a 503 (waiting its Retry-After) or no answer at all,
    at most `max_attempts` times in all and not past `within_s` seconds from the first. A 429
    is never retried here: the caller decides (see errors.TooManyRequests and results)."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    within_s: float = DEFAULT_RETRY_WITHIN_S

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1`: the answer's Retry-After when it gave
        one, else a jittered doubling backoff."""
        if retry_after is not None:
            return retry_after
        ceiling = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def retry_after_of(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (Janus sends whole seconds), or None."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def body_of(response: httpx.Response) -> Any:
    """The answer's JSON; None for an empty or non-JSON body."""
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def check(response: httpx.Response, ok: tuple[int, ...]) -> Any:
    """The answer's body when its status is one of `ok`; else its JanusHTTPError."""
    body = body_of(response)
    if response.status_code in ok:
        return body
    raise error_for(response.status_code, body, retry_after_of(response))
