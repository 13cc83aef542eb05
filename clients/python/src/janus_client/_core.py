"""What the blocking and the asyncio clients share: where Janus is and who calls it, the
headers of a call, how long to wait before retrying one, and how an answer is read. No I/O
here: client.py and aio.py send what this builds, each with its own httpx client."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from janus_client.errors import ConnectionFailed, JanusHTTPError, error_for

T = TypeVar("T")

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


def options(
    base_url: str | None,
    api_key: str | None,
    user_id: str | None,
    service_token: str | None,
    timeout: float,
) -> dict[str, Any]:
    """What both clients give their httpx client: where Janus is (JANUS_URL unless given),
    who calls (the credentials given, else the environment's; the service token given, else
    the environment's) and the timeout of every phase of a call."""
    env = Credentials.from_env()
    if api_key is None and user_id is None:
        api_key, user_id = env.api_key, env.user_id
    token = service_token if service_token is not None else env.service_token
    credentials = Credentials(api_key, user_id, token)
    return {
        "base_url": base_url or base_url_from_env(),
        "headers": credentials.headers(),
        "timeout": timeout,
    }


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


def check(
    response: httpx.Response,
    ok: tuple[int, ...] = (200,),
    errors: Mapping[int, type[JanusHTTPError]] | None = None,
) -> Any:
    """The answer's body when its status is one of `ok`; else its JanusHTTPError (the class
    `errors` names for its status, if any)."""
    body = body_of(response)
    if response.status_code in ok:
        return body
    retry_after = retry_after_of(response)
    special = (errors or {}).get(response.status_code)
    if special is not None:
        raise special(response.status_code, body, retry_after)
    raise error_for(response.status_code, body, retry_after)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical call, built once and sent as many times as the retry policy allows (so
    every attempt carries the same headers, the Idempotency-Key among them), and how its
    answer is read."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    # Whether sending it again after an answer lost on the way is harmless: a submit is (its
    # Idempotency-Key replays the first decision); a config PUT is not (a second version).
    repeatable: bool = True
    # A 409 then means an earlier attempt with the same Idempotency-Key is still being
    # decided: wait, and the next attempt gets its answer replayed.
    keyed: bool = False


# Failures that happen before the request leaves: sending again cannot do anything twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def next_wait(
    policy: RetryPolicy,
    call: Call[Any],
    attempt: int,
    spent_s: float,
    outcome: httpx.Response | httpx.TransportError,
) -> float | None:
    """Seconds to wait before sending `call` again after `outcome` of attempt `attempt`,
    `spent_s` seconds after the first began; None when it is not to be sent again. A 503
    (nothing was done), no answer, or (for a keyed call) a 409 are retried; nothing else,
    a 429 least of all: the caller decides what to do with a rejection."""
    retry_after: float | None = None
    if isinstance(outcome, httpx.TransportError):
        if not call.repeatable and not isinstance(outcome, _NOT_SENT):
            return None
    elif outcome.status_code == 503 or (outcome.status_code == 409 and call.keyed):
        retry_after = retry_after_of(outcome)
    else:
        return None
    wait = policy.delay(attempt, retry_after)
    if attempt >= policy.max_attempts or spent_s + wait > policy.within_s:
        return None
    return wait


def no_answer(call: Call[Any], attempts: int, error: httpx.TransportError) -> ConnectionFailed:
    """The error of a call that got no answer, after `attempts` attempts."""
    return ConnectionFailed(
        f"{call.method} {call.path}: no answer after {attempts} attempt(s): "
        f"{type(error).__name__}: {error}"
    )
