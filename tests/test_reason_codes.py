"""Reason codes: each rejection's machine code, from admit_jobs() to the stored job and back.

Through the real functions and the real store (janus.db.jobs.AdmissionStore, the statements
the web process sends; janus.db.history.HistoryStore, what the dashboard and the CLI read):
every reason of the contract gets its code in a single job, a partial batch, an atomic batch,
a quote, shadow mode and an idempotent replay; the codes are the jobs table's closed set; and
migration 0015 classifies the rejections stored before it, jobs and remembered decisions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import alembic.command
import psycopg
import pytest

from janus.admission import (
    Admission,
    AdmissionRequest,
    Decision,
    IdempotencyKey,
    JobRequest,
    Mode,
    ReasonCode,
    Source,
)
from janus.db.history import HistoryStore
from janus.db.jobs import AdmissionStore
from janus.db.pool import make_pool
from janus.history import JobFilter
from janus.reasons import STORED_CODES, reason_code_of
from janus.settings import Settings
from tests.support.factories import user_with_config
from tests.test_sql_sources import REVISIONS, alembic_config

# openai never refills, so a level is exact; tenant `small` has a fifth of it (2 tokens).
OPENAI = {"openai": {"capacity": 10, "refill_per_second": 0}}
CONFIG: dict[str, Any] = {"min_priority": 3, "tenant_overrides": {"small": 0.2}}

# One job per reason, against a fresh user of OPENAI and CONFIG, with the contract's words.
EACH_REASON = [
    (JobRequest("t", 2, {"openai": 1}), ReasonCode.MIN_PRIORITY, "priority too low"),
    (
        JobRequest("t", 5, {"stripe": 1}),
        ReasonCode.UNKNOWN_DEPENDENCY,
        "dependency 'stripe' is not configured",
    ),
    (
        JobRequest("t", 5, {"openai": 11}),
        ReasonCode.OVER_CAPACITY,
        "dependency 'openai' cost 11 exceeds capacity 10",
    ),
    (
        JobRequest("small", 5, {"openai": 3}),
        ReasonCode.TENANT_SHARE,
        "tenant 'small' exceeded its share of dependency 'openai'",
    ),
]
RATE_LIMITED = "dependency 'openai' rate limit exceeded"
# Takes every token. Of the lowest priority allowed, so that it is decided after the jobs of
# EACH_REASON in a batch (highest priority first), and before a job of its priority after it.
DRAIN = JobRequest("t", 3, {"openai": 10})
SHORT = JobRequest("t", 3, {"openai": 1})
# EACH_REASON's jobs, and the (reason, code) of each.
REJECTED_JOBS = tuple(job for job, _, _ in EACH_REASON)
THEIR_DECISIONS = [(reason, code) for _, code, reason in EACH_REASON]


@pytest.fixture
def store(database_url: str) -> Iterator[tuple[AdmissionStore, HistoryStore]]:
    """The admission and history stores over a pool on this test's database."""
    settings = Settings(database_url=database_url)
    pool = make_pool(settings)
    pool.open(wait=True)
    try:
        yield AdmissionStore(pool, retries=settings.conflict_retries), HistoryStore(pool)
    finally:
        pool.close()


@pytest.fixture
def user(db: psycopg.Connection) -> UUID:
    """A new user of OPENAI and CONFIG (enforce mode): full buckets, nothing decided yet."""
    return user_with_config(db, OPENAI, **CONFIG)


def request(
    user_id: UUID, mode: Mode, *jobs: JobRequest, key: str | None = None
) -> AdmissionRequest:
    """A request of `jobs` from the system routes, with an idempotency key if given."""
    idempotency_key = None
    if key is not None:
        idempotency_key = IdempotencyKey(key, hashlib.sha256(repr(jobs).encode()).digest())
    return AdmissionRequest(user_id, Source.SYSTEM, "b", jobs, mode, idempotency_key)


def codes(admission: Admission) -> list[tuple[str, ReasonCode | None]]:
    """(reason, reason_code) of each decision, in request order."""
    return [(decision.reason, decision.reason_code) for decision in admission.decisions]


def stored_codes(db: psycopg.Connection, decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """(status, reason_code, shadow_reason_code) of each decided job, as stored."""
    rows = []
    for decision in decisions:
        row = db.execute(
            "SELECT status, reason_code, shadow_reason_code FROM jobs WHERE job_id = %s",
            [decision.job_id],
        ).fetchone()
        assert row is not None, f"job {decision.job_id} is not stored"
        rows.append(row)
    return rows


def test_the_codes_are_the_closed_set_the_jobs_table_checks(db: psycopg.Connection) -> None:
    """ReasonCode's stored codes are is_reason_code()'s set, which the CHECKs of
    jobs.reason_code and jobs.shadow_reason_code call: any other text is refused (`other`,
    Python's word for a code newer than itself, included), NULL (accepted) is not."""
    for column in ("reason_code", "shadow_reason_code"):
        [(definition,)] = db.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = %s AND conrelid = 'jobs'::regclass",
            [f"jobs_{column}_check"],
        ).fetchall()
        assert definition == f"CHECK (is_reason_code({column}))"
    [(source,)] = db.execute(
        "SELECT prosrc FROM pg_proc WHERE proname = 'is_reason_code'"
    ).fetchall()
    assert set(source.split("'")[1::2]) == {code.value for code in STORED_CODES}
    answers = db.execute(
        "SELECT is_reason_code(c) FROM unnest(%s::text[]) AS c",
        [
            [
                *(code.value for code in STORED_CODES),
                "other",
                "rate limit exceeded",
                "Rate_limit",
                None,
            ]
        ],
    ).fetchall()
    assert [answer for (answer,) in answers] == [True] * len(STORED_CODES) + [False] * 3 + [None]
    user = user_with_config(db, OPENAI)
    # A newer database's code, read by this version (a deploy under way), is `other`.
    assert reason_code_of("queued_too_long") is ReasonCode.OTHER
    assert reason_code_of(None) is None
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority,"
            " dependencies, payload, status, reason, reason_code)"
            " VALUES (gen_random_uuid(), %s, 'system', 'b', 't', 5, '{}', '{}', 'Rejected',"
            " 'x', 'rate limit exceeded')",
            [user],
        )


@pytest.mark.parametrize(("job", "code", "reason"), EACH_REASON)
def test_each_reason_gets_its_code_alone_and_sinking_an_atomic_batch(
    db: psycopg.Connection,
    store: tuple[AdmissionStore, HistoryStore],
    user: UUID,
    job: JobRequest,
    code: ReasonCode,
    reason: str,
) -> None:
    """A single job keeps its code (stored, listed, in its record); in an atomic batch the job
    gets it too, and the others atomic_batch (and nothing is stored)."""
    admitter, history = store

    single = admitter.admit(request(user, Mode.SINGLE, job))
    atomic = admitter.admit(request(user, Mode.ATOMIC, SHORT, job))

    assert codes(single) == [(reason, code)]
    assert stored_codes(db, single.decisions) == [("Rejected", code.value, None)]
    [summary] = history.jobs(user, JobFilter(), 10, None).jobs
    assert (summary.reason, summary.reason_code) == (reason, code)
    record = history.job(user, single.decisions[0].job_id)
    assert record is not None
    assert (record.reason_code, record.shadow_reason_code) == (code, None)
    assert codes(atomic) == [
        ("batch rejected atomically", ReasonCode.ATOMIC_BATCH),
        (reason, code),
    ]
    assert history.jobs(user, JobFilter(), 10, None).jobs == [summary]


def test_an_accepted_job_has_no_code_and_tokens_short_is_rate_limit(
    db: psycopg.Connection, store: tuple[AdmissionStore, HistoryStore], user: UUID
) -> None:
    admitter, history = store

    accepted = admitter.admit(request(user, Mode.SINGLE, JobRequest("t", 5, {"openai": 8})))
    short = admitter.admit(request(user, Mode.SINGLE, JobRequest("t", 5, {"openai": 3})))

    assert codes(accepted) == [("", None)]
    assert codes(short) == [(RATE_LIMITED, ReasonCode.RATE_LIMIT)]
    assert stored_codes(db, accepted.decisions + short.decisions) == [
        ("Accepted", None, None),
        ("Rejected", "rate_limit", None),
    ]
    newest, oldest = history.jobs(user, JobFilter(), 10, None).jobs
    assert (newest.reason_code, oldest.reason_code) == (ReasonCode.RATE_LIMIT, None)


def test_the_priority_reserve_is_a_rate_limit(
    db: psycopg.Connection, store: tuple[AdmissionStore, HistoryStore]
) -> None:
    """Tokens there, but below what a job of this priority may leave: rate_limit."""
    admitter, _ = store
    user = user_with_config(db, OPENAI, priority_reserve=0.5)

    # Priority 1 must leave 10 x 0.5 = 5 of the 10 tokens; priority 10 may take them all.
    low = admitter.admit(request(user, Mode.SINGLE, JobRequest("t", 1, {"openai": 6})))
    high = admitter.admit(request(user, Mode.SINGLE, JobRequest("t", 10, {"openai": 6})))

    assert codes(low) == [(RATE_LIMITED, ReasonCode.RATE_LIMIT)]
    assert codes(high) == [("", None)]


def test_a_partial_batch_gives_each_job_its_own_code(
    db: psycopg.Connection, store: tuple[AdmissionStore, HistoryStore], user: UUID
) -> None:
    admitter, history = store

    admission = admitter.admit(request(user, Mode.PARTIAL, *REJECTED_JOBS, DRAIN, SHORT))

    assert codes(admission) == [
        *THEIR_DECISIONS,
        ("", None),
        (RATE_LIMITED, ReasonCode.RATE_LIMIT),
    ]
    assert [row[1] for row in stored_codes(db, admission.decisions)] == [
        *(code.value for _, code, _ in EACH_REASON),
        None,
        "rate_limit",
    ]
    rejected = history.jobs(user, JobFilter(status="Rejected"), 10, None).jobs
    assert {summary.reason_code for summary in rejected} == {
        *(code for _, code, _ in EACH_REASON),
        ReasonCode.RATE_LIMIT,
    }


def test_a_quote_tells_the_codes_and_stores_nothing(
    db: psycopg.Connection, store: tuple[AdmissionStore, HistoryStore], user: UUID
) -> None:
    admitter, _ = store

    partial = admitter.quote(request(user, Mode.PARTIAL, *REJECTED_JOBS, DRAIN))
    atomic = admitter.quote(request(user, Mode.ATOMIC, DRAIN, REJECTED_JOBS[0]))

    assert codes(partial) == [*THEIR_DECISIONS, ("", None)]
    assert codes(atomic) == [
        ("batch rejected atomically", ReasonCode.ATOMIC_BATCH),
        ("priority too low", ReasonCode.MIN_PRIORITY),
    ]
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_shadow_mode_accepts_with_no_code_and_keeps_enforcements(
    db: psycopg.Connection, store: tuple[AdmissionStore, HistoryStore]
) -> None:
    admitter, history = store
    user = user_with_config(db, OPENAI, mode="shadow", **CONFIG)

    # Enforcement would sink the first batch (a job too low), and take nothing for it.
    sunk = admitter.admit(request(user, Mode.ATOMIC, SHORT, REJECTED_JOBS[0]))
    partial = admitter.admit(request(user, Mode.PARTIAL, *REJECTED_JOBS, DRAIN))
    # The bucket DRAIN emptied refuses this one.
    short = admitter.admit(request(user, Mode.ATOMIC, SHORT))

    decisions = sunk.decisions + partial.decisions + short.decisions
    assert [(d.status, d.reason_code, d.shadow_reason_code) for d in decisions] == [
        ("Accepted", None, ReasonCode.ATOMIC_BATCH),
        ("Accepted", None, ReasonCode.MIN_PRIORITY),
        *(("Accepted", None, code) for _, code, _ in EACH_REASON),
        ("Accepted", None, None),
        ("Accepted", None, ReasonCode.RATE_LIMIT),
    ]
    # Stored as their values (ReasonCode is a str).
    assert stored_codes(db, decisions) == [
        ("Accepted", None, d.shadow_reason_code) for d in decisions
    ]
    record = history.job(user, partial.decisions[0].job_id)
    assert record is not None
    assert (record.reason_code, record.shadow_reason_code) == (None, ReasonCode.MIN_PRIORITY)


def test_a_replay_answers_the_remembered_codes(
    db: psycopg.Connection, store: tuple[AdmissionStore, HistoryStore], user: UUID
) -> None:
    admitter, _ = store
    first = request(user, Mode.PARTIAL, *REJECTED_JOBS, DRAIN, key="k")

    decided = admitter.admit(first)
    replayed = admitter.admit(first)
    quoted = admitter.quote(first)

    expected = [*THEIR_DECISIONS, ("", None)]
    assert codes(decided) == codes(replayed) == codes(quoted) == expected
    assert all(decision.replayed for decision in replayed.decisions + quoted.decisions)
    assert [d.job_id for d in replayed.decisions] == [d.job_id for d in decided.decisions]


# --- Migration 0015 classifies what was stored before it -------------------------------------

_ADMIT_0014 = (
    "SELECT job_id, status, reason FROM admit_jobs_once(%s, 'system', 'b', %s::text[],"
    " %s::smallint[], %s::jsonb[], %s::json[], %s, %s, %s)"
)


def test_migration_0015_classifies_the_reasons_stored_before_it(database_url: str) -> None:
    """Rejected jobs, the shadow decisions of shadow mode and the decisions of unexpired
    idempotency keys get the code of their words; names that spell another reason's words
    do not fool it. The downgrade takes the remembered codes out again."""
    config = alembic_config(database_url)
    before = REVISIONS[REVISIONS.index("0015") - 1]
    alembic.command.downgrade(config, before)
    # A dependency whose name ends as another reason's words.
    tricky = "x' rate limit exceeded"
    jobs: list[tuple[str, int, str]] = [
        ("t", 2, '{"openai": 1}'),  # min_priority
        ("t", 5, f'{{"{tricky}": 1}}'),  # unknown_dependency
        ("t", 5, '{"openai": 11}'),  # over_capacity
        ("small", 5, '{"openai": 3}'),  # tenant_share
        ("t", 3, '{"openai": 10}'),  # accepted, decided after those above (as DRAIN)
        ("t", 3, '{"openai": 1}'),  # rate_limit
    ]
    expected = [
        "min_priority",
        "unknown_dependency",
        "over_capacity",
        "tenant_share",
        None,
        "rate_limit",
    ]

    def admit(
        conn: psycopg.Connection, user: UUID, batch: list[tuple[str, int, str]], **options: Any
    ) -> list[tuple[Any, ...]]:
        tenants, priorities, dependencies = (list(column) for column in zip(*batch, strict=True))
        params = [user, tenants, priorities, dependencies, ["{}"] * len(batch)]
        params += [options.get("atomic", False), options.get("key"), b"hash"]
        return conn.execute(_ADMIT_0014, params).fetchall()

    with psycopg.connect(database_url, autocommit=True) as conn:
        enforcing = user_with_config(conn, OPENAI, **CONFIG)
        shadowing = user_with_config(conn, OPENAI, mode="shadow", **CONFIG)
        keeping = user_with_config(conn, OPENAI, **CONFIG)
        decided = admit(conn, enforcing, jobs)
        shadowed = admit(conn, shadowing, jobs)
        shadowed_atomic = admit(conn, shadowing, [("t", 2, "{}"), ("t", 5, "{}")], atomic=True)
        remembered = admit(conn, keeping, jobs, key="key")
        # An expired key is never read again: left as it is.
        admit(conn, keeping, [("t", 5, "{}")], key="old")
        conn.execute("UPDATE idempotency_keys SET expires_at = now() WHERE idempotency_key = 'old'")
    assert [status for _, status, _ in decided] == ["Rejected"] * 4 + ["Accepted", "Rejected"]
    assert decided[1][2] == f"dependency '{tricky}' is not configured"

    alembic.command.upgrade(config, "head")

    with psycopg.connect(database_url, autocommit=True) as conn:
        stored = {
            job_id: (reason_code, shadow_reason_code)
            for job_id, reason_code, shadow_reason_code in conn.execute(
                "SELECT job_id, reason_code, shadow_reason_code FROM jobs"
            )
        }
        assert [stored[row[0]] for row in decided] == [(code, None) for code in expected]
        assert [stored[row[0]] for row in shadowed] == [(None, code) for code in expected]
        assert [stored[row[0]] for row in shadowed_atomic] == [
            (None, "min_priority"),
            (None, "atomic_batch"),
        ]
        keys: dict[str, Any] = dict(
            conn.execute(
                "SELECT idempotency_key, decisions FROM idempotency_keys WHERE user_id = %s",
                [keeping],
            ).fetchall()
        )
        assert [d["reason_code"] for d in keys["key"]] == expected
        assert [row[0] for row in remembered] == [UUID(d["job_id"]) for d in keys["key"]]
        assert all("reason_code" not in d for d in keys["old"])
        # The replay answers the codes the migration gave the remembered decisions.
        replay = conn.execute(
            "SELECT replayed, reason_code FROM admit_jobs_once(%s, 'system', 'b', %s::text[],"
            " %s::smallint[], %s::jsonb[], %s::json[], false, 'key', 'hash')",
            [keeping, ["t"], [5], ["{}"], ["{}"]],
        ).fetchall()
        assert replay == [(True, code) for code in expected]

    alembic.command.downgrade(config, before)

    with psycopg.connect(database_url, autocommit=True) as conn:
        [(decisions,)] = conn.execute(
            "SELECT decisions FROM idempotency_keys WHERE idempotency_key = 'key'"
        ).fetchall()
        assert all(set(d) == {"job_id", "status", "reason"} for d in decisions)
