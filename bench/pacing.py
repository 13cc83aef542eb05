"""The pacing scenario's load: producers sending wait-mode jobs far faster than the refill,
and workers claiming and completing them, both at once.

wrk sends one kind of request per run, and this needs two, paced producers and claimers, and
the moment of every hand-out; so it runs in threads of a Python process of its own
(`python -m bench.pacing`, whose CPU the bench counts as the load generator's), each on a
keep-alive connection of its own (http.client). The run first settles (the bucket empties, a line
forms), then counts for `duration_s`: claims answered, jobs they handed out, the claims'
latency, and every status.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from bench.common import REPO_ROOT
from bench.drivers import LoadError, LoadResult, latency_summary_ms
from bench.scenarios import (
    CLAIM_LEASE_S,
    COMPLETE_PATH,
    PACING_CLAIM_LIMIT,
    PACING_CLAIMERS,
    PACING_PRODUCERS,
    PACING_SUBMIT_PER_S,
    Scenario,
)

CLAIM_PATH = "/system/jobs/claim"
# The line the load's process prints its result on.
RESULT_PREFIX = "JANUS_PACING "

# Before the counted window: the bucket spends what it held, and the line forms.
SETTLE_S = 2.0
# A claim that handed out nothing waits this long before the next (there is no long poll).
EMPTY_CLAIM_PAUSE_S = 0.01


@dataclass(frozen=True)
class PacingLoad:
    """Who sends what: the job body and its rate, the claimers and their claim."""

    base_url: str
    user_id: UUID
    submit_path: str
    job: Mapping[str, Any]
    submit_per_s: float
    producers: int
    claim_path: str
    claim: Mapping[str, Any]
    complete_path: str
    claimers: int

    @classmethod
    def of(cls, scenario: Scenario, base_url: str, user_id: UUID) -> PacingLoad:
        """The pacing run of `scenario` against the service at `base_url`, as `user_id`."""
        assert scenario.body is not None
        return cls(
            base_url=base_url,
            user_id=user_id,
            submit_path=scenario.path,
            job=scenario.body,
            submit_per_s=PACING_SUBMIT_PER_S,
            producers=PACING_PRODUCERS,
            claim_path=CLAIM_PATH,
            claim={"limit": PACING_CLAIM_LIMIT, "lease_seconds": CLAIM_LEASE_S},
            complete_path=COMPLETE_PATH,
            claimers=PACING_CLAIMERS,
        )


@dataclass
class _Tally:
    """What the threads saw in the counted window, appended to under the lock."""

    window: tuple[float, float]
    statuses: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    claim_latencies_us: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counts(self, moment: float) -> bool:
        """Whether `moment` (time.monotonic()) falls in the counted window."""
        return self.window[0] <= moment < self.window[1]


class KeepAliveConnection:
    """One keep-alive connection to the service, opened again when the server closed it."""

    def __init__(self, base_url: str, user_id: UUID, timeout_s: float) -> None:
        address = urlsplit(base_url)
        self._host, self._port = address.hostname or "", address.port
        self._timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", "X-User-ID": str(user_id)}
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: Any) -> tuple[str, Any]:
        """(status as text or the socket error, the parsed body or None)."""
        payload = json.dumps(body).encode()
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout_s
                )
            try:
                self._conn.request("POST", path, body=payload, headers=self._headers)
                response = self._conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as error:
                self._conn.close()
                self._conn = None
                # A keep-alive connection the server closed while idle: once more, anew.
                if attempt == 0 and isinstance(error, http.client.RemoteDisconnected):
                    continue
                return f"socket {type(error).__name__}", None
            return str(response.status), json.loads(raw) if raw else None
        return "socket closed", None

    def close(self) -> None:
        """Close the connection, if open."""
        if self._conn is not None:
            self._conn.close()


def run_pacing(load: PacingLoad, *, duration_s: float, timeout_s: float) -> LoadResult:
    """Producers and claimers for SETTLE_S + `duration_s`, in a process of their own (so that
    their CPU is the `load` column's, as wrk's is); what they saw in the last `duration_s`:
    claims as requests, their latency, hand-outs and the rest as counters."""
    spec = {**dataclasses.asdict(load), "user_id": str(load.user_id)}
    command = [sys.executable, "-m", "bench.pacing", json.dumps(spec), str(duration_s)]
    command.append(str(timeout_s))
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=SETTLE_S + duration_s + timeout_s + 30,
            check=False,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        raise LoadError("the pacing load did not finish in time") from None
    output = completed.stdout + completed.stderr
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise LoadError(f"the pacing load failed (status {completed.returncode}):\n{output}")
    seen = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    return LoadResult(
        wall_s=duration_s,
        requests=seen["claims"],
        outcomes=dict(sorted(seen["statuses"].items())),
        latency_ms=seen["latency_ms"],
        output=output,
        counters=seen["counters"],
    )


def drive(load: PacingLoad, duration_s: float, timeout_s: float) -> dict[str, Any]:
    """Run the producers and claimers in this process; what they saw, as run_pacing reads it."""
    started = time.monotonic()
    tally = _Tally((started + SETTLE_S, started + SETTLE_S + duration_s))
    stopping = threading.Event()
    threads = [
        threading.Thread(target=_produce, args=(load, n, tally, stopping, timeout_s), daemon=True)
        for n in range(load.producers)
    ] + [
        threading.Thread(target=_claim, args=(load, tally, stopping, timeout_s), daemon=True)
        for _ in range(load.claimers)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, tally.window[1] - time.monotonic()))
    stopping.set()
    for thread in threads:
        thread.join(timeout=timeout_s + 5)
    if any(thread.is_alive() for thread in threads):
        raise LoadError("a pacing producer or claimer did not stop")
    return {
        "claims": len(tally.claim_latencies_us),
        "statuses": dict(tally.statuses),
        "latency_ms": latency_summary_ms(tally.claim_latencies_us),
        "counters": dict(tally.counters),
    }


def _produce(
    load: PacingLoad, number: int, tally: _Tally, stopping: threading.Event, timeout_s: float
) -> None:
    """Send jobs at submit_per_s / producers, each on its own schedule."""
    conn = KeepAliveConnection(load.base_url, load.user_id, timeout_s)
    started = tally.window[0] - SETTLE_S
    interval = load.producers / load.submit_per_s
    due = started + number / load.submit_per_s
    try:
        while not stopping.is_set():
            time.sleep(max(0.0, due - time.monotonic()))
            due += interval
            sent_at = time.monotonic()
            status, body = conn.post(load.submit_path, load.job)
            if not tally.counts(sent_at):
                continue
            waited = isinstance(body, dict) and body.get("state") == "waiting"
            with tally.lock:
                tally.statuses[status] += 1
                tally.counters["submitted"] += 1
                tally.counters["waited" if waited else "not_waited"] += 1
    finally:
        conn.close()


def _claim(load: PacingLoad, tally: _Tally, stopping: threading.Event, timeout_s: float) -> None:
    """Claim, complete what was handed out in one batch complete, again."""
    conn = KeepAliveConnection(load.base_url, load.user_id, timeout_s)
    try:
        while not stopping.is_set():
            sent_at = time.monotonic()
            status, body = conn.post(load.claim_path, load.claim)
            answered_at = time.monotonic()
            jobs: Sequence[Mapping[str, Any]] = body["jobs"] if isinstance(body, dict) else []
            if tally.counts(answered_at):
                with tally.lock:
                    tally.statuses[status] += 1
                    tally.claim_latencies_us.append((answered_at - sent_at) * 1e6)
                    tally.counters["handed_out"] += len(jobs)
                    tally.counters["empty_claims"] += not jobs
            if not jobs:
                time.sleep(EMPTY_CLAIM_PAUSE_S)
                continue
            leases = [{"job_id": job["job_id"], "lease_token": job["lease_token"]} for job in jobs]
            status, body = conn.post(load.complete_path, {"jobs": leases})
            completed = sum(
                result["outcome"] == "completed"
                for result in (body["results"] if isinstance(body, dict) else [])
            )
            if tally.counts(time.monotonic()):
                with tally.lock:
                    tally.statuses[status] += 1
                    tally.counters["completed"] += completed
    finally:
        conn.close()


def main(argv: Sequence[str]) -> int:
    """`python -m bench.pacing SPEC DURATION_S TIMEOUT_S`: run_pacing's process."""
    spec, duration_s, timeout_s = json.loads(argv[0]), float(argv[1]), float(argv[2])
    load = PacingLoad(**{**spec, "user_id": UUID(spec["user_id"])})
    print(RESULT_PREFIX + json.dumps(drive(load, duration_s, timeout_s)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
