"""The moving parts of a fault scenario: a Postgres it may kill, gunicorn, and a crowd of clients.

Everything is real: an embedded PostgreSQL of the scenario's own (devtools.localdb, in a
temporary directory, on a free port), so that stopping or killing it touches nothing else;
the service under gunicorn as the Procfile starts it; and HTTP clients on plain sockets
(http.client), so that a refused connection, a connection dropped after the request was sent,
and a timeout are told apart instead of all being "a connection error".
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import alembic.command
import alembic.config
import psycopg

from devtools import localdb, service
from devtools.ports import free_port
from janus.settings import sqlalchemy_url
from tests.conftest import REPO_ROOT

# After a kill -9 of the postmaster its backends keep the shared memory until they notice
# and exit, and a new postmaster refuses to start until then: starting is retried this long.
POSTGRES_START_TIMEOUT_S = 20
# The real service under gunicorn, as the Procfile's `web` line starts it (Service.start(), its
# worker_pids(), log() and stop()), and how long it may take to exit after SIGTERM.
Service = service.Service
SERVICE_STOP_TIMEOUT_S = service.STOP_TIMEOUT_S
# A client gives up after this long; an answer this late counts as a hang ("timeout").
CLIENT_TIMEOUT_S = 15

# How a request ended when no HTTP answer came back.
REFUSED = "refused"  # the connection was never made: nothing listened
DROPPED = "dropped"  # connected and sent, then the connection closed with no answer
TIMEOUT = "timeout"  # no answer within CLIENT_TIMEOUT_S
FAILURE_PAUSE_S = 0.01


class Clock:
    """Seconds since the scenario began, shared by its clients and its faults."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def now(self) -> float:
        """Seconds since this clock was made."""
        return time.monotonic() - self._start


class FaultPostgres:
    """An embedded PostgreSQL of one scenario's own, which it may stop, kill and restart."""

    def __init__(self, workdir: Path) -> None:
        self.data_dir = workdir / "pgdata"
        self.port = free_port()
        self.url = localdb.database_url(self.port)

    @classmethod
    def create(cls, *, migrate: bool = True) -> FaultPostgres:
        """A new server in a new temporary directory, started and (unless not `migrate`)
        migrated to head."""
        # Not pytest's tmp_path: the server may run as another user, who must reach the
        # directory (localdb opens its parents for that user), and the socket path is short.
        server = cls(Path(tempfile.mkdtemp(prefix="janus-fault-")))
        try:
            server.start()
            if not migrate:
                return server
            config = alembic.config.Config(str(REPO_ROOT / "alembic.ini"))
            config.set_main_option("sqlalchemy.url", sqlalchemy_url({"DATABASE_URL": server.url}))
            alembic.command.upgrade(config, "head")
        except BaseException:
            server.destroy()
            raise
        return server

    def start(self) -> None:
        """Start the server (creating it the first time) and return once it accepts queries."""
        deadline = time.monotonic() + POSTGRES_START_TIMEOUT_S
        while True:
            try:
                localdb.ensure_running(self.data_dir, self.port)
                return
            except localdb.LocalDbError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, open transactions rolled back."""
        localdb.stop(self.data_dir)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; its backends notice and exit on their own."""
        pid = self._postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        # pg_ctl daemonised it, so it is not our child to wait for: watch /proc instead.
        _wait_until(lambda: not _process_exists(pid), timeout=10, what="the postmaster to die")

    def connect(self) -> psycopg.Connection:
        """An autocommit session of the test's own, not through the service."""
        return psycopg.connect(self.url, autocommit=True, application_name="janus-fault-test")

    def clock(self) -> float:
        """The database clock, the one admission refills buckets by, in epoch seconds."""
        with self.connect() as conn:
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        assert row is not None
        return float(row[0])

    def destroy(self) -> None:
        """Stop the server whatever state it is in, and delete its data."""
        with contextlib.suppress(localdb.LocalDbError, OSError):
            self.stop()
        with contextlib.suppress(OSError, ValueError):
            pid = self._postmaster_pid()
            if _process_exists(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def _postmaster_pid(self) -> int:
        # postmaster.pid: pid, data directory, start time, port, ...
        return int((self.data_dir / "postmaster.pid").read_text(encoding="utf-8").split()[0])


def _process_exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    # A zombie is dead: it only waits for its parent to read its exit status.
    return state.rpartition(")")[2].split()[0] != "Z"


def _wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting {timeout}s for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Reply:
    """What came back for one HTTP request: an answer, or why there was none."""

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the answer was a 200."""
        return self.status == 200

    @property
    def kind(self) -> str:
        """The status code as text, or the failure (refused, dropped, timeout)."""
        return str(self.status) if self.status is not None else str(self.failure)


def send(
    base_url: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = CLIENT_TIMEOUT_S,
) -> Reply:
    """One request on a connection of its own; connection failures are a Reply, not raised."""
    address = urlsplit(base_url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=timeout)
    try:
        try:
            conn.connect()
        except TimeoutError:
            return Reply(None, failure=TIMEOUT)
        except OSError:
            return Reply(None, failure=REFUSED)
        try:
            payload = None if body is None else json.dumps(body).encode()
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
        except TimeoutError:
            return Reply(None, failure=TIMEOUT)
        except (OSError, http.client.HTTPException):
            return Reply(None, failure=DROPPED)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(response.status, dict(response.headers.items()), parsed)
    finally:
        conn.close()


@dataclass(frozen=True)
class JobCall:
    """One single-job request: whose, on which route, and what it costs."""

    user: str
    user_id: str
    path: str
    batch_name: str
    dependencies: Mapping[str, int]
    priority: int = 5
    # None: tenant-<user>.
    tenant_id: str | None = None
    # More fields of the body: when_limited, max_wait_seconds, ...
    extra: Mapping[str, Any] = field(default_factory=dict)
    # A batch (path .../batch or .../batch/atomic): each job's dependencies; the job's other
    # fields are the call's. Empty: a single job, of `dependencies`.
    batch: tuple[Mapping[str, int], ...] = ()


@dataclass(frozen=True)
class Probe:
    """One GET of a health route."""

    path: str


@dataclass(frozen=True)
class Attempt:
    """One request sent during a scenario and how it ended, on the scenario's clock."""

    call: JobCall | Probe
    sent_at: float
    answered_at: float
    reply: Reply

    @property
    def kind(self) -> str:
        """The status code as text, or the failure."""
        return self.reply.kind

    @property
    def latency(self) -> float:
        """Seconds from sending to the answer (or to the failure)."""
        return self.answered_at - self.sent_at

    @property
    def path(self) -> str:
        """The route requested."""
        return self.call.path

    @property
    def user(self) -> str | None:
        """Whose job this was; None for a probe."""
        return self.call.user if isinstance(self.call, JobCall) else None

    @property
    def batch_name(self) -> str | None:
        """The batch_name that identifies the job in the jobs table; None for a probe."""
        return self.call.batch_name if isinstance(self.call, JobCall) else None

    @property
    def job_id(self) -> str | None:
        """The job id the service answered with, if it answered with one."""
        if isinstance(self.reply.body, dict):
            job_id = self.reply.body.get("job_id")
            return str(job_id) if job_id is not None else None
        return None


def perform(base_url: str, call: JobCall | Probe, clock: Clock) -> Attempt:
    """Send `call` and time it on `clock`."""
    sent_at = clock.now()
    if isinstance(call, Probe):
        reply = send(base_url, "GET", call.path)
    else:
        job = {
            "tenant_id": call.tenant_id or f"tenant-{call.user}",
            "priority": call.priority,
            "dependencies": dict(call.dependencies),
            "payload": {"sent_as": call.batch_name},
            **call.extra,
        }
        body: dict[str, Any] = {"batch_name": call.batch_name, **job}
        if call.batch:
            jobs = [{**job, "dependencies": dict(each)} for each in call.batch]
            body = {"batch_name": call.batch_name, "jobs": jobs}
        reply = send(base_url, "POST", call.path, body=body, headers={"X-User-ID": call.user_id})
    return Attempt(call, sent_at, clock.now(), reply)


class Crowd:
    """Client threads, each sending one request after another until the crowd is stopped."""

    def __init__(
        self,
        base_url: str,
        clock: Clock,
        make_call: Callable[[int, int], JobCall | Probe],
        *,
        threads: int,
    ) -> None:
        self._base_url = base_url
        self._clock = clock
        self._make_call = make_call
        self._numbers = itertools.count()
        self._stopping = threading.Event()
        self._attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True)
            for index in range(threads)
        ]

    def _run(self, thread_index: int) -> None:
        while not self._stopping.is_set():
            call = self._make_call(next(self._numbers), thread_index)
            attempt = perform(self._base_url, call, self._clock)
            with self._lock:
                self._attempts.append(attempt)
            if attempt.reply.failure is not None:
                # As a real client would, rather than spin on a port nobody listens on.
                time.sleep(FAILURE_PAUSE_S)

    def start(self) -> Crowd:
        """Start every thread."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Attempt]:
        """Stop sending, wait for the requests in flight, and return every attempt."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)
        with self._lock:
            return sorted(self._attempts, key=lambda attempt: attempt.sent_at)


@contextlib.contextmanager
def crowd(
    base_url: str,
    clock: Clock,
    make_call: Callable[[int, int], JobCall | Probe],
    *,
    threads: int,
    attempts: list[Attempt],
) -> Iterator[Crowd]:
    """Run a Crowd for the body of the `with`; its attempts are appended to `attempts`."""
    running = Crowd(base_url, clock, make_call, threads=threads).start()
    try:
        yield running
    finally:
        attempts.extend(running.stop())


# How a slow client's request ended: answered with a status (as text), or the connection
# closed without an answer (while it was still sending, or after).
CLOSED = "closed"
# A slow client sends one byte per this many seconds.
TRICKLE_INTERVAL_S = 0.5


def trickle(base_url: str, user_id: str, batch_name: str, *, head_too: bool) -> str:
    """Send a job request one byte at a time, as a slow or hostile client does; how it ended.

    With `head_too` the request line and headers trickle as well; otherwise the head goes at
    once and only the body trickles. The request is complete and valid, were it ever to arrive.
    """
    body = json.dumps(
        {
            "batch_name": batch_name,
            "tenant_id": "tenant-slow",
            "priority": 5,
            "dependencies": {"stripe": 1},
            "payload": {"sent_as": batch_name},
        }
    ).encode()
    head = (
        f"POST /dashboard/jobs HTTP/1.1\r\nHost: janus\r\nX-User-ID: {user_id}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    address = urlsplit(base_url)
    with socket.create_connection(
        (address.hostname, address.port), timeout=CLIENT_TIMEOUT_S
    ) as sock:
        if not head_too:
            sock.sendall(head)
        trickled = head + body if head_too else body
        try:
            for index in range(len(trickled)):
                sock.sendall(trickled[index : index + 1])
                # An answer (or a close) may already be waiting: stop sending once it is.
                if select.select([sock], [], [], TRICKLE_INTERVAL_S)[0]:
                    break
            answer = sock.recv(4096)
        except TimeoutError:
            return TIMEOUT
        except OSError:
            return CLOSED
    if not answer:
        return CLOSED
    status_line = answer.split(b"\r\n", 1)[0].split()
    return status_line[1].decode() if len(status_line) > 1 else f"garbled {answer[:40]!r}"
