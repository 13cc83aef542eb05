"""Where gunicorn's workers leave their metrics: prometheus_client's multiprocess directory.

gunicorn.conf.py calls these in the master. `prepare` runs before any worker starts, so
every worker inherits PROMETHEUS_MULTIPROC_DIR; this module imports prometheus_client only
inside `mark_worker_dead`, by which time the variable is set (prometheus_client reads it
once, when first imported).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare(environ: MutableMapping[str, str]) -> tuple[Path, bool]:
    """The directory to use, emptied of an earlier run's files, and whether it was made here.

    PROMETHEUS_MULTIPROC_DIR when set (created if missing), else a new directory in memory
    (/dev/shm) or, without one, under the system's temporary directory; either way `environ`
    names it afterwards.
    """
    given = environ.get(VARIABLE, "").strip()
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        # Only the value files: the directory itself may be a mount the operator made.
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        created = False
    else:
        path = Path(tempfile.mkdtemp(prefix="janus-metrics-", dir=_in_memory_directory()))
        created = True
    environ[VARIABLE] = str(path)
    return path, created


def _in_memory_directory() -> str | None:
    """/dev/shm when this host has a writable one, else None (the system's temporary directory).

    Every metric update writes to a memory-mapped file. On a disk's filesystem the kernel
    writes those pages back, and the next update of a page being written back can wait for
    the disk (ext4 beside Postgres's fsyncs) while its worker holds the GIL; in memory it
    never waits.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (pool size); its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, os.environ[VARIABLE])


def remove(path: Path) -> None:
    """Delete a directory `prepare` made, when the server stops."""
    shutil.rmtree(path, ignore_errors=True)
