"""The load generators: wrk against the service, pgbench against Postgres alone.

Each run returns a LoadResult: how long it ran, what came back (every status code, every
socket error), and the latency percentiles.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
# One request shape per scenario (janus.lua), or workers claiming and completing (queue.lua).
LUA_SCRIPT = LUA_DIR / "janus.lua"
QUEUE_LUA_SCRIPT = LUA_DIR / "queue.lua"
WRK_RESULT_PREFIX = "JANUS_WRK "


class LoadError(Exception):
    """A load generator could not run or said something we cannot read; the message says why."""


@dataclass(frozen=True)
class LoadResult:
    """What one measured run saw."""

    wall_s: float
    # Completed requests (wrk) or committed transactions (pgbench).
    requests: int
    # Every HTTP status code seen, and every kind of socket or SQL error, with its count.
    outcomes: dict[str, int]
    latency_ms: dict[str, float]
    # What the generator printed, kept with the results.
    output: str = field(repr=False)
    # What the script counted beside the statuses (queue.lua: jobs claimed and completed,
    # empty claims, ...).
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        """Requests (or transactions) answered per second, whatever their status."""
        return self.requests / self.wall_s if self.wall_s else 0.0


@dataclass(frozen=True)
class HttpLoad:
    """What wrk runs: a Lua script of bench/lua/ and the arguments it reads (see its header)."""

    base_url: str
    script: Path
    script_args: Sequence[str]


def run_wrk(
    load: HttpLoad, *, duration_s: float, connections: int, threads: int, timeout_s: float
) -> LoadResult:
    """Drive the service with wrk for `duration_s`, `connections` kept busy by `threads`."""
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        f"--script={load.script}",
        load.base_url,
        "--",
        *load.script_args,
    ]
    output = _run(command, timeout_s=duration_s + timeout_s + 30)
    result_lines = [line for line in output.splitlines() if line.startswith(WRK_RESULT_PREFIX)]
    if not result_lines:
        raise LoadError(f"wrk printed no result line; its output:\n{output}")
    summary = json.loads(result_lines[-1].removeprefix(WRK_RESULT_PREFIX))
    outcomes = {str(status): count for status, count in sorted(summary["statuses"].items())}
    for kind, count in summary["errors"].items():
        if count:
            outcomes[f"socket {kind} errors"] = count
    latency = summary["latency_us"]
    return LoadResult(
        wall_s=summary["duration_us"] / 1e6,
        requests=summary["requests"],
        outcomes=outcomes,
        latency_ms={name: latency[name] / 1000 for name in ("mean", "p50", "p90", "p99", "max")},
        output=output,
        counters={str(name): int(count) for name, count in summary.get("counters", {}).items()},
    )


@dataclass(frozen=True)
class SqlLoad:
    """What pgbench sends: a script and the variables it names, to one database."""

    pgbench: Path
    database_url: str
    script: Path
    variables: Mapping[str, str]
    log_prefix: Path


def run_pgbench(
    load: SqlLoad, *, duration_s: float, connections: int, threads: int, keep_log: bool = True
) -> LoadResult:
    """Run the script with `connections` clients on `threads` threads, prepared statements."""
    for old_log in load.log_prefix.parent.glob(f"{load.log_prefix.name}.*"):
        old_log.unlink()
    command = [
        str(load.pgbench),
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={connections}",
        f"--jobs={min(threads, connections)}",
        f"--time={max(1, round(duration_s))}",
        f"--file={load.script}",
        *(f"--define={name}={value}" for name, value in load.variables.items()),
        "--log",
        f"--log-prefix={load.log_prefix}",
        load.database_url,
    ]
    started = time.monotonic()
    output = _run(command, timeout_s=duration_s + 60, check=False)
    wall_s = time.monotonic() - started
    processed = _pgbench_number(output, r"number of transactions actually processed: (\d+)")
    failed = _pgbench_number(output, r"number of failed transactions: (\d+)") or 0
    tps = _pgbench_number(output, r"tps = ([\d.]+) \(without initial connection time\)")
    if processed is None or tps is None:
        raise LoadError(f"pgbench did not finish; its output:\n{output}")
    latencies = _pgbench_latencies_us(load.log_prefix)
    if not keep_log:
        for log in load.log_prefix.parent.glob(f"{load.log_prefix.name}.*"):
            log.unlink()
    outcomes = {"committed": int(processed)}
    if failed:
        outcomes["failed"] = int(failed)
    aborted = len(re.findall(r"^pgbench: error: client \d+ .*aborted", output, re.MULTILINE))
    if aborted:
        outcomes["aborted clients"] = aborted
    return LoadResult(
        # pgbench's own tps leaves out connection set-up; express it as the wall time it implies.
        wall_s=processed / tps if tps else wall_s,
        requests=int(processed),
        outcomes=outcomes,
        latency_ms=latency_summary_ms(latencies),
        output=output,
    )


def _pgbench_number(output: str, pattern: str) -> float | None:
    match = re.search(pattern, output)
    return float(match.group(1)) if match else None


def _pgbench_latencies_us(log_prefix: Path) -> list[int]:
    """Each transaction's latency from pgbench's per-transaction logs (--log)."""
    latencies = []
    for log in log_prefix.parent.glob(f"{log_prefix.name}.*"):
        for line in log.read_text().splitlines():
            # client_id transaction_no time script_no time_epoch time_us ...; time is the
            # latency in microseconds, or a word for a failed transaction.
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]))
    return latencies


def latency_summary_ms(latencies_us: Sequence[float]) -> dict[str, float]:
    """mean, p50, p90, p99 and max in milliseconds, of latencies in microseconds."""
    return {name: value / 1000 for name, value in _latency_summary_us(latencies_us).items()}


def _latency_summary_us(latencies: Sequence[float]) -> dict[str, float]:
    if not latencies:
        return {name: math.nan for name in ("mean", "p50", "p90", "p99", "max")}
    ordered = sorted(latencies)
    return {
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }


def percentile(ordered: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def _run(command: Sequence[str], *, timeout_s: float, check: bool = True) -> str:
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        raise LoadError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LoadError(f"{Path(command[0]).name} did not finish in {timeout_s:.0f}s") from None
    output = completed.stdout + completed.stderr
    if check and completed.returncode != 0:
        raise LoadError(
            f"{Path(command[0]).name} exited with status {completed.returncode}:\n{output}"
        )
    return output
