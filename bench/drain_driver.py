"""The `raw-drain` scenario's driver: claims and batch completes sent directly, as
claim-complete's wrk script sends them, until the queue is empty.

    python -m bench.drain_driver SPEC      # SPEC: JSON of base_url, user_id, connections,
                                            # claim_limit, timeout_s

Each of `connections` threads, on a keep-alive connection of its own, claims `claim_limit`
jobs and completes them all in one batch complete, again and again, until a claim finds the
queue empty. It prints one line, "JANUS_DRAIN {json}": requests, statuses, latency
percentiles (claims and completes together), and counters (jobs claimed and completed, items
a batch complete did not answer completed). Its own process, so that its CPU is the `load`
column's, as the worker's is.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from bench.drivers import latency_summary_ms
from bench.pacing import CLAIM_PATH, KeepAliveConnection
from bench.scenarios import CLAIM_LEASE_S, COMPLETE_PATH

RESULT_PREFIX = "JANUS_DRAIN "


@dataclass
class _Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    latencies_us: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: str, sent: float, **counts: int) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latencies_us.append((time.monotonic() - sent) * 1e6)
            self.counters.update(counts)


def _drain(spec: dict[str, Any], tally: _Tally) -> None:
    """One connection: claim, complete the claim's jobs in one call, until none is left."""
    conn = KeepAliveConnection(spec["base_url"], UUID(spec["user_id"]), spec["timeout_s"])
    claim = {"limit": spec["claim_limit"], "lease_seconds": CLAIM_LEASE_S}
    try:
        while True:
            sent = time.monotonic()
            status, body = conn.post(CLAIM_PATH, claim)
            jobs = body["jobs"] if isinstance(body, dict) else []
            tally.add(status, sent, claimed=len(jobs))
            if not jobs:
                return
            leases = [{"job_id": job["job_id"], "lease_token": job["lease_token"]} for job in jobs]
            sent = time.monotonic()
            status, body = conn.post(COMPLETE_PATH, {"jobs": leases})
            results = body["results"] if isinstance(body, dict) else []
            completed = sum(result["outcome"] == "completed" for result in results)
            tally.add(status, sent, completed=completed, not_completed=len(jobs) - completed)
    finally:
        conn.close()


def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Drain the queue from `connections` threads; what they saw."""
    tally = _Tally()
    threads = [
        threading.Thread(target=_drain, args=(spec, tally), daemon=True)
        for _ in range(spec["connections"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "requests": len(tally.latencies_us),
        "statuses": dict(tally.statuses),
        "latency_ms": latency_summary_ms(tally.latencies_us),
        "counters": dict(tally.counters),
    }


def main(argv: Sequence[str]) -> int:
    """`python -m bench.drain_driver SPEC`."""
    print(RESULT_PREFIX + json.dumps(drive(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
