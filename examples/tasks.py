"""The quickstart's handler: `janus-worker examples.tasks:handle` runs it on each job Janus
hands out, in threads, and does the rest: claims, heartbeats, completions, retries, shutdown.

A handler gets the claimed job (`job.payload`, `job.attempt`, `job.dependencies`, ...) and
returns its result, a JSON object that Janus stores with the job. Raising fails the attempt:
Janus hands the job out again while it has attempts left. `UpstreamThrottled` is how a
rate-limited service's "slow down" reaches Janus.
"""

from __future__ import annotations

import random
from typing import Any

from janus_client.handlers import UpstreamThrottled
from janus_client.worker import JobContext

# The stand-in for a call to an upstream: how long it takes, and how often it says 429.
CALL_SECONDS = 0.5
THROTTLED_SHARE = 0.2


def handle(job: JobContext) -> dict[str, Any]:
    """Call the job's upstream with its payload; its answer is the job's result."""
    status, retry_after = call_upstream(job)
    if status == 429:
        # The job waits the upstream's Retry-After before it is tried again, and Janus hears
        # that openai throttled it (an adaptive bucket then refills more slowly).
        raise UpstreamThrottled("openai", retry_after)
    return {"echo": job.payload, "attempt": job.attempt}


def call_upstream(job: JobContext) -> tuple[int, str | None]:
    """A pretend HTTP call: its status and Retry-After. Put the real call to the service here."""
    # Returns early when the worker no longer wants the outcome (a lost lease, a shutdown).
    job.cancelled.wait(CALL_SECONDS)
    if job.attempt == 1 and random.random() < THROTTLED_SHARE:
        return 429, "2"
    return 200, None
