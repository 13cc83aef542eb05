"""What a measured run holds: a scenario's result and a minute of the soak, and what each
says on its own (jobs/s, decisions, CPU per decision, unexpected answers)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.drivers import LoadResult
from bench.scenarios import Scenario
from bench.service_metrics import Grouping

# The CPU column: gunicorn, Postgres, the load generator, everything else.
CPU_GROUPS = ("app", "postgres", "load", "other")
# The parties whose CPU per decision is reported: gunicorn (Janus's or the twin's), Postgres.
DECISION_CPU_GROUPS = ("app", "postgres")


@dataclass
class ScenarioResult:
    """A scenario's measured run, and what it says once read."""

    scenario: Scenario
    load: LoadResult
    # CPU in % of one core while it ran: "app" (gunicorn), "postgres", "load" (wrk or
    # pgbench), "other" (anything else on the machine) and "machine" (all of it).
    cpu: Mapping[str, float]
    # Jobs stored during the run, by status (filled in once all load has stopped).
    stored_jobs: dict[str, int] = field(default_factory=dict)
    # The database clock around the measured run.
    window: tuple[Any, Any] | None = None
    # Autovacuum and autoanalyze runs during it.
    autovacuums: int = 0
    # A claim scenario: jobs still queued after the run (0: the queue may have run dry).
    queue_left: int | None = None
    # CPU seconds each party used during the run (the same reading as `cpu`).
    cpu_s: Mapping[str, float] = field(default_factory=dict)
    # The load generator's connections during the run (its scenario's, or --connections).
    connections: int | None = None
    # A scenario Janus admits: the groups its admission decided during the run.
    grouping: Grouping | None = None

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.scenario.name

    @property
    def requests_per_s(self) -> float:
        """Requests (or pgbench transactions) answered per second, whatever their status."""
        return self.load.requests_per_s

    @property
    def decided_requests(self) -> int:
        """Requests answered as expected: each decided all of its jobs."""
        return self.load.outcomes.get(self.scenario.expected_outcome, 0)

    @property
    def jobs_per_s(self) -> float | None:
        """Jobs decided per second (None for /health, which decides none)."""
        if self.scenario.kind == "health":
            return None
        if self.scenario.kind in ("claim", "drain"):
            # Only jobs a batch complete answered "completed"; a claim alone counts nothing.
            # A drain's: the jobs the database has completed, over the time spent draining.
            return self.load.counters.get("completed", 0) / self.load.wall_s
        if self.scenario.kind == "pacing":
            # Jobs the claims handed out: paid for at the hand-out, at the bucket's refill.
            return self.load.counters.get("handed_out", 0) / self.load.wall_s
        return self.decided_requests * self.scenario.jobs / self.load.wall_s

    @property
    def decisions(self) -> int | None:
        """Jobs decided during the run (None for /health); a claim's: jobs completed."""
        if self.scenario.kind == "health":
            return None
        if self.scenario.kind in ("claim", "drain"):
            return self.load.counters.get("completed", 0)
        if self.scenario.kind == "pacing":
            return self.load.counters.get("submitted", 0)
        return self.decided_requests * self.scenario.jobs

    @property
    def cpu_us_per_decision(self) -> dict[str, float]:
        """CPU microseconds each party (gunicorn, Postgres) spent per job decided in the run."""
        if not self.decisions:
            return {}
        return {
            name: self.cpu_s[name] / self.decisions * 1e6
            for name in DECISION_CPU_GROUPS
            if name in self.cpu_s
        }

    @property
    def p99_over_p50(self) -> float:
        """How much slower the 99th percentile is than the median."""
        p50, p99 = self.load.latency_ms["p50"], self.load.latency_ms["p99"]
        return p99 / p50 if p50 else math.nan

    def unexpected(self) -> list[str]:
        """Every answer that is not the one this scenario should get, as readable lines."""
        lines = []
        for outcome, count in self.load.outcomes.items():
            if outcome not in self.scenario.expected_outcomes:
                lines.append(f"{self.name}: {count} x {outcome}")
        for status, count in self.stored_jobs.items():
            if status != self.scenario.expected_job_status:
                lines.append(f"{self.name}: {count} jobs stored as {status}")
        if self.scenario.kind == "claim":
            lines += self._queue_unexpected()
        if self.scenario.kind == "drain":
            lines += [
                f"{self.name}: {self.load.counters[name]} {what}"
                for name, what in (
                    ("lost", "jobs not completed by the drain"),
                    ("completed_twice", "completions counted by the workers beyond the database's"),
                    ("not_completed", "jobs of a batch complete not answered completed"),
                )
                if self.load.counters.get(name)
            ]
        if self.scenario.kind == "pacing" and self.load.counters.get("not_waited", 0) > 0:
            lines.append(
                f"{self.name}: {self.load.counters['not_waited']} jobs did not wait, though "
                "submitted at ten times the refill"
            )
        return lines

    def _queue_unexpected(self) -> list[str]:
        counters = self.load.counters
        lines = [
            f"{self.name}: {counters[name]} {what}"
            for name, what in (
                ("empty_claims", "claims found the queue empty"),
                ("short_claims", f"claims leased fewer than {self.scenario.jobs} jobs"),
                ("not_completed", "jobs of a batch complete not answered completed"),
            )
            if counters.get(name)
        ]
        if self.queue_left == 0:
            lines.append(f"{self.name}: the queue was empty after the run")
        # wrk's count must be backed by the database: jobs finished within the run's window.
        finished = self.stored_jobs.get("completed")
        if finished is not None and finished < counters.get("completed", 0):
            lines.append(
                f"{self.name}: wrk counted {counters.get('completed', 0)} completed jobs, "
                f"the database {finished} finished in the run"
            )
        return lines

    @property
    def p50_ms(self) -> float:
        """The median latency."""
        return self.load.latency_ms["p50"]

    def measure(self, name: str) -> float | None:
        """`requests_per_s`, `jobs_per_s` or `p50_ms` by name."""
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class SoakMinute:
    """One minute of the soak, and what it did to the database."""

    minute: int
    load: LoadResult
    jobs_per_s: float
    jobs_rows: int
    jobs_table_mb: float
    wal_mb: float
    checkpoints: int | None
    cpu: Mapping[str, float]
    # Autovacuum and autoanalyze runs during the minute, on every table.
    autovacuums: int
    # Partitions of jobs that janus maintain dropped during the minute (bench/soak.py).
    dropped_partitions: int = 0
