"""What a stored job tells an operator: the config version and Retry-After that decided it,
the index behind "jobs of tenant X today", and `janus prune` for old rejected jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import falcon.testing
import psycopg
import pytest

from janus.cli import main as janus_cli
from janus.db import maintenance
from tests.support.app import ATOMIC_ROUTES, PARTIAL_ROUTES, SINGLE_ROUTES, post_json
from tests.support.factories import activate_config, create_user, stored_job, user_with_config
from tests.support.history import insert_jobs, job_id_at

OPENAI = {"openai": {"capacity": 2, "refill_per_second": 0.5}}


def job(cost: int = 1, dependency: str = "openai") -> dict[str, Any]:
    """A single job's body."""
    return {
        "batch_name": "b",
        "tenant_id": "tenant-a",
        "priority": 5,
        "dependencies": {dependency: cost},
    }


def batch(*jobs: dict[str, Any]) -> dict[str, Any]:
    """A batch body of `jobs` (their batch_name moved up)."""
    return {
        "batch_name": "b",
        "jobs": [{k: v for k, v in j.items() if k != "batch_name"} for j in jobs],
    }


def stored(db: psycopg.Connection, job_id: str) -> tuple[Any, ...]:
    """(status, config_version, retry_after) of a stored job."""
    return tuple(stored_job(db, job_id, "status, config_version, retry_after").values())


@pytest.mark.parametrize("path", SINGLE_ROUTES)
def test_a_job_records_its_config_version_and_the_retry_after_it_was_given(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user = user_with_config(db, OPENAI)
    accepted = post_json(app_client, path, user, job(cost=2))
    rejected = post_json(app_client, path, user, job(cost=1))
    assert (accepted.status_code, rejected.status_code) == (202, 429)

    assert stored(db, accepted.json["job_id"]) == ("Accepted", 1, None)
    assert stored(db, rejected.json["job_id"]) == (
        "Rejected",
        1,
        int(rejected.headers["Retry-After"]),
    )

    # A new bucket starts full; this one never refills.
    activate_config(db, user, {"stripe": {"capacity": 9, "refill_per_second": 0}})
    again = post_json(app_client, path, user, job(cost=9, dependency="stripe"))
    never = post_json(app_client, path, user, job(cost=1, dependency="stripe"))
    assert stored(db, again.json["job_id"]) == ("Accepted", 2, None)
    # A bucket that never refills gives no Retry-After, and none is recorded.
    assert "Retry-After" not in never.headers
    assert stored(db, never.json["job_id"]) == ("Rejected", 2, None)


@pytest.mark.parametrize("path", PARTIAL_ROUTES)
def test_a_partial_batch_records_each_jobs_retry_after(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user = user_with_config(db, OPENAI)
    answer = post_json(app_client, path, user, batch(job(cost=2), job(cost=1), job()))

    decisions = answer.json["results"]
    assert [stored(db, d["job_id"])[0] for d in decisions] == ["Accepted", "Rejected", "Rejected"]
    assert [stored(db, d["job_id"])[1:] for d in decisions] == [(1, None), (1, 2), (1, 2)]


@pytest.mark.parametrize("path", ATOMIC_ROUTES)
def test_an_accepted_atomic_batch_records_its_config_version(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, path: str
) -> None:
    user = user_with_config(db, OPENAI)
    answer = post_json(app_client, path, user, batch(job(), job()))

    assert answer.status_code == 202
    assert {stored(db, d["job_id"]) for d in answer.json} == {("Accepted", 1, None)}


def test_jobs_of_one_tenant_in_a_time_range_are_read_through_an_index(
    db: psycopg.Connection,
) -> None:
    """ "Jobs of tenant X today": a range of jobs_of_tenant (user_id, tenant_id, job_id), the
    day's first id its lower bound (the history reads it so for `tenant_id` and `since`)."""
    user = create_user(db)
    for tenant in range(10):
        insert_jobs(db, user, 100, tenant_id=f"tenant-{tenant}", spacing_s=3600)
    db.execute("ANALYZE jobs")
    # On a small table the planner rightly prefers a scan; told not to, it must find the index.
    db.execute("SET enable_seqscan = off")
    forced = "\n".join(
        row[0]
        for row in db.execute(
            """
            EXPLAIN SELECT * FROM jobs
             WHERE user_id = %s AND tenant_id = 'tenant-1'
               AND job_id >= first_job_id_at(date_trunc('day', now()))
            """,
            [user],
        )
    )
    # jobs is partitioned (migration 0024): the partition holding the jobs reads its own
    # jobs_of_tenant (jobs_before_of_tenant, jobs_20261207_1400_of_tenant); the others,
    # empty, whatever the planner takes, on the user's key.
    assert "_of_tenant on jobs_" in forced, forced
    conditions = [line for line in forced.splitlines() if "Index Cond" in line]
    assert any("tenant_id" in line and "job_id >=" in line for line in conditions), forced
    assert all("user_id" in line for line in conditions), forced


def age_jobs(db: psycopg.Connection, user: UUID, days: float) -> None:
    """Make every job of `user` look decided and stored `days` ago: its time-ordered id too."""
    db.execute(
        "UPDATE jobs SET created_at = now() - make_interval(secs => %(s)s),"
        " job_id = " + job_id_at("now() - make_interval(secs => %(s)s)") + " WHERE user_id = %(u)s",
        {"s": days * 86400, "u": user},
    )


def statuses_of(db: psycopg.Connection, user: UUID) -> list[str]:
    """The statuses of `user`'s stored jobs, sorted."""
    rows = db.execute("SELECT status FROM jobs WHERE user_id = %s ORDER BY status", [user])
    return [status for (status,) in rows]


def test_prune_deletes_rejected_jobs_past_their_retention_and_keeps_the_rest(
    app_client: falcon.testing.TestClient,
    db: psycopg.Connection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, recent = user_with_config(db, OPENAI), user_with_config(db, OPENAI)
    for user in (old, recent):
        for cost in (2, 1, 1):
            post_json(app_client, SINGLE_ROUTES[0], user, job(cost=cost))
    age_jobs(db, old, 8)
    age_jobs(db, recent, 6)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # A deployment that keeps jobs 30 days: the 7 days of rejected jobs come first, by DELETE.
    # Under the default 7 days they go with their partitions (test_partitions.py).
    monkeypatch.setenv("JANUS_JOBS_RETENTION_MINUTES", str(30 * 24 * 60))

    assert janus_cli(["prune"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "pruned 0 expired idempotency keys and 0 beyond each user's newest 100000",
        "pruned 2 rejected jobs older than 7 days and 0 beyond each user's newest 100000",
        "pruned 0 completed, failed or cancelled jobs past their config's retention_days",
        "pruned 0 pause changes beyond each user's newest 1000 and 0 config versions beyond"
        " each user's newest 100",
        "pruned 0 tenant buckets full again",
    ]
    assert statuses_of(db, old) == ["Accepted"]
    assert statuses_of(db, recent) == ["Accepted", "Rejected", "Rejected"]

    assert janus_cli(["prune", "--rejected-days", "5.5"]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[1]
        .startswith("pruned 2 rejected jobs older than 5.5 days and 0 beyond")
    )
    assert statuses_of(db, recent) == ["Accepted"]


def test_prune_works_through_a_backlog_in_chunks(
    app_client: falcon.testing.TestClient, db: psycopg.Connection, database_url: str
) -> None:
    users = [
        user_with_config(db, {"openai": {"capacity": 1, "refill_per_second": 0}}) for _ in range(2)
    ]
    for user in users:
        post_json(app_client, PARTIAL_ROUTES[0], user, batch(*[job(cost=2)] * 7))
        age_jobs(db, user, 30)

    with psycopg.connect(database_url, autocommit=True) as conn:
        deleted = maintenance.prune_rejected_jobs(conn, timedelta(days=7), chunk=3)

    assert deleted == 14
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def rejected_jobs_of(db: psycopg.Connection, user: UUID) -> set[UUID]:
    """The ids of `user`'s stored rejected jobs."""
    rows = db.execute("SELECT job_id FROM jobs WHERE user_id = %s AND status = 'Rejected'", [user])
    return {job_id for (job_id,) in rows}


def with_random_ids(db: psycopg.Connection, job_ids: list[UUID]) -> list[UUID]:
    """Give the jobs random ids (version 4), as jobs stored before migration 0013 have, each
    an hour older than the one before it; their new ids, in the same order."""
    new_ids = []
    for hours, job_id in enumerate(job_ids, start=1):
        row = db.execute(
            "UPDATE jobs SET job_id = gen_random_uuid(),"
            " created_at = now() - make_interval(hours => %s) WHERE job_id = %s RETURNING job_id",
            [hours, job_id],
        ).fetchone()
        assert row is not None
        new_ids.append(row[0])
    return new_ids


def test_prune_keeps_each_users_newest_rejected_jobs_however_recent(
    db: psycopg.Connection, database_url: str
) -> None:
    many, mixed, few = create_user(db), create_user(db), create_user(db)
    # Newest first, a millisecond apart, all of today.
    many_rejected = insert_jobs(db, many, 9, status="Rejected", state=None, spacing_s=1e-3)
    accepted = insert_jobs(db, many, 2)
    mixed_rejected = insert_jobs(db, mixed, 2, status="Rejected", state=None, spacing_s=1e-3)
    # Jobs stored before 0013 come after every time-ordered one, newest first by created_at.
    mixed_rejected += with_random_ids(
        db, insert_jobs(db, mixed, 4, status="Rejected", state=None, spacing_s=1e-3)
    )
    few_rejected = insert_jobs(db, few, 3, status="Rejected", state=None)

    with psycopg.connect(database_url, autocommit=True) as conn:
        deleted = maintenance.prune_rejected_jobs_beyond(conn, 3, chunk=2)
        assert maintenance.prune_rejected_jobs_beyond(conn, 3, chunk=2) == 0

    assert deleted == 6 + 3
    assert rejected_jobs_of(db, many) == set(many_rejected[:3])
    assert rejected_jobs_of(db, mixed) == set(mixed_rejected[:3])
    assert rejected_jobs_of(db, few) == set(few_rejected)
    assert db.execute(
        "SELECT count(*) FROM jobs WHERE job_id = ANY(%s)", [accepted]
    ).fetchone() == (2,)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert maintenance.prune_rejected_jobs_beyond(conn, 1) == 2 + 2 + 2
    assert rejected_jobs_of(db, mixed) == {mixed_rejected[0]}


def test_prune_says_how_many_rejected_jobs_went_beyond_each_users_newest(
    db: psycopg.Connection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for _ in range(2):
        insert_jobs(db, create_user(db), 4, status="Rejected", state=None)
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert janus_cli(["prune", "--keep-rejected-jobs", "3"]) == 0

    assert capsys.readouterr().out.splitlines()[1] == (
        "pruned 0 rejected jobs older than 7 days and 2 beyond each user's newest 3"
    )
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (6,)


def test_prune_refuses_a_retention_that_is_not_a_number_of_days(
    capsys: pytest.CaptureFixture[str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    for bad in ("-1", "nan", "a week"):
        assert janus_cli(["prune", "--rejected-days", bad]) == 2
        assert "is not a number of days" in capsys.readouterr().err


def test_prune_keeps_at_least_one_of_each_users_rows(capsys: pytest.CaptureFixture[str]) -> None:
    for option, noun in [
        ("--keep-rejected-jobs", "rejected jobs"),
        ("--keep-idempotency-keys", "idempotency keys"),
        ("--keep-config-versions", "config versions"),
        ("--keep-pause-changes", "pause changes"),
    ]:
        for bad in ("0", "-5", "2.5", "all", "1000000001"):
            assert janus_cli(["prune", option, bad, "--yes"]) == 2
            assert f"'{bad}' is not a number of {noun} (1 to " in capsys.readouterr().err


def test_a_user_without_jobs_is_pruned_without_error(
    db: psycopg.Connection, database_url: str
) -> None:
    create_user(db)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert maintenance.prune_rejected_jobs(conn, timedelta(days=7)) == 0
