"""The handler of the `worker-drain` scenario: it does nothing, so what is measured is the
worker runtime itself (`janus-worker bench.nothing:handle`). Imports nothing, so that the
worker starts as fast as it can."""

from __future__ import annotations

from typing import Any


def handle(job: Any) -> None:
    """Complete the job, with no result."""
