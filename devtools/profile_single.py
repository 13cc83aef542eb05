"""What one single job costs the web side: CPU per POST /system/jobs, and where it goes.

    .venv/bin/python -m devtools.profile_single DATABASE_URL             # the app in-process
    .venv/bin/python -m devtools.profile_single DATABASE_URL --profile   # and cProfile listings
    .venv/bin/python -m devtools.profile_single DATABASE_URL --gunicorn  # through a real worker
    .venv/bin/python -m devtools.profile_single DATABASE_URL --twin      # the bare twin instead

DATABASE_URL is a migrated database (`alembic upgrade head`) this adds two users to: one whose
buckets never run out (every job 202) and one whose buckets are emptied first (every job 429).
Each is sent the bench's single job (bench/scenarios.py) `--requests` times, one request at a
time, in `--rounds` rounds; the median round is reported.

In-process, the real app (janus.app: its middleware, a real pool, Postgres) is called as a
WSGI app with environs prepared beforehand, and this process's CPU time (the pool's threads
included) is divided by the requests: Postgres's CPU is its own processes', so this is the web
side's. Metrics are written as under gunicorn (to multiprocess files, in a temporary
PROMETHEUS_MULTIPROC_DIR) and the request log goes to a file, as gunicorn's output does.

--gunicorn starts `gunicorn -c gunicorn.conf.py` with one worker (devtools/service.py) and
sends the same requests over one kept-alive connection: the worker's CPU (/proc/PID/stat, in
clock ticks of 10 ms) per request, with gunicorn's parsing and janus/worker.py's reading. One
request at a time is the worst case for the worker's own share: under load, one wake-up of its
main thread serves several connections.

--twin measures the bare twin (bench/twin/) the same way, on its own schema of the database.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import http.client
import json
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from devtools.ports import HOST

JANUS_PATH = "/system/jobs"
TWIN_PATH = "/jobs"
# The bench's single job (bench/scenarios.py JOB) and batch name, as wrk sends them.
JOB = {
    "tenant_id": "tenant-bench",
    "priority": 8,
    "dependencies": {"openai": 2, "stripe": 1},
    "batch_name": "bench",
    "payload": {"custom_key": "custom_value"},
}
BODY = json.dumps(JOB).encode()
DEPENDENCIES = ("openai", "stripe")
# Emptied by one job that takes every bucket whole, and never refilled: every later job is
# rejected (429, rate_limit).
EMPTIED_CAPACITY = 100
EMPTIED = {
    "dependencies": {
        name: {"capacity": EMPTIED_CAPACITY, "refill_per_second": 0} for name in DEPENDENCIES
    }
}
DRAIN_BODY = json.dumps(
    {**JOB, "priority": 10, "dependencies": dict.fromkeys(DEPENDENCIES, EMPTIED_CAPACITY)}
).encode()
UNLIMITED = {
    "dependencies": {
        name: {"capacity": 10**12, "refill_per_second": 10**9} for name in DEPENDENCIES
    }
}
WARM_UP = 300

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Sends one body as one user; answers the status.
Post = Callable[[UUID, bytes], int]


def make_users(database_url: str) -> tuple[UUID, UUID]:
    """A user whose jobs are all accepted, and one whose buckets are to be emptied."""
    from janus.db import accounts
    from janus.schemas.requests import ConfigSchema

    users = []
    with accounts.operator_transaction(database_url) as conn:
        for kind, config in (("accepted", UNLIMITED), ("rejected", EMPTIED)):
            user_id = accounts.create_user(conn, f"profile {kind} {uuid4().hex[:8]}")
            accounts.activate_config(conn, user_id, ConfigSchema().load(config))
            users.append(user_id)
    return users[0], users[1]


def install_twin(database_url: str) -> None:
    import psycopg

    from bench.twin import database as twin_database
    from bench.twin.app import BUCKET

    with psycopg.connect(database_url, autocommit=True) as conn:
        twin_database.install(conn)
        twin_database.fill_bucket(conn, BUCKET, 10**12, 10**9)


def _environ(path: str, user_id: UUID, body: bytes) -> dict[str, Any]:
    import falcon.testing

    return falcon.testing.create_environ(
        method="POST",
        path=path,
        body=body,
        headers={
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "X-User-ID": str(user_id),
        },
    )


def _call(app: WsgiApp, environ: dict[str, Any]) -> int:
    """Call `app` as a WSGI server would, reading the whole answer; its status."""
    statuses = []

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        statuses.append(status)

    b"".join(app(environ, start_response))
    return int(statuses[0][:3])


def _report(name: str, costs: list[float], split: tuple[float, float] | None = None) -> None:
    rounds = ", ".join(f"{cost:.0f}" for cost in costs)
    line = f"{name}: {statistics.median(costs):.0f} us of CPU per request (rounds: {rounds})"
    if split is not None:
        user, system = split
        line += f", {user / (user + system):.0%} of it in user space"
    print(line, flush=True)


@contextmanager
def _request_log_to_file() -> Iterator[None]:
    """Configure janus.logs with the request log in a temporary file, as gunicorn's output is."""
    from janus import logs

    with tempfile.NamedTemporaryFile("w", prefix="janus-profile-log-") as log_file:
        real_stdout, sys.stdout = sys.stdout, log_file
        try:
            logs.configure("info")
        finally:
            sys.stdout = real_stdout
        yield


def in_process(
    database_url: str, requests: int, rounds: int, *, profile: bool, bare_twin: bool
) -> None:
    """The app in this process: CPU per request, for each kind of answer."""
    # Before prometheus_client is first imported, as gunicorn.conf.py sets it for the workers.
    metrics_dir = tempfile.mkdtemp(prefix="janus-profile-metrics-")
    # Removed at exit: prometheus_client keeps its files open until then.
    atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from psycopg_pool import ConnectionPool

    from bench.twin.app import create_app as create_twin
    from janus.app import create_app
    from janus.db.pool import make_pool
    from janus.settings import Settings

    settings = Settings(database_url=database_url)
    if bare_twin:
        # As bench/twin/wsgi.py makes it.
        pool = ConnectionPool(database_url, min_size=2, max_size=2, kwargs={"autocommit": True})
    else:
        pool = make_pool(settings)
    pool.open(wait=True)
    try:
        with _request_log_to_file():
            if bare_twin:
                install_twin(database_url)
                app = create_twin(pool)
                loads = [("twin, 202", TWIN_PATH, uuid4(), 202)]
            else:
                accepted, rejected = make_users(database_url)
                app = create_app(settings, pool)
                assert _call(app, _environ(JANUS_PATH, rejected, DRAIN_BODY)) == 202
                loads = [
                    ("janus, 202", JANUS_PATH, accepted, 202),
                    ("janus, 429", JANUS_PATH, rejected, 429),
                ]
            for _ in range(WARM_UP):
                for _, path, user_id, expect in loads:
                    assert _call(app, _environ(path, user_id, BODY)) == expect
            for name, path, user_id, _ in loads:
                costs, user, system = [], 0.0, 0.0
                for _ in range(rounds):
                    environs = [_environ(path, user_id, BODY) for _ in range(requests)]
                    before = resource.getrusage(resource.RUSAGE_SELF)
                    started = time.process_time()
                    for environ in environs:
                        _call(app, environ)
                    costs.append((time.process_time() - started) / requests * 1e6)
                    after = resource.getrusage(resource.RUSAGE_SELF)
                    user += after.ru_utime - before.ru_utime
                    system += after.ru_stime - before.ru_stime
                _report(name, costs, (user, system))
                if profile:
                    _profile(app, [_environ(path, user_id, BODY) for _ in range(requests)])
    finally:
        pool.close()


def _profile(app: WsgiApp, environs: list[dict[str, Any]]) -> None:
    # CPU time, not wall time: waiting for Postgres is not the web side's cost. cProfile's own
    # cost per call inflates what makes many small calls: read it for where, not how much.
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for environ in environs:
        _call(app, environ)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(70)


def _cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def through_gunicorn(database_url: str, requests: int, rounds: int, *, bare_twin: bool) -> None:
    """One gunicorn worker, one kept-alive connection: the worker's CPU per request."""
    from bench.twin import server as twin_server
    from devtools.service import Service

    log_path = Path(tempfile.mkdtemp(prefix="janus-profile-")) / "gunicorn.log"
    if bare_twin:
        install_twin(database_url)
        service = twin_server.start(database_url, log_path, workers=1, timeout_s=20)
        path, loads = TWIN_PATH, [("twin worker, 202", uuid4(), 202)]
    else:
        accepted, rejected = make_users(database_url)
        service = Service.start(database_url, log_path, workers=1)
        path = JANUS_PATH
        loads = [("janus worker, 202", accepted, 202), ("janus worker, 429", rejected, 429)]
    with service:
        [worker] = service.worker_pids()
        conn = http.client.HTTPConnection(HOST, int(service.url.rpartition(":")[2]))

        def post(user_id: UUID, body: bytes) -> int:
            headers = {"Content-Type": "application/json", "X-User-ID": str(user_id)}
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status

        if not bare_twin:
            assert post(rejected, DRAIN_BODY) == 202
        for name, user_id, expect in loads:
            for _ in range(WARM_UP):
                assert post(user_id, BODY) == expect
            costs, user, system = [], 0.0, 0.0
            for _ in range(rounds):
                user_before, system_before = _cpu_s(worker)
                for _ in range(requests):
                    post(user_id, BODY)
                user_after, system_after = _cpu_s(worker)
                user += user_after - user_before
                system += system_after - system_before
                costs.append(
                    (user_after - user_before + system_after - system_before) / requests * 1e6
                )
            _report(name, costs, (user, system))
        conn.close()
    print(f"gunicorn's output: {log_path}")


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("--requests", type=int, default=3000, help="per round (3000)")
    parser.add_argument("--rounds", type=int, default=3, help="the median is reported (3)")
    parser.add_argument("--profile", action="store_true", help="and print cProfile listings")
    parser.add_argument("--gunicorn", action="store_true", help="through one gunicorn worker")
    parser.add_argument("--twin", action="store_true", help="the bare twin instead of Janus")
    args = parser.parse_args(argv)
    if args.gunicorn:
        through_gunicorn(args.database_url, args.requests, args.rounds, bare_twin=args.twin)
    else:
        in_process(
            args.database_url, args.requests, args.rounds, profile=args.profile, bare_twin=args.twin
        )


if __name__ == "__main__":
    main()
