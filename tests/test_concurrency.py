"""Admission under real concurrency: several gunicorn workers, many HTTP clients at once.

Every test drives the service exactly as production runs it (the Procfile's gunicorn, 4 sync
workers, each with its own pool) from a thread pool in which every thread has its own HTTP
session, then checks the invariants against the database through a separate connection:
no bucket gives out more than it holds, every answer matches what was stored, atomic batches
are all-or-nothing, and bucket locks taken by overlapping requests never deadlock.
Refill is 0 wherever a count is asserted exactly, so the outcome does not depend on timing.

The invariants that matter most run twice, without tenant shares and with `tenant_share` 0.5
(each tenant its own bucket of half of each dependency's): then no tenant takes more than its
share either, and each tenant bucket shows exactly what its tenant's accepted jobs took.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.support.answers import over_share, rate_limited
from tests.support.burst import (
    accepted_cost,
    assert_no_server_error,
    assert_tenant_shares_kept,
    batch,
    burst,
    conflict_retries,
    database_now,
    deadlocks_detected,
    single,
    statuses,
    stored_jobs,
    tenant_left_at_end,
)
from tests.support.factories import bucket_tokens, user_with_config

pytestmark = pytest.mark.concurrency

WORKERS = 4
# No tenant shares (1), and each tenant at half of every bucket.
TENANT_SHARES = pytest.mark.parametrize("tenant_share", [1, 0.5], ids=["no-shares", "share-0.5"])


def assert_rejected_for_tokens(
    reason: str,
    needs: Mapping[str, int],
    left_at_end: Mapping[str, float],
    *,
    tenant: str = "",
    tenant_left: Mapping[str, float] | None = None,
) -> None:
    """The reason names one of the job's buckets, and that bucket really was short.

    Tokens only go down when refill is 0, so the bucket the reason names still holds less
    than the job's cost at the end of the burst. With tenant shares (`tenant_left`: what the
    job's tenant has left of each dependency) the bucket may be the tenant's.
    """
    short = [name for name in needs if reason == rate_limited(name)]
    over = [name for name in needs if reason == over_share(tenant, name)]
    assert len(short) + len(over) == 1, (reason, needs)
    if short:
        assert needs[short[0]] > left_at_end[short[0]], (reason, needs, left_at_end)
    else:
        assert tenant_left is not None, (reason, needs)
        assert needs[over[0]] > tenant_left[over[0]], (reason, needs, tenant_left)


# A wait for a connection of 10 s rather than 1.5. Each burst sends one user's atomic batches
# at once, and they take their turns on the bucket's lock one after the other: on a loaded
# two-core CI machine the last of them waited over 1.5 s for the user's share of a worker's
# connections and was answered 429 (seen directly and through PgBouncer). What these tests
# hold is that every batch is all or nothing and every bucket exact, not how long a share is
# waited for (the fault scenario fair-share-reads tests that).
SERVER_ENV = {"JANUS_POOL_TIMEOUT_MS": "10000"}


@pytest.fixture
def server(start_gunicorn: Callable[..., Any]) -> Any:
    """The real service, as the Procfile starts it, with WORKERS workers (and SERVER_ENV)."""
    return start_gunicorn(workers=WORKERS, env=SERVER_ENV)


def make_user(
    db: psycopg.Connection,
    capacities: dict[str, int],
    *,
    refill: int = 0,
    reserve: float = 0,
    tenant_share: float = 1,
    min_priority: int = 1,
) -> UUID:
    """A user with one bucket per entry of `capacities`, all with this refill and reserve."""
    buckets = {name: {"capacity": c, "refill_per_second": refill} for name, c in capacities.items()}
    return user_with_config(
        db,
        buckets,
        priority_reserve=reserve,
        tenant_share=tenant_share,
        min_priority=min_priority,
    )


def test_one_bucket_admits_exactly_its_capacity(db: psycopg.Connection, server: Any) -> None:
    """4N simultaneous single jobs of cost 1 on a bucket of N: exactly N admitted."""
    capacity = 50
    user_id = make_user(db, {"openai": capacity})

    calls = [single(n, {"openai": 1}) for n in range(4 * capacity)]

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    assert statuses(answers) == {202: capacity, 429: 3 * capacity}
    accepted = {a.body["job_id"] for a in answers if a.status == 202}
    rejected = {a.body["job_id"] for a in answers if a.status == 429}
    assert {(a.body["status"], a.body["reason"]) for a in answers if a.status == 202} == {
        ("Accepted", "")
    }
    assert {(a.body["status"], a.body["reason"]) for a in answers if a.status == 429} == {
        ("Rejected", rate_limited("openai"))
    }
    # Refill 0: waiting cannot help, so no rejection may suggest it.
    assert [a.headers.get("Retry-After") for a in answers if a.status == 429] == [None] * (
        3 * capacity
    )
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == accepted
    assert {job_id for job_id, job in stored.items() if job[0] == "Rejected"} == rejected
    assert len(stored) == 4 * capacity
    assert bucket_tokens(db, user_id, "openai") == 0


def test_refilling_bucket_never_admits_more_than_capacity_plus_refill(
    db: psycopg.Connection, server: Any
) -> None:
    """With refill, a burst takes at most capacity + refill x elapsed, and at least capacity."""
    capacity, refill = 20, 20
    user_id = make_user(db, {"openai": capacity}, refill=refill)
    calls = [single(n, {"openai": 1}) for n in range(300)]

    # The bucket is full before the burst (it was activated full and cannot overfill), so
    # everything it can give beyond its capacity comes from refill during the burst.
    started = database_now(db)
    answers = burst(server.url, user_id, calls)
    elapsed = database_now(db) - started

    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {202, 429}, counts
    admitted = counts[202]
    assert capacity <= admitted <= capacity + refill * elapsed, (admitted, elapsed)
    for answer in answers:
        if answer.status == 429:
            assert answer.body["reason"] == rate_limited("openai")
            assert int(answer.headers.get("Retry-After", 0)) >= 1, answer
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == {
        a.body["job_id"] for a in answers if a.status == 202
    }
    assert accepted_cost(db, user_id, "openai") == admitted


def test_overlapping_multi_dependency_jobs_neither_deadlock_nor_overspend(
    db: psycopg.Connection, server: Any
) -> None:
    """Jobs on {a, b}, {b, c}, {c, a}, ... named in every order: all decided, buckets exact."""
    capacities = {"a": 60, "b": 45, "c": 70, "d": 30}
    user_id = make_user(db, capacities)
    # Each job names its dependencies in a different order in the JSON body; the service must
    # still lock the buckets in one order. Demand is several times every capacity.
    shapes = [
        ("a", "b"),
        ("b", "c", "d"),
        ("c", "a"),
        ("d", "b", "a"),
        ("c", "b"),
        ("a", "d", "c"),
        ("d", "c", "b", "a"),
        ("b", "a"),
        ("a", "b", "c", "d"),
        ("d", "a"),
    ]
    calls = []
    for n in range(400):
        shape = shapes[n % len(shapes)]
        dependencies = {name: 1 + (n + i) % 3 for i, name in enumerate(shape)}
        calls.append(single(n, dependencies, label=dependencies))

    answers = burst(server.url, user_id, calls)

    assert deadlocks_detected(db) == 0
    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) == {202, 429}, counts
    stored = stored_jobs(db, user_id)
    assert len(stored) == len(calls)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == {
        a.body["job_id"] for a in answers if a.status == 202
    }
    left_at_end = {name: bucket_tokens(db, user_id, name) for name in capacities}
    for name, capacity in capacities.items():
        spent = accepted_cost(db, user_id, name)
        assert spent == capacity - left_at_end[name], (name, spent, left_at_end)
        assert 0 <= left_at_end[name] < capacity
    for answer in answers:
        if answer.status == 429:
            assert_rejected_for_tokens(answer.body["reason"], answer.call.label, left_at_end)


@TENANT_SHARES
def test_concurrent_atomic_batches_are_all_or_nothing(
    db: psycopg.Connection, server: Any, tenant_share: float
) -> None:
    """20 atomic batches of 5 jobs at once on a bucket of 30: each batch whole or not at all.

    The jobs' 2 tenants take turns; under a share of 0.5 each may take 15 of the 30, so a
    batch is also turned away when it asks one tenant for more than that tenant has left.
    """
    capacity = 30
    user_id = make_user(db, {"pool": capacity}, tenant_share=tenant_share)
    # Batch n costs 5 to 10: job k costs 2 when bit k of n is set.
    costs = {n: [1 + (n >> k & 1) for k in range(5)] for n in range(20)}
    calls = [
        batch(n, [{"pool": cost} for cost in costs[n]], atomic=True, label=n, tenants=2)
        for n in range(20)
    ]
    own_reasons = {rate_limited("pool")}
    if tenant_share < 1:
        own_reasons |= {over_share(f"tenant-{t}", "pool") for t in range(2)}

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {202, 207, 503}, counts
    whole = {a.call.label for a in answers if a.status == 202}
    for answer in answers:
        if answer.status == 202:
            assert [(r["status"], r["reason"]) for r in answer.body] == [("Accepted", "")] * 5
        elif answer.status == 207:
            reasons = [r["reason"] for r in answer.body]
            assert {r["status"] for r in answer.body} == {"Rejected"}
            assert set(reasons) <= own_reasons | {"batch rejected atomically"}, reasons
            assert own_reasons & set(reasons), reasons

    debit = capacity - bucket_tokens(db, user_id, "pool")
    assert debit == sum(sum(costs[n]) for n in whole)
    assert 0 < debit <= capacity
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items()} == {
        r["job_id"] for a in answers if a.status == 202 for r in a.body
    }
    assert {job[0] for job in stored.values()} <= {"Accepted"}
    assert Counter(job[3] for job in stored.values()) == {f"batch-{n}": 5 for n in whole}
    assert_tenant_shares_kept(db, user_id, {"pool": capacity}, tenant_share)
    # A batch was only turned away when it did not fit in what the bucket kept to the end,
    # or one of its tenants' costs did not fit in what that tenant's bucket kept.
    tenant_left = tenant_left_at_end(db, user_id, {"pool": capacity}, tenant_share)
    for answer in answers:
        if answer.status == 207:
            jobs = answer.call.body["jobs"]
            by_tenant = Counter[str]()
            for one in jobs:
                by_tenant[one["tenant_id"]] += one["dependencies"]["pool"]
            fits_tenants = all(
                cost <= (tenant_left(tenant) or {"pool": capacity})["pool"]
                for tenant, cost in by_tenant.items()
            )
            fits_pool = sum(costs[answer.call.label]) <= capacity - debit
            assert not (fits_pool and fits_tenants), answer.call.label
    # A 503 would be allowed (with Retry-After, taking nothing: checked above), but cannot
    # happen here: atomic batches on one bucket queue on its advisory lock, each taking its
    # snapshot after the one before it committed, so none fails to serialise.
    for answer in answers:
        if answer.status == 503:
            assert int(answer.headers.get("Retry-After", 0)) >= 1, answer
    assert counts[503] == 0, counts


def test_concurrent_atomic_batches_on_one_hot_bucket_queue_instead_of_conflicting(
    db: psycopg.Connection, server: Any
) -> None:
    """60 atomic batches of 10 at once on a bucket that fits them all: every one accepted,
    the bucket debited exactly, and not one transaction retried.

    Each batch waits for the one before it on the bucket's advisory lock and only then takes
    its SERIALIZABLE snapshot, so no batch sees another's debit commit after its snapshot.
    """
    capacity, batches, size = 10_000, 60, 10
    user_id = make_user(db, {"hot": capacity})
    calls = [batch(n, [{"hot": 1 + n % 3}] * size, atomic=True, label=n) for n in range(batches)]
    retried_before = conflict_retries(server.url)

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    assert statuses(answers) == {202: batches}
    assert conflict_retries(server.url) == retried_before
    debit = sum(size * (1 + n % 3) for n in range(batches))
    assert bucket_tokens(db, user_id, "hot") == capacity - debit
    assert accepted_cost(db, user_id, "hot") == debit
    assert len(stored_jobs(db, user_id)) == batches * size


def test_partial_batches_and_single_jobs_mixed_lose_nothing(
    db: psycopg.Connection, server: Any
) -> None:
    """Partial batches and single jobs at once on shared buckets: every token accounted for."""
    capacities = {"x": 120, "y": 80}
    user_id = make_user(db, capacities)
    job_shapes = [
        {"x": 1},
        {"y": 2},
        {"y": 1, "x": 2},
        {"x": 3, "y": 1},
        {"x": 1, "y": 1},
    ]
    calls = []
    for n in range(160):
        if n % 4 == 0:
            jobs = [job_shapes[(n + k) % len(job_shapes)] for k in range(5)]
            calls.append(batch(n, jobs, atomic=False, label=jobs))
        else:
            shape = job_shapes[n % len(job_shapes)]
            calls.append(single(n, shape, label=[shape]))

    answers = burst(server.url, user_id, calls)

    assert deadlocks_detected(db) == 0
    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {200, 202, 429}, counts
    assert counts[200] == 40
    decisions: list[tuple[dict[str, Any], dict[str, int]]] = []
    for answer in answers:
        if answer.status == 200:
            results = answer.body["results"]
            assert len(results) == answer.body["total"] == 5
            accepted = sum(r["status"] == "Accepted" for r in results)
            summary = (answer.body["accepted"], answer.body["rejected"])
            assert summary == (accepted, 5 - accepted)
            decisions.extend(zip(results, answer.call.label, strict=True))
        else:
            assert answer.body["status"] == ("Accepted" if answer.status == 202 else "Rejected")
            decisions.append((answer.body, answer.call.label[0]))
    assert len(decisions) == 40 * 5 + 120

    stored = stored_jobs(db, user_id)
    assert len(stored) == len(decisions)
    for decision, needs in decisions:
        status, reason, dependencies, _ = stored[decision["job_id"]]
        assert (status, reason, dependencies) == (decision["status"], decision["reason"], needs)
    left_at_end = {name: bucket_tokens(db, user_id, name) for name in capacities}
    for name, capacity in capacities.items():
        spent = accepted_cost(db, user_id, name)
        assert spent == capacity - left_at_end[name], (name, spent, left_at_end)
        assert spent == sum(
            needs.get(name, 0) for decision, needs in decisions if decision["status"] == "Accepted"
        )
    for decision, needs in decisions:
        if decision["status"] == "Rejected":
            assert_rejected_for_tokens(decision["reason"], needs, left_at_end)


@TENANT_SHARES
def test_atomic_partial_and_single_requests_mixed_keep_every_bucket_exact(
    db: psycopg.Connection, server: Any, tenant_share: float
) -> None:
    """All three kinds of request at once on shared buckets: decisions, rows and tokens agree.

    Here READ COMMITTED writers keep debiting the buckets an atomic batch waits on, so its
    SERIALIZABLE transaction does conflict and is retried; a 503 after the retries is allowed
    (with Retry-After, taking nothing) but must stay rare. The jobs have 2 tenants, so under a
    share of 0.5 their two shares add up to each bucket and bind whenever one asks for more.
    """
    capacities = {"p": 150, "q": 100}
    user_id = make_user(db, capacities, tenant_share=tenant_share)
    job_shapes = [{"p": 1, "q": 1}, {"q": 1}, {"p": 2}, {"q": 2, "p": 1}]
    calls = []
    for n in range(180):
        jobs = [job_shapes[(n + k) % len(job_shapes)] for k in range(3)]
        if n % 3 == 0:
            calls.append(batch(n, jobs, atomic=True, label=("atomic", jobs), tenants=2))
        elif n % 3 == 1:
            calls.append(batch(n, jobs, atomic=False, label=("partial", jobs), tenants=2))
        else:
            calls.append(single(n, jobs[0], label=("single", jobs[:1]), tenants=2))

    answers = burst(server.url, user_id, calls)

    assert deadlocks_detected(db) == 0
    assert_no_server_error(answers, server)
    counts = statuses(answers)
    assert set(counts) <= {200, 202, 207, 429, 503}, counts
    accepted: dict[str, dict[str, int]] = {}
    rejected: dict[str, dict[str, int]] = {}
    reasons: dict[str, str] = {}
    tenants: dict[str, str] = {}
    for answer in answers:
        kind, jobs = answer.call.label
        if answer.status == 503:
            assert kind == "atomic", answer
            assert int(answer.headers.get("Retry-After", 0)) >= 1, answer
            continue
        if kind == "single":
            results = [answer.body]
        elif kind == "partial":
            assert answer.status == 200, answer
            results = answer.body["results"]
        else:
            assert answer.status in (202, 207), answer
            results = answer.body
            expected = "Accepted" if answer.status == 202 else "Rejected"
            assert {r["status"] for r in results} == {expected}, answer
        sent = [answer.call.body] if kind == "single" else answer.call.body["jobs"]
        for result, needs, one in zip(results, jobs, sent, strict=True):
            if result["status"] == "Accepted":
                accepted[result["job_id"]] = needs
            elif kind != "atomic":
                rejected[result["job_id"]] = needs
                reasons[result["job_id"]] = result["reason"]
                tenants[result["job_id"]] = one["tenant_id"]

    stored = stored_jobs(db, user_id)
    assert {job_id: job[2] for job_id, job in stored.items() if job[0] == "Accepted"} == accepted
    assert {job_id: job[2] for job_id, job in stored.items() if job[0] == "Rejected"} == rejected
    turned_away = {
        a.call.body["batch_name"]
        for a in answers
        if a.call.label[0] == "atomic" and a.status != 202
    }
    assert turned_away.isdisjoint(job[3] for job in stored.values())
    left_at_end = {name: bucket_tokens(db, user_id, name) for name in capacities}
    for name, capacity in capacities.items():
        spent = sum(needs.get(name, 0) for needs in accepted.values())
        assert accepted_cost(db, user_id, name) == spent
        assert left_at_end[name] == capacity - spent, (name, spent, left_at_end)
    assert_tenant_shares_kept(db, user_id, capacities, tenant_share)
    tenant_left = tenant_left_at_end(db, user_id, capacities, tenant_share)
    for job_id, needs in rejected.items():
        tenant = tenants[job_id]
        assert_rejected_for_tokens(
            reasons[job_id], needs, left_at_end, tenant=tenant, tenant_left=tenant_left(tenant)
        )
    # 60 atomic batches; a handful of 503s at most (0 or 1 in practice).
    assert counts[503] <= 6, counts


@TENANT_SHARES
def test_priority_reserve_holds_under_concurrency(
    db: psycopg.Connection, server: Any, tenant_share: float
) -> None:
    """Priority 1 stops at the reserve, priority 10 empties the bucket, even all at once.

    Two tenants send both priorities; under a share of 0.5 the reserve holds within each
    tenant's bucket of 20 too.
    """
    capacity = 40
    user_id = make_user(db, {"openai": capacity}, reserve=0.5, tenant_share=tenant_share)
    priorities = [10 if n % 2 else 1 for n in range(200)]
    calls = [
        single(n, {"openai": 1}, label=p, priority=p, tenant=f"tenant-{n // 2 % 2}")
        for n, p in enumerate(priorities)
    ]

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    counts = statuses(answers)
    # Also under shares: the bucket could only keep a token if every priority 10 job turned
    # away met an empty tenant bucket (20 taken), which at most one of the 2 tenants can be,
    # and the other sends 50 of them.
    assert counts == {202: capacity, 429: 200 - capacity}, counts
    admitted = Counter(a.call.label for a in answers if a.status == 202)
    # Priority 1 must leave C x 0.5 x 9 / 9 = 20 tokens behind after taking one.
    assert admitted[1] <= capacity // 2, admitted
    assert bucket_tokens(db, user_id, "openai") == 0
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == {
        a.body["job_id"] for a in answers if a.status == 202
    }
    assert_tenant_shares_kept(db, user_id, {"openai": capacity}, tenant_share)
    tenants = {a.call.body["tenant_id"] for a in answers}
    allowed = {rate_limited("openai")}
    if tenant_share < 1:
        allowed |= {over_share(tenant, "openai") for tenant in tenants}
        # Within its bucket of 20, a tenant's priority 1 jobs must leave 20 x 0.5 = 10.
        low_by_tenant = Counter(
            a.call.body["tenant_id"] for a in answers if a.status == 202 and a.call.label == 1
        )
        assert max(low_by_tenant.values(), default=0) <= 10, low_by_tenant
    assert {a.body["reason"] for a in answers if a.status == 429} <= allowed


@TENANT_SHARES
def test_min_priority_holds_under_concurrency(
    db: psycopg.Connection, server: Any, tenant_share: float
) -> None:
    """min_priority 5: every job below it is refused for that, and the rest fill the bucket.

    Two tenants, each with 60 jobs at 5 or above; under a share of 0.5 each may take 20.
    """
    capacity = 40
    user_id = make_user(db, {"openai": capacity}, min_priority=5, tenant_share=tenant_share)
    calls = [single(n, {"openai": 1}, tenants=2) for n in range(200)]

    answers = burst(server.url, user_id, calls)

    assert_no_server_error(answers, server)
    low = [a for a in answers if a.call.body["priority"] < 5]
    assert len(low) == 80
    assert {(a.status, a.body["reason"]) for a in low} == {(429, "priority too low")}
    assert [a.headers.get("Retry-After") for a in low] == [None] * len(low)
    # Under shares too: the bucket could only keep a token if every job at 5 or above turned
    # away met an empty tenant bucket (20 taken), which at most one of the 2 tenants can be,
    # and the other sends 60 such jobs.
    assert statuses(answers)[202] == capacity
    assert bucket_tokens(db, user_id, "openai") == 0
    stored = stored_jobs(db, user_id)
    assert {job_id for job_id, job in stored.items() if job[0] == "Accepted"} == {
        a.body["job_id"] for a in answers if a.status == 202
    }
    assert {job_id for job_id, job in stored.items() if job[1] == "priority too low"} == {
        a.body["job_id"] for a in low
    }
    taken = assert_tenant_shares_kept(db, user_id, {"openai": capacity}, tenant_share)
    assert sum(taken.values()) == capacity
