"""Handlers the worker runtime's tests run, in process or under `janus-worker` (as
`tests.support.worker_handlers:NAME`, from the repository's root).

Each job's payload says what its handler does: `kind` "ok" completes it with its `n` and a
real cost of 1; "raises" raises a RuntimeError; "refuses" fails it for good; "throttled" is
throttled by openai (Retry-After 1) on its first attempt, then completes; "bad_result" returns
what Janus cannot take; "bad_costs" and "refuses_bad_costs" complete and fail reporting a
real cost Janus refuses; "sleep" sleeps `seconds`, waking early when cancelled. `nothing`
completes every job at once, whatever its payload.
"""

from __future__ import annotations

import asyncio
from typing import Any

from janus_client.handlers import Done, Fail, UpstreamThrottled

# The upstream's Retry-After on a throttled job's first attempt, as its header says it.
THROTTLED_RETRY_AFTER = "1"


def _decide(kind: str, payload: dict[str, Any], attempt: int) -> Any:
    if kind == "ok":
        return Done({"n": payload["n"]}, actual_costs={"openai": 1})
    if kind == "raises":
        raise RuntimeError(f"job {payload['n']} went wrong")
    if kind == "refuses":
        raise Fail("this job can never succeed", retry=False)
    if kind == "throttled":
        if attempt == 1:
            raise UpstreamThrottled("openai", THROTTLED_RETRY_AFTER)
        return {"n": payload["n"], "after_throttling": True}
    if kind == "bad_result":
        return "a string, not an object"
    if kind == "bad_costs":  # real costs are 0 and up: Janus refuses the report
        return Done({"n": payload["n"]}, actual_costs={"openai": -1})
    if kind == "refuses_bad_costs":
        raise Fail("this job can never succeed", retry=False, actual_costs={"openai": -1})
    raise AssertionError(f"unknown kind {kind}")


def mixed(job: Any) -> Any:
    """Does what the payload's `kind` says (see the module)."""
    if job.payload["kind"] == "sleep":
        job.cancelled.wait(job.payload["seconds"])
        return {"slept": not job.cancelled.is_set()}
    return _decide(job.payload["kind"], job.payload, job.attempt)


async def mixed_async(job: Any) -> Any:
    """mixed, as a coroutine (asyncio.sleep is cancelled with its task)."""
    if job.payload["kind"] == "sleep":
        await asyncio.sleep(job.payload["seconds"])
        return {"slept": True}
    return _decide(job.payload["kind"], job.payload, job.attempt)


def nothing(job: Any) -> None:
    """Completes the job, with no result."""


async def nothing_async(job: Any) -> None:
    """nothing, as a coroutine."""
