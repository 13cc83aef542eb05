"""What /proc says: CPU time of process trees, workers' memory, and the machine itself (Linux)."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def parent_pid(pid: int) -> int | None:
    """The parent of `pid`, or None when it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def command_name(pid: int) -> str:
    """The process's command name ("" when it is gone)."""
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """The live children of `pid`."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and parent_pid(int(entry.name)) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _tree(pid: int) -> Iterator[int]:
    yield pid
    for child in children(pid):
        yield from _tree(child)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid`, its live descendants and the children it reaped.

    A reaped child's time moves into its parent's cutime/cstime, so a Postgres backend that
    exits between two readings is still counted once.
    """
    total = 0
    for member in _tree(pid):
        fields = _stat_fields(member)
        if fields is not None:
            # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the name.
            total += sum(int(value) for value in fields[11:15])
    return total / TICKS_PER_S


def reaped_children_cpu_s() -> float:
    """CPU seconds of this process's children that have been waited for (wrk, pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot, all cores added."""
    fields = [int(value) for value in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS_PER_S


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds used so far by each named process tree, the load generator, the machine."""

    groups: Mapping[str, float]
    load: float
    machine_busy: float


def read_cpu(roots: Mapping[str, int]) -> CpuReading:
    """Read the CPU counters of each named process tree, the load generator and the machine."""
    return CpuReading(
        groups={name: tree_cpu_s(pid) for name, pid in roots.items()},
        load=reaped_children_cpu_s(),
        machine_busy=machine_busy_s(),
    )


def cpu_seconds(before: CpuReading, after: CpuReading) -> dict[str, float]:
    """CPU seconds each group, and the load generator (`load`), used between two readings."""
    used = {name: after.groups[name] - before.groups[name] for name in after.groups}
    used["load"] = after.load - before.load
    return used


def cpu_percent(before: CpuReading, after: CpuReading, wall_s: float) -> dict[str, float]:
    """Each group's CPU between two readings, in % of one core (2 cores: up to 200).

    `machine` is what the whole machine used, `other` what neither the groups nor the load
    generator did: other engineers' tests, other services. A large `other` is a noisy run.
    """
    shares = {name: 100 * used / wall_s for name, used in cpu_seconds(before, after).items()}
    accounted = sum(shares.values())
    shares["machine"] = 100 * (after.machine_busy - before.machine_busy) / wall_s
    shares["other"] = max(0.0, shares["machine"] - accounted)
    return shares


def machine_busy_percent(interval_s: float = 1.0) -> float:
    """The CPU the whole machine uses over the next `interval_s`, in % of one core."""
    busy_before = machine_busy_s()
    time.sleep(interval_s)
    busy_after = machine_busy_s()
    return 100 * (busy_after - busy_before) / interval_s


def _kb_field(path: Path, key: str) -> int | None:
    """The `key: N kB` line of a /proc file such as status or meminfo, or None."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class WorkerMemory:
    """A gunicorn worker's resident memory now (VmRSS) and at its peak (VmHWM), in MB."""

    pid: int
    rss_mb: float
    peak_mb: float


def worker_memory(master_pid: int) -> list[WorkerMemory]:
    """The memory of each worker (child) of the gunicorn master."""
    workers = []
    for pid in children(master_pid):
        status = PROC / str(pid) / "status"
        rss, peak = _kb_field(status, "VmRSS"), _kb_field(status, "VmHWM")
        if rss is not None and peak is not None:
            workers.append(WorkerMemory(pid, rss / 1024, peak / 1024))
    return workers


def machine() -> dict[str, object]:
    """Cores, CPU model, memory and kernel of this machine."""
    model = platform.processor() or "unknown"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kb = _kb_field(PROC / "meminfo", "MemTotal")
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1) if memory_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
