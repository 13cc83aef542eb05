"""Start the twin under gunicorn, as devtools/service.py starts Janus, and wait until it serves.

`gunicorn -c bench/twin/gunicorn.conf.py` from the repository root, with DATABASE_URL, PORT (a
free loopback port), JANUS_BIND_HOST (loopback) and WEB_CONCURRENCY on top of this process's
environment, its output to a file, in a process group of its own. The result is a
devtools.service.Service, stopped the same way (SIGTERM, then wait).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from devtools.ports import HOST, free_port
from devtools.service import POLL_INTERVAL_S, REPO_ROOT, Service, ServiceError

TWIN_CONF = Path(__file__).resolve().parent / "gunicorn.conf.py"


def start(database_url: str, log_path: Path, *, workers: int, timeout_s: float) -> Service:
    """Start the twin with `workers` workers; return once they all run and /health is 200.

    Raises ServiceError, after stopping it, when it exits or is not serving within `timeout_s`.
    """
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        # The twin binds loopback (its gunicorn.conf.py), as Janus's settings check is told.
        "JANUS_BIND_HOST": "127.0.0.1",
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", str(TWIN_CONF)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # A Ctrl-C in the bench's terminal reaches only the bench, which stops this in order.
            start_new_session=True,
        )
    twin = Service(f"http://{HOST}:{port}", process, log_path, workers)
    try:
        _wait_until_serving(twin, timeout_s)
    except BaseException:
        twin.stop()
        raise
    return twin


def _wait_until_serving(twin: Service, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        exit_status = twin.process.poll()
        if exit_status is not None:
            raise ServiceError(
                f"the twin's gunicorn exited at start (status {exit_status})", twin.log()
            )
        running = len(twin.worker_pids())
        if running == twin.workers and twin.healthy():
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"the twin did not serve /health with {twin.workers} workers within "
                f"{timeout_s:g}s ({running} running)",
                twin.log(),
            )
        time.sleep(POLL_INTERVAL_S)
