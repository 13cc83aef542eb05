"""The soak's jobs table that forgets by the minute (issue 27): while the soak's batches run,
`janus maintain` runs every minute, as its cron job would, with partitions of
SOAK_PARTITION_MINUTES kept SOAK_RETENTION_MINUTES, and a drainer completes the jobs the
soak's bucket accepts, as workers would: a partition holding an unfinished job is never
dropped, so without it nothing would be.

The soak's bucket accepts SOAK_ACCEPTED_PER_S jobs a second and rejects the rest, so that one
drainer keeps up on the same two cores as the load: accepted or rejected, each job is a row of
jobs, which is what the retention must forget.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from bench.common import BIN, REPO_ROOT, say
from bench.database import prefill_jobs
from bench.results import SoakMinute
from janus.admission import Source
from janus.db import queries
from janus.db.queue import finish_params
from janus.queue import Finish

if TYPE_CHECKING:
    from bench.measure import Bench
    from bench.scenarios import Scenario

SOAK_MINUTE_S = 60
SOAK_PARTITION_MINUTES = 5
SOAK_RETENTION_MINUTES = 10
# The drainer's claims: as many jobs as a worker's claim may take at once.
DRAIN_CLAIM = 1000
LEASE_S = 300
# `janus maintain` every minute, half-way through each minute of the soak.
MAINTAIN_EVERY_S = 60.0
MAINTAIN_OFFSET_S = 30.0


def partition_settings() -> dict[str, str]:
    """The environment of the migration, the service and `janus maintain` for the soak."""
    return {
        "JANUS_JOBS_PARTITION_MINUTES": str(SOAK_PARTITION_MINUTES),
        "JANUS_JOBS_RETENTION_MINUTES": str(SOAK_RETENTION_MINUTES),
    }


def partitions_mb(conn: psycopg.Connection[Any]) -> float:
    """The size on disk of every partition of jobs, with indexes and TOAST, in MB."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) / 1048576.0"
        "  FROM pg_inherits WHERE inhparent = 'jobs'::regclass"
    ).fetchone()
    return float(row[0]) if row else 0.0


@dataclass
class Housekeeping:
    """The drainer and `janus maintain` beside the soak's load, each in a thread of its own."""

    database_url: str
    user_id: UUID
    # When the soak's first span starts (wait_for_a_span()).
    soak_starts: datetime
    completed: int = 0
    # (monotonic time, partitions dropped) of each run of janus maintain.
    drops: list[tuple[float, int]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Housekeeping:
        for target in (self._drain, self._maintain):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def dropped_between(self, start: float, end: float) -> int:
        """Partitions dropped by the runs of janus maintain between two monotonic times."""
        return sum(count for at, count in self.drops if start <= at < end)

    def _drain(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.is_set():
                claim = conn.cursor(row_factory=dict_row).execute(
                    queries.HAND_OUT_JOBS,
                    {
                        "user_id": self.user_id,
                        "limit": DRAIN_CLAIM,
                        "lease_seconds": LEASE_S,
                        "tenant_id": None,
                        "batch_name": None,
                        "dependencies": None,
                    },
                )
                # The last row counts the leases taken back and has no job.
                items = [
                    Finish(row["job_id"], row["lease_token"])
                    for row in claim
                    if row["job_id"] is not None
                ]
                if not items:
                    self._stop.wait(0.2)
                    continue
                conn.execute(queries.FINISH_JOBS, finish_params(self.user_id, items))
                self.completed += len(items)

    def _maintain(self) -> None:
        env: Mapping[str, str] = {
            **os.environ,
            **partition_settings(),
            "DATABASE_URL": self.database_url,
        }
        if self._stop.wait(MAINTAIN_OFFSET_S):
            return
        while True:
            done = subprocess.run(
                [str(BIN / "janus"), "maintain"],
                cwd=REPO_ROOT,
                env=dict(env),
                capture_output=True,
                text=True,
                timeout=120,
            )
            lines = done.stdout.splitlines()
            # The partitions of the soak's spans: not jobs_before, nor a span begun before
            # the soak, which hold what the bench stored before it.
            dropped = [
                line
                for line in lines
                if line.startswith("dropped jobs_2") and _span_of(line) >= self.soak_starts
            ]
            for line in lines:
                if line.startswith("kept ") and line not in self.kept:
                    say(f"  janus maintain: {line}")
                    self.kept.append(line)
            self.drops.append((time.monotonic(), len(dropped)))
            for line in dropped:
                say(f"  janus maintain: {line}")
            if done.returncode != 0:
                say(f"  janus maintain failed: {done.stderr.strip()}")
            if self._stop.wait(MAINTAIN_EVERY_S):
                return


def wait_for_a_span(conn: psycopg.Connection[Any]) -> datetime:
    """Wait, idle, until the next span of SOAK_PARTITION_MINUTES starts by the database's
    clock, so that each partition holds a whole span of the soak and the first one dropped
    holds as much as every one after it; when it starts."""
    row = conn.execute(
        "SELECT date_bin(make_interval(mins => %s), now(), timestamptz '1970-01-01 00:00+00')"
        " + make_interval(mins => %s), now()",
        [SOAK_PARTITION_MINUTES, SOAK_PARTITION_MINUTES],
    ).fetchone()
    assert row is not None
    starts, now = row
    wait_s = (starts - now).total_seconds()
    say(f"soak: waiting {wait_s:.0f} s, idle, for the next {SOAK_PARTITION_MINUTES}-minute span")
    time.sleep(wait_s)
    starts_at: datetime = starts
    return starts_at


def _span_of(line: str) -> datetime:
    """When the span of the partition a line of janus maintain names starts, in UTC."""
    name = line.split()[1]
    return datetime.strptime(name, "jobs_%Y%m%d_%H%M").replace(tzinfo=UTC)


def prefill(bench: Bench, scenario: Scenario, rows: int) -> None:
    """Add jobs of `scenario`'s user, as it admits them, until the jobs table holds `rows`;
    then vacuum, analyze and checkpoint what was written, so that none of it is left to do
    during the soak."""
    user_id = bench.users[scenario.name][0]
    say(f"soak: pre-filling the jobs table to {rows:,} rows, jobs of user {user_id} ...")
    started = time.monotonic()
    # The family of routes the scenario's requests go through: what admission stores.
    added = prefill_jobs(bench.conn, user_id, Source(scenario.path.split("/")[1]), rows)
    filled_s = time.monotonic() - started
    bench.conn.execute("VACUUM (ANALYZE) jobs")
    bench.conn.execute("CHECKPOINT")
    say(
        f"  added {added:,} jobs in {filled_s:.0f}s, VACUUM (ANALYZE) and CHECKPOINT in "
        f"{time.monotonic() - started - filled_s:.0f}s"
    )


def soak(bench: Bench, scenario: Scenario, minutes: int, prefill_rows: int = 0) -> list[SoakMinute]:
    """`scenario` for `minutes` minutes without a break, measured minute by minute, after
    filling the jobs table to `prefill_rows`."""
    if prefill_rows > 0:
        prefill(bench, scenario, prefill_rows)
    rows, size_mb = bench.jobs_table()
    say(f"soak: {scenario.name} for {minutes} min, jobs table at {rows:,} rows, {size_mb:,.0f} MB")
    results = []
    wal_mb, checkpoints = bench.wal_and_checkpoints()
    autovacuums = bench.autovacuums()
    starts = wait_for_a_span(bench.conn)
    housekeeping = Housekeeping(bench.database_url, bench.users[scenario.name][0], starts)
    with housekeeping:
        for minute in range(1, minutes + 1):
            started = time.monotonic()
            result, (wal_mb, checkpoints, autovacuums) = _soak_minute(
                bench, scenario, minute, wal_mb, checkpoints, autovacuums
            )
            dropped = housekeeping.dropped_between(started, time.monotonic())
            results.append(replace(result, dropped_partitions=dropped))
    say(
        f"soak: {housekeeping.completed:,} accepted jobs completed beside it; janus maintain"
        f" dropped {sum(count for _, count in housekeeping.drops)} partitions"
    )
    if results:
        say(
            f"soak: the jobs table ended at {results[-1].jobs_rows:,} rows,"
            f" {results[-1].jobs_table_mb:,.0f} MB"
        )
    return results


def _soak_minute(
    bench: Bench,
    scenario: Scenario,
    minute: int,
    wal_mb: float,
    checkpoints: int | None,
    autovacuums: int,
) -> tuple[SoakMinute, tuple[float, int | None, int]]:
    """One minute of the soak, measured; and the counters after it (WAL MB, checkpoints,
    autovacuums)."""
    load, cpu, _ = bench.drive_timed(scenario, SOAK_MINUTE_S)
    rows, size_mb = bench.jobs_table()
    wal_mb_after, checkpoints_after = bench.wal_and_checkpoints()
    autovacuums_after = bench.autovacuums()
    result = SoakMinute(
        minute=minute,
        load=load,
        jobs_per_s=load.outcomes.get(scenario.expected_outcome, 0) * scenario.jobs / load.wall_s,
        jobs_rows=rows,
        jobs_table_mb=size_mb,
        wal_mb=wal_mb_after - wal_mb,
        checkpoints=(
            None
            if checkpoints is None or checkpoints_after is None
            else checkpoints_after - checkpoints
        ),
        cpu=cpu,
        autovacuums=autovacuums_after - autovacuums,
    )
    say(
        f"  minute {minute}: {result.jobs_per_s:,.0f} jobs/s, p99 "
        f"{load.latency_ms['p99']:.1f} ms, jobs table {rows:,} rows, {size_mb:,.0f} MB"
    )
    return result, (wal_mb_after, checkpoints_after, autovacuums_after)
