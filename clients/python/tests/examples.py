"""What the tests submit, and the configs they set."""

from __future__ import annotations

from typing import Any

from janus_client import Job

# What most tests submit: one token of `openai`.
JOB = Job(tenant_id="tenant-a", priority=5, dependencies={"openai": 1})


def limits(capacity: int, refill: float = 0) -> dict[str, Any]:
    """A config with one bucket, `openai`, of `capacity` tokens refilled at `refill` a second,
    and no priority reserve."""
    return {
        "priority_reserve": 0,
        "dependencies": {"openai": {"capacity": capacity, "refill_per_second": refill}},
    }
