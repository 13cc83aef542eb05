"""The real service under gunicorn, started as the Procfile's `web` line starts it.

For the tests, the fault scenarios and the bench: `gunicorn -c gunicorn.conf.py` from the
repository root (or another release's tree), with DATABASE_URL, PORT (a free loopback port),
JANUS_BIND_HOST=127.0.0.1 and WEB_CONCURRENCY on top of this process's environment, and the
caller's extra variables on top of those. Its output goes to a file. Service.start() returns
once every worker runs and /health answers 200; Service.stop() sends SIGTERM and waits for the
graceful exit, and sends SIGKILL only if that never comes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit

from devtools.ports import HOST, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 20.0
# Longer than gunicorn.conf.py's graceful_timeout, so workers finish their requests.
STOP_TIMEOUT_S = 40.0
# With no worker count asked for (gunicorn.conf.py's default, or GUNICORN_CMD_ARGS, decides),
# the workers are taken to be all up once their number has held this long.
STEADY_WORKERS_S = 1.0
POLL_INTERVAL_S = 0.05
HEALTH_TIMEOUT_S = 1.0
# How much of gunicorn's output an error message quotes: the end, where the reason is.
OUTPUT_TAIL_CHARS = 5000


class ServiceError(RuntimeError):
    """gunicorn did not start serving; the message ends with the tail of its output."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}; its output:\n{output[-OUTPUT_TAIL_CHARS:]}")
        self.output = output


def gunicorn_command() -> list[str]:
    """The Procfile's web line, run with the gunicorn installed next to this Python."""
    return [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py"]


def _popen(
    *,
    root: Path = REPO_ROOT,
    port: int,
    database_url: str | None,
    workers: int | None,
    env: Mapping[str, str],
    base_env: Mapping[str, str],
    stdout: IO[bytes] | int,
    new_session: bool,
) -> subprocess.Popen[bytes]:
    """Start gunicorn; the one place in the project that does."""
    process_env = {**base_env, "PORT": str(port), "JANUS_BIND_HOST": HOST}
    if database_url is not None:
        process_env["DATABASE_URL"] = database_url
    if workers is not None:
        process_env["WEB_CONCURRENCY"] = str(workers)
    return subprocess.Popen(
        gunicorn_command(),
        cwd=root,
        env={**process_env, **env},
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )


@dataclass
class Service:
    """gunicorn serving Janus on 127.0.0.1, with its output in `log_path`.

    Also a context manager that stops it on leaving.
    """

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    # The workers asked for (WEB_CONCURRENCY); None leaves it to gunicorn.conf.py.
    workers: int | None = None

    @classmethod
    def start(
        cls,
        database_url: str,
        log_path: Path,
        *,
        workers: int | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        timeout_s: float = START_TIMEOUT_S,
        root: Path = REPO_ROOT,
    ) -> Service:
        """Start gunicorn on a free port; return once every worker runs and /health is 200.

        `root` is the tree whose gunicorn.conf.py it reads (another release's checkout, for
        the deploy scenario). `env` is added last, so it may override any variable.
        `new_session` gives gunicorn a process group of its own: a Ctrl-C in the caller's
        terminal then reaches only the caller, which stops gunicorn in order. Raises
        ServiceError, after stopping gunicorn, when it exits or is not serving within
        `timeout_s`.
        """
        port = free_port()
        with log_path.open("wb") as log_file:
            # A file, not a pipe: nobody reads gunicorn's output while it runs, and a full
            # pipe would block its workers.
            process = _popen(
                root=root,
                port=port,
                database_url=database_url,
                workers=workers,
                env=env or {},
                base_env=os.environ,
                stdout=log_file,
                new_session=new_session,
            )
        service = cls(f"http://{HOST}:{port}", process, log_path, workers)
        try:
            service._wait_until_serving(timeout_s)
        except BaseException:
            service.stop()
            raise
        return service

    @property
    def master_pid(self) -> int:
        """The gunicorn master's pid: its workers are its children."""
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The live worker processes, children of the gunicorn master."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text(encoding="utf-8").rpartition(")")[2].split()
                # After the command name: state, then the parent's pid. A zombie is dead.
                if fields[0] != "Z" and int(fields[1]) == self.master_pid:
                    pids.append(int(stat.parent.name))
        return sorted(pids)

    def healthy(self) -> bool:
        """Whether GET /health answers 200 now."""
        address = urlsplit(self.url)
        conn = http.client.HTTPConnection(HOST, address.port, timeout=HEALTH_TIMEOUT_S)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def log(self) -> str:
        """Everything gunicorn and its workers wrote so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM, then wait for a graceful exit (SIGKILL only if that never comes)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_serving(self, timeout_s: float) -> None:
        """Until /health answers 200 and all the workers run: as many as asked for, else
        as many as have stayed for STEADY_WORKERS_S (they boot one after another)."""
        deadline = time.monotonic() + timeout_s
        seen, steady_since = -1, time.monotonic()
        while True:
            exit_status = self.process.poll()
            if exit_status is not None:
                raise ServiceError(f"gunicorn exited at start (status {exit_status})", self.log())
            count = len(self.worker_pids())
            if count != seen:
                seen, steady_since = count, time.monotonic()
            if self.workers is not None:
                all_running = count == self.workers
            else:
                all_running = count > 0 and time.monotonic() - steady_since >= STEADY_WORKERS_S
            if all_running and self.healthy():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"gunicorn did not serve /health with all its workers within {timeout_s:g}s "
                    f"({count} workers running)",
                    self.log(),
                )
            time.sleep(POLL_INTERVAL_S)


def run_to_exit(
    env: Mapping[str, str],
    *,
    timeout_s: float,
    workers: int = 1,
    base_env: Mapping[str, str] | None = None,
) -> tuple[int | None, str]:
    """Run gunicorn until it exits by itself: its exit status (None: stopped at `timeout_s`)
    and its output. For checking that it refuses to start, so DATABASE_URL comes in `env`.

    `base_env` (default: this process's environment) is what `env` and the Procfile's
    variables are added to.
    """
    process = _popen(
        port=free_port(),
        database_url=None,
        workers=workers,
        env=env,
        base_env=os.environ if base_env is None else base_env,
        # A pipe is fine here: communicate() reads it while gunicorn runs.
        stdout=subprocess.PIPE,
        new_session=False,
    )
    status: int | None
    try:
        output, _ = process.communicate(timeout=timeout_s)
        status = process.returncode
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        status = None
    return status, output.decode("utf-8", "replace")
