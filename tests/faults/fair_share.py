"""One user's heavy reads against another user's single jobs (issue 25's done-when).

The hog has 1,000,000 jobs, almost all rejected and sent through /system, so that the filters
that once read its whole history (`source=dashboard`, `status=Accepted`, and either beside
another filter) match a handful. Ten hog clients read those filters a page of 100 at a time,
one request after another, while one client of another user sends single jobs one at a
time. The other user's jobs are measured alone and beside the hog, in alternating windows
(so a machine that slows down meanwhile slows both alike), and must keep:

- no 503 (nor any other 5xx);
- at least half their rate alone;
- a p99 latency within 3x their p99 alone.

The hog's answers are counted too: 200s, and 429s when it asked for more than its share of
connections (janus/db/pool.py's UserShare).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import multiprocessing
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from tests.faults.harness import Attempt, JobCall
from tests.faults.scenarios import Run, ScenarioResult
from tests.support.history import job_id_at

HOG_JOBS = 1_000_000
# One job in this many is accepted, from the dashboard: what the scanning filters find.
HOG_MATCH_ONE_IN = 100_000
HOG_CLIENTS = 10
HOG_PAGE = 100
# The filters that read the hog's whole index range before pages were bounded.
HOG_FILTERS = (
    "source=dashboard",
    "status=Accepted",
    "source=dashboard&status=Accepted",
    "status=Accepted&tenant_id=tenant-hog",
    "source=dashboard&state=completed",
)
# Alternating windows: the other user alone, then beside the hog, ROUNDS times each.
WINDOW_S = 6
ROUNDS = 2
# Issue 25: at least half the rate alone, and a p99 within 3x the p99 alone.
MIN_RATE_RATIO = 0.5
MAX_P99_RATIO = 3.0
BUCKETS = {"openai": {"capacity": 10_000_000, "refill_per_second": 0}}

_INSERT_HOG_JOBS = (
    """
INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority, dependencies,
                  payload, status, reason, reason_code, state, attempts, created_at, finished_at)
SELECT """
    + job_id_at("j.created_at")
    + """, %(user_id)s, CASE WHEN j.match THEN 'dashboard' ELSE 'system' END, 'hog',
       'tenant-hog', 5, '{"openai": 1}', '{}',
       CASE WHEN j.match THEN 'Accepted' ELSE 'Rejected' END,
       CASE WHEN j.match THEN '' ELSE 'dependency ''openai'' rate limit exceeded' END,
       CASE WHEN j.match THEN NULL ELSE 'rate_limit' END,
       CASE WHEN j.match THEN 'completed' END, CASE WHEN j.match THEN 1 ELSE 0 END,
       j.created_at, CASE WHEN j.match THEN j.created_at END
  FROM generate_series(1, %(count)s) AS n
 CROSS JOIN LATERAL (
       SELECT now() - make_interval(secs => n * 0.001) AS created_at,
              n %% %(one_in)s = 0 AS match) j
"""
)


@dataclass
class Window:
    """What the other user's client saw in one window."""

    beside_hog: bool
    seconds: float
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Jobs answered 202 a second."""
        return sum(a.kind == "202" for a in self.attempts) / self.seconds

    def latencies(self) -> list[float]:
        """Every answer's latency, seconds."""
        return [a.latency for a in self.attempts]


def _p99(latencies: Sequence[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else 0.0


def _insert_hog(db: psycopg.Connection, user_id: Any) -> None:
    db.execute(
        _INSERT_HOG_JOBS, {"user_id": user_id, "count": HOG_JOBS, "one_in": HOG_MATCH_ONE_IN}
    )
    db.execute("VACUUM (ANALYZE) jobs")


def fair_share_under_reads(log_dir: Path) -> ScenarioResult:
    """A user of 1,000,000 jobs reads scanning filters from 10 clients beside another's jobs."""
    description = (
        f"a hog of {HOG_JOBS:,} jobs reads {', '.join(HOG_FILTERS)} (limit {HOG_PAGE}) from "
        f"{HOG_CLIENTS} clients while another user sends single jobs one at a time; "
        f"{ROUNDS} rounds of {WINDOW_S} s alone then {WINDOW_S} s beside the hog"
    )
    run = Run(
        "fair-share-reads",
        description,
        log_dir,
        buckets=BUCKETS,
        users=("alice", "hog"),
        before_load=None,
    )
    try:
        with run.postgres.connect() as db:
            _insert_hog(db, run.users["hog"])
        windows, hog = _measure(run)
        result = run.finish()
        _judge(run, windows, hog)
        return result
    finally:
        run.close()


def _measure(run: Run) -> tuple[list[Window], Counter[str]]:
    """ROUNDS pairs of windows: the other user alone, then beside the hog's readers; and
    what the hog's reads were answered."""
    alice = str(run.users["alice"])
    hog = str(run.users["hog"])
    numbers = itertools.count()

    def job(_: int, __: int) -> JobCall:
        number = next(numbers)
        return JobCall("alice", alice, "/system/jobs", f"request-{number}-alice", {"openai": 1})

    hog_answers: Counter[str] = Counter()
    # Warm every worker's pool and plans before the first window counts.
    with run.load(job, threads=1), _hog_reading(run.service.url, hog) as warming:
        time.sleep(2)
    hog_answers += warming.answers
    windows: list[Window] = []
    for _ in range(ROUNDS):
        for beside_hog in (False, True):
            before = len(run.attempts)
            started = time.monotonic()
            if beside_hog:
                with _hog_reading(run.service.url, hog) as reading, run.load(job, threads=1):
                    time.sleep(WINDOW_S)
                hog_answers += reading.answers
            else:
                with run.load(job, threads=1):
                    time.sleep(WINDOW_S)
            window = Window(beside_hog, time.monotonic() - started)
            window.attempts = [a for a in run.attempts[before:] if isinstance(a.call, JobCall)]
            windows.append(window)
    return windows, hog_answers


@dataclass
class _Reading:
    """The hog's readers while they run, and what they were answered once stopped."""

    answers: Counter[str] = field(default_factory=Counter)


@contextlib.contextmanager
def _hog_reading(base_url: str, hog: str) -> Iterator[_Reading]:
    """HOG_CLIENTS readers in a process of their own, for the body of the `with`: in this one
    their threads would hold the GIL that the other user's client needs, and slow it down
    as the service never did."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    answers = context.Queue()
    process = context.Process(target=read_as_hog, args=(base_url, hog, stop, answers))
    process.start()
    reading = _Reading()
    try:
        # Begun once the process is up and its first read answered.
        assert answers.get(timeout=60) == "started"
        yield reading
    finally:
        stop.set()
        reading.answers.update(answers.get(timeout=60))
        process.join(timeout=30)


def read_as_hog(base_url: str, hog: str, stop: Any, answers: Any) -> None:
    """The hog's readers (run in a process of their own): HOG_CLIENTS threads, each reading
    one filter after another on a keep-alive connection, until `stop`; the answers' counts
    go to `answers`, after one message when the first is in."""
    address = urlsplit(base_url)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    first = threading.Event()

    def reader(index: int) -> None:
        filters = itertools.cycle(HOG_FILTERS[index % len(HOG_FILTERS) :] + HOG_FILTERS)
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
        while not stop.is_set():
            try:
                conn.request(
                    "GET",
                    f"/dashboard/jobs?limit={HOG_PAGE}&{next(filters)}",
                    headers={"X-User-ID": hog},
                )
                response = conn.getresponse()
                response.read()
                kind = str(response.status)
            except (OSError, http.client.HTTPException):
                conn.close()
                kind = "failed"
            with lock:
                counts[kind] += 1
            first.set()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(HOG_CLIENTS)]
    for thread in threads:
        thread.start()
    first.wait(timeout=30)
    answers.put("started")
    for thread in threads:
        thread.join()
    answers.put(counts)


def _judge(run: Run, windows: Sequence[Window], hog: Counter[str]) -> None:
    """The other user's rate and p99 beside the hog against alone; the hog's answers."""
    alone = [w for w in windows if not w.beside_hog]
    loaded = [w for w in windows if w.beside_hog]
    rate_alone = sum(w.rate * w.seconds for w in alone) / sum(w.seconds for w in alone)
    rate_loaded = sum(w.rate * w.seconds for w in loaded) / sum(w.seconds for w in loaded)
    p99_alone = _p99([x for w in alone for x in w.latencies()])
    p99_loaded = _p99([x for w in loaded for x in w.latencies()])
    p50_alone = statistics.median([x for w in alone for x in w.latencies()])
    p50_loaded = statistics.median([x for w in loaded for x in w.latencies()])
    other = Counter(a.kind for w in windows for a in w.attempts)
    run.note(
        f"other user alone: {rate_alone:.0f} jobs/s, p50 {p50_alone * 1000:.1f} ms, "
        f"p99 {p99_alone * 1000:.1f} ms"
    )
    run.note(
        f"beside the hog: {rate_loaded:.0f} jobs/s ({rate_loaded / rate_alone:.2f}x), "
        f"p50 {p50_loaded * 1000:.1f} ms, p99 {p99_loaded * 1000:.1f} ms "
        f"({p99_loaded / p99_alone:.2f}x)"
    )
    run.note(f"other user's answers: {dict(other)}; hog's reads: {dict(hog)}")
    run.check("503" not in other, f"the other user got {other['503']} answers 503")
    run.check(
        rate_loaded >= MIN_RATE_RATIO * rate_alone,
        f"beside the hog the other user's rate fell to {rate_loaded / rate_alone:.2f}x "
        f"(at least {MIN_RATE_RATIO}x)",
    )
    run.check(
        p99_loaded <= MAX_P99_RATIO * p99_alone,
        f"beside the hog the other user's p99 rose to {p99_loaded / p99_alone:.2f}x "
        f"(at most {MAX_P99_RATIO}x)",
    )
    run.check(hog["200"] > 0, f"the hog's reads were never served: {dict(hog)}")
    run.check(set(hog) <= {"200", "429", "503"}, f"the hog's reads had other answers: {dict(hog)}")
