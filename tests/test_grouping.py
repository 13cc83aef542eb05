"""Group admission: a user's requests decided together answer exactly as one by one.

Each test decides the same requests twice, for two users of the same config: grouped (by
admit_group, or by the GroupingAdmitter with its one connection held busy) and one by one in
the same order (admit_jobs, as a request alone is decided), then compares every answer:
decisions, reasons and codes, Retry-After, replays (by which earlier job they repeat), budgets,
and the refusals of a reused key, a pause and an unknown user. Buckets refill a token every
1,000 seconds, so a Retry-After is told and no answer depends on the milliseconds between
the two runs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from janus.admission import (
    Admission,
    AdmissionRequest,
    DatabaseUnavailable,
    IdempotencyKey,
    IdempotencyKeyReused,
    JobRequest,
    Mode,
    NoDecision,
    ServicePaused,
    Source,
    UnknownUser,
)
from janus.db.accounts import set_paused
from janus.db.jobs import AdmissionStore, admit_group, admit_jobs
from janus.db.pool import Pool, make_pool
from janus.grouping import GroupingAdmitter
from janus.settings import Settings
from tests.support.factories import limits, user_with_config

SLOW = 0.001  # tokens a second: a token every 1,000 s
BUCKETS = {"openai": limits(10, SLOW), "search": limits(5)}
CONFIG: dict[str, Any] = {"min_priority": 2, "priority_reserve": 0.0}


def job(priority: int, tenant: str = "t1", **dependencies: int) -> JobRequest:
    return JobRequest(tenant, priority, dependencies, f'{{"p": {priority}}}')


def ask(
    user_id: UUID, *jobs: JobRequest, key: str | None = None, source: Source = Source.SYSTEM
) -> AdmissionRequest:
    """A single job (one job) or a partial batch, with an idempotency key if given."""
    mode = Mode.SINGLE if len(jobs) == 1 else Mode.PARTIAL
    idempotency_key = None
    if key is not None:
        fingerprint = hashlib.sha256(repr((mode, jobs)).encode()).digest()
        idempotency_key = IdempotencyKey(key, fingerprint)
    return AdmissionRequest(user_id, source, f"batch-{len(jobs)}", jobs, mode, idempotency_key)


# What each user is asked before the pause; the comment is what one by one answers.
BEFORE_PAUSE: list[tuple[tuple[JobRequest, ...], str | None]] = [
    ((job(5, openai=4),), "k1"),  # accepted: openai 6 left
    # In priority order: accepted (openai 4, search 4), unknown dependency, accepted
    # (openai 1), priority too low.
    ((job(3, openai=3), job(9, "t2", openai=2, search=1), job(1, openai=1), job(5, nope=1)), "k2"),
    ((job(5, openai=4),), "k1"),  # a replay of the first
    ((job(6, openai=4),), "k1"),  # the key reused for another request: 422
    ((job(10, "t2", openai=5),), None),  # rate limited, Retry-After 4000
    ((job(5, openai=2),), "k3"),  # rate limited, not remembered...
    ((job(5, openai=2),), "k3"),  # ...so decided anew, and rate limited again
    ((job(5, openai=1), job(4, search=4)), "k4"),  # both accepted: nothing left
]
AFTER_PAUSE: list[tuple[tuple[JobRequest, ...], str | None]] = [
    ((job(5, openai=4),), "k1"),  # still a replay: a remembered key is answered first
    ((job(5, openai=1),), None),  # paused
    ((job(5, openai=1), job(6, search=1)), "k5"),  # paused
]


def requests_of(
    user_id: UUID, asked: list[tuple[tuple[JobRequest, ...], str | None]]
) -> list[AdmissionRequest]:
    return [ask(user_id, *jobs, key=key) for jobs, key in asked]


Answer = Admission | NoDecision


def one_by_one(pool: Pool, requests: Sequence[AdmissionRequest]) -> list[Answer]:
    """Each request decided alone, in order, as the job resources decide them."""
    answers: list[Answer] = []
    for request in requests:
        try:
            answers.append(admit_jobs(pool, request, retries=10))
        except NoDecision as refused:
            answers.append(refused)
    return answers


def comparable(answers: Sequence[Answer]) -> list[Any]:
    """The answers with each job id replaced by where it was first decided (request, job), so
    that two users' runs compare, and a replay shows which answer it repeats."""
    first_seen: dict[UUID, tuple[int, int]] = {}
    shown: list[Any] = []
    for number, answer in enumerate(answers):
        if isinstance(answer, NoDecision):
            shown.append(type(answer).__name__)
            continue
        decisions = []
        for position, decision in enumerate(answer.decisions):
            place = first_seen.setdefault(decision.job_id, (number, position))
            assert decision.replayed == (place != (number, position)), decision
            rest = (value for name, value in vars(decision).items() if name != "job_id")
            decisions.append((place, *rest))
        shown.append((decisions, answer.budgets))
    return shown


@pytest.fixture
def pool(database_url: str) -> Iterator[Pool]:
    """A pool of the service's settings on this test's database."""
    opened = make_pool(Settings(database_url=database_url, lock_timeout_ms=10_000))
    opened.open(wait=True)
    try:
        yield opened
    finally:
        opened.close()


def test_a_group_answers_each_request_as_one_by_one_in_the_same_order(
    db: psycopg.Connection, pool: Pool
) -> None:
    grouped_user = user_with_config(db, BUCKETS, **CONFIG)
    alone_user = user_with_config(db, BUCKETS, **CONFIG)
    unknown_user = uuid4()

    grouped = admit_group(pool, requests_of(grouped_user, BEFORE_PAUSE), retries=10)
    set_paused(db, grouped_user, True)
    grouped += admit_group(pool, requests_of(grouped_user, AFTER_PAUSE), retries=10)
    beside = admit_group(pool, requests_of(unknown_user, AFTER_PAUSE), retries=10)

    alone = one_by_one(pool, requests_of(alone_user, BEFORE_PAUSE))
    set_paused(db, alone_user, True)
    alone += one_by_one(pool, requests_of(alone_user, AFTER_PAUSE))

    assert comparable(grouped) == comparable(alone)
    assert [type(answer) for answer in beside] == [UnknownUser] * len(AFTER_PAUSE)
    # The cases the requests were written for did happen.
    kinds = [answer if isinstance(answer, NoDecision) else answer.decisions for answer in alone]
    assert [decision.replayed for decision in kinds[2]] == [True]  # type: ignore[union-attr]
    assert isinstance(kinds[3], IdempotencyKeyReused)
    assert [decision.retry_after for decision in kinds[4]] == [4000]  # type: ignore[union-attr]
    assert [decision.replayed for decision in kinds[6]] == [False]  # type: ignore[union-attr]
    assert [decision.replayed for decision in kinds[8]] == [True]  # type: ignore[union-attr]
    assert [type(answer) for answer in alone[9:]] == [ServicePaused, ServicePaused]
    # Everything stored is what was answered: the grouped user's jobs are as many as its
    # decisions that were not replays.
    jobs = db.execute(
        "SELECT user_id, count(*) FROM jobs WHERE user_id = ANY(%s) GROUP BY 1",
        [[grouped_user, alone_user]],
    ).fetchall()
    assert dict(jobs) == {grouped_user: 10, alone_user: 10}


class Recorder:
    """The GroupingAdmitter's `observe`: the size of each group it decided."""

    def __init__(self) -> None:
        self.groups: list[tuple[int, int]] = []

    def __call__(self, requests: int, jobs: int) -> None:
        self.groups.append((requests, jobs))


def until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    """Wait for `condition`, or fail."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def waiting_is(admitter: GroupingAdmitter, requests: int) -> bool:
    return admitter.waiting() == requests


def lock_waits(db: psycopg.Connection) -> int:
    """Backends waiting for a lock (pg_locks is read live, even inside a transaction)."""
    row = db.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    assert row is not None
    return int(row[0])


def queue_behind_a_held_bucket(
    db: psycopg.Connection,
    admitter: GroupingAdmitter,
    blocker: AdmissionRequest,
    requests: Sequence[AdmissionRequest],
    *,
    hold_s: float = 0,
) -> list[Answer]:
    """Decide `blocker` while its bucket's row is locked, so it holds the one connection,
    then each of `requests` in this order (each waits in a group before the next is sent),
    then release the row `hold_s` later: every answer, the blocker's first."""
    answers: dict[int, Answer] = {}

    def decide(number: int, request: AdmissionRequest) -> None:
        try:
            answers[number] = admitter.admit(request)
        except NoDecision as refused:
            answers[number] = refused

    threads = []
    with db.transaction():
        db.execute("SELECT 1 FROM token_buckets WHERE user_id = %s FOR UPDATE", [blocker.user_id])
        for number, request in enumerate([blocker, *requests]):
            thread = threading.Thread(target=decide, args=(number, request))
            thread.start()
            threads.append(thread)
            # The blocker holds the connection once it waits for the row; each other request
            # is in its group once the grouper counts it.
            if number == 0:
                until(lambda: lock_waits(db) == 1)
            else:
                until(partial(waiting_is, admitter, number))
        time.sleep(hold_s)
    for thread in threads:
        thread.join(timeout=10)
    return [answers[number] for number in range(len(threads))]


def test_the_grouper_decides_queued_requests_together_as_one_by_one(
    db: psycopg.Connection, pool: Pool
) -> None:
    """One connection: while the first request holds it, the others queue in their user's
    group (an unknown user's in a group of its own, between them) and go in one statement."""
    grouped_user = user_with_config(db, BUCKETS, **CONFIG)
    alone_user = user_with_config(db, BUCKETS, **CONFIG)
    recorder = Recorder()
    admitter = GroupingAdmitter(
        AdmissionStore(pool, retries=10),
        connections=1,
        max_jobs=1000,
        max_wait_s=10,
        observe=recorder,
    )
    mine = requests_of(grouped_user, BEFORE_PAUSE)
    strangers = requests_of(uuid4(), AFTER_PAUSE)
    interleaved = [mine[1], strangers[0], *mine[2:5], strangers[1], *mine[5:], strangers[2]]

    answers = queue_behind_a_held_bucket(db, admitter, mine[0], interleaved)

    grouped = [answers[0], answers[1], *answers[3:6], *answers[7:10]]
    assert comparable(grouped) == comparable(
        one_by_one(pool, requests_of(alone_user, BEFORE_PAUSE))
    )
    assert [type(answers[n]) for n in (2, 6, 10)] == [UnknownUser] * 3
    jobs = sum(len(request.jobs) for request in mine[1:])
    assert recorder.groups == [(1, 1), (len(mine) - 1, jobs), (3, 4)]
    assert admitter.waiting() == 0


def test_a_group_that_waits_too_long_is_503_and_the_grouper_goes_on(
    db: psycopg.Connection, pool: Pool
) -> None:
    user_id = user_with_config(db, BUCKETS, **CONFIG)
    admitter = GroupingAdmitter(
        AdmissionStore(pool, retries=10),
        connections=1,
        max_jobs=1000,
        max_wait_s=0.2,
        observe=Recorder(),
    )
    blocker, late = ask(user_id, job(5, openai=1)), ask(user_id, job(5, openai=1))

    answers = queue_behind_a_held_bucket(db, admitter, blocker, [late], hold_s=0.5)

    assert isinstance(answers[0], Admission) and answers[0].decisions[0].accepted
    assert isinstance(answers[1], DatabaseUnavailable)
    assert answers[1].cause == "pool_timeout"
    # Its connection came back to the grouper: the next request goes at once.
    assert admitter.admit(ask(user_id, job(5, openai=1))).decisions[0].accepted


def test_an_oversized_request_is_a_group_of_its_own(db: psycopg.Connection, pool: Pool) -> None:
    user_id = user_with_config(db, BUCKETS, **CONFIG)
    recorder = Recorder()
    admitter = GroupingAdmitter(
        AdmissionStore(pool, retries=10),
        connections=1,
        max_jobs=3,
        max_wait_s=10,
        observe=recorder,
    )
    small = [ask(user_id, job(5, search=1)) for _ in range(2)]
    large = ask(user_id, *[job(5, search=1)] * 4)

    answers = queue_behind_a_held_bucket(db, admitter, small[0], [small[1], large, small[0]])

    assert all(isinstance(answer, Admission) for answer in answers)
    assert recorder.groups == [(1, 1), (1, 1), (1, 4), (1, 1)]


def test_a_user_has_one_decision_under_way_and_others_do_not_wait_for_it(
    db: psycopg.Connection, pool: Pool
) -> None:
    """Two connections: while a user's decision waits on its bucket, its next request waits
    for it in a group, though a connection is free; another user's request takes that one."""
    busy_user = user_with_config(db, BUCKETS, **CONFIG)
    other_user = user_with_config(db, BUCKETS, **CONFIG)
    recorder = Recorder()
    admitter = GroupingAdmitter(
        AdmissionStore(pool, retries=10),
        connections=2,
        max_jobs=1000,
        max_wait_s=10,
        observe=recorder,
    )
    others: list[Answer] = []

    def meanwhile() -> None:
        others.append(admitter.admit(ask(other_user, job(5, openai=1))))

    blocker, next_one = ask(busy_user, job(5, openai=1)), ask(busy_user, job(5, search=1))
    with db.transaction():
        db.execute("SELECT 1 FROM token_buckets WHERE user_id = %s FOR UPDATE", [busy_user])
        threads = [threading.Thread(target=admitter.admit, args=(blocker,))]
        threads[0].start()
        until(lambda: lock_waits(db) == 1)
        threads.append(threading.Thread(target=admitter.admit, args=(next_one,)))
        threads[1].start()
        until(lambda: admitter.waiting() == 1)
        meanwhile()
        assert admitter.waiting() == 1
    for thread in threads:
        thread.join(timeout=10)

    assert isinstance(others[0], Admission) and others[0].decisions[0].accepted
    assert recorder.groups == [(1, 1), (1, 1), (1, 1)]
    assert admitter.waiting() == 0
