"""jobs partitioned by time (migration 0024, issue 27): a database upgraded with jobs in it
keeps every job readable, claimable and prunable; `janus maintain` adds partitions ahead and
forgets those past the retention whole, unless a job in them is unfinished; the default
partition takes what no partition takes, and gives it up to the partition made for it."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import alembic.command
import psycopg
import pytest
from psycopg.rows import dict_row

from janus.cli import main as janus_cli
from janus.db import partitions, queries
from janus.db.history import activity_params
from janus.db.pool import make_pool
from janus.db.queue_depth import read_queue_depth
from janus.queue_view import ENDED_WINDOW_SECONDS, QUEUE_MAX_JOBS
from janus.settings import JobsPartitioning, Settings
from tests.support.app import headers_for, post_json, serve_app
from tests.support.factories import user_with_config
from tests.support.history import give_random_ids, insert_jobs
from tests.support.plans import plan_nodes
from tests.support.queue import claim, lease_call, queued_job, submit
from tests.test_sql_sources import alembic_config

OPENAI = {"openai": {"capacity": 1000, "refill_per_second": 0}}
# Enough jobs for 0024 to take its online path (ONLINE_FROM_JOBS), which the small one skips.
ONLINE = 100_000


def partition_of(db: psycopg.Connection, job_id: UUID | str) -> str:
    row = db.execute("SELECT tableoid::regclass::text FROM jobs WHERE job_id = %s", [job_id])
    found = row.fetchone()
    assert found is not None, job_id
    return str(found[0])


@pytest.fixture
def at_0023(database_url: str) -> Iterator[str]:
    alembic.command.downgrade(alembic_config(database_url), "0023")
    yield database_url


@pytest.mark.parametrize("online", [False, True], ids=["under-lock", "online"])
def test_a_database_upgraded_with_jobs_keeps_every_job_readable_claimable_and_prunable(
    at_0023: str, online: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = at_0023
    with (
        psycopg.connect(database_url, autocommit=True) as db,
        serve_app(Settings(database_url=database_url)) as client,
    ):
        user = user_with_config(db, OPENAI)
        queued = [submit(client, user, queued_job({"openai": 1})) for _ in range(6)]
        running = claim(client, user, limit=2)
        queued = [job_id for job_id in queued if job_id not in {j["job_id"] for j in running}]
        rejected = post_json(client, "/system/jobs", user, queued_job({"openai": 5000}))
        assert rejected.status_code == 429
        # Jobs stored before 0013 keep random ids: above and below every time-ordered one.
        queued[:2] = give_random_ids(db, queued[:2], above=True)
        queued[2:3] = give_random_ids(db, queued[2:3], above=False)
        old_rejected = give_random_ids(
            db,
            [str(r[0]) for r in db.execute("SELECT job_id FROM jobs WHERE status = 'Rejected'")],
            above=True,
        )
        if online:
            insert_jobs(db, user, ONLINE, status="Rejected", state=None, spacing_s=0)
        every = [str(job_id) for (job_id,) in db.execute("SELECT job_id FROM jobs")]

    alembic.command.upgrade(alembic_config(database_url), "head")

    with (
        psycopg.connect(database_url, autocommit=True) as db,
        serve_app(Settings(database_url=database_url)) as client,
    ):
        kinds = {
            kind for (kind,) in db.execute("SELECT relkind FROM pg_class WHERE relname = 'jobs'")
        }
        assert kinds == {"p"}
        # Readable: each job, by its id, as the dashboard reads it.
        for job_id in every[:50] + queued + old_rejected:
            answer = client.simulate_get(
                f"/dashboard/jobs/{job_id}", headers={"X-User-ID": str(user)}
            )
            assert answer.status_code == 200, (job_id, answer.text)
        assert {partition_of(db, j) for j in queued[:2] + old_rejected} == {"jobs_default"}
        assert {partition_of(db, j) for j in queued[2:] + [j["job_id"] for j in running]} == {
            "jobs_before"
        }
        # Claimable: every queued job is handed out, whatever its id; the running ones finish
        # under the leases they took before the upgrade.
        handed = claim(client, user, limit=100)
        assert sorted(j["job_id"] for j in handed) == sorted(queued)
        for leased in running + handed:
            assert lease_call(client, user, leased, "complete").status_code == 200
        # A job admitted now lands in a partition of its span; online, the first span starts
        # ten minutes on, and jobs_before takes it until then.
        if not online:
            time.sleep(1.1)  # past the next whole second, where the first span starts
        new = submit(client, user, queued_job({"openai": 1}))
        if online:
            assert partition_of(db, new) == "jobs_before"
        else:
            assert partition_of(db, new).startswith("jobs_2")
        [new_lease] = claim(client, user, limit=10)
        assert lease_call(client, user, new_lease, "complete").status_code == 200

        # Prunable: hours from now, past a retention of a minute, jobs_before and the spans
        # go whole; the jobs of random id, in jobs_default, go by janus prune's age rules.
        later = partitions.now(db) + timedelta(hours=6)
        short = JobsPartitioning(span=timedelta(hours=1), retention=timedelta(minutes=1))
        dropped, kept = partitions.drop_partitions_past(db, short, sleep=lambda _: None, at=later)
        assert "jobs_before" in {p.name for p in dropped} and kept == []
        remaining = {str(j) for (j,) in db.execute("SELECT job_id FROM jobs")}
        assert remaining == set(queued[:2] + old_rejected), "only jobs_default's are left"
        db.execute(
            "UPDATE jobs SET finished_at = now() - interval '8 days',"
            " created_at = now() - interval '8 days'"
        )
        monkeypatch.setenv("DATABASE_URL", database_url)
        assert janus_cli(["prune"]) == 0
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def unfinished_from(db: psycopg.Connection, user: UUID) -> UUID:
    row = db.execute("SELECT jobs_unfinished_from FROM users WHERE user_id = %s", [user])
    found = row.fetchone()
    assert found is not None
    mark: UUID = found[0]
    return mark


def failed_hours_back(db: psycopg.Connection, app_client: Any, user: UUID) -> UUID:
    """A job of `user`'s, failed for good and decided three hours ago as far as its id tells:
    below the hour back at which `janus maintain` marks a user without unfinished jobs."""
    failed = submit(app_client, user, queued_job({"openai": 1}))
    [leased] = claim(app_client, user, limit=1)
    assert lease_call(app_client, user, leased, "fail", error="no", retry=False).status_code == 200
    [(old,)] = db.execute(
        "UPDATE jobs SET job_id = first_job_id_at(now() - interval '3 hours')"
        " WHERE job_id = %s RETURNING job_id",
        [failed],
    )
    job_id: UUID = old
    return job_id


def test_claims_start_at_the_oldest_unfinished_job_and_a_retry_moves_that_back(
    db: psycopg.Connection, app_client: Any
) -> None:
    user = user_with_config(db, OPENAI)
    old = failed_hours_back(db, app_client, user)
    assert partitions.mark_unfinished_from(db) >= 1
    hour_ago = db.execute("SELECT first_job_id_at(now() - interval '1 hour')").fetchone()
    assert hour_ago is not None and old < unfinished_from(db, user) <= hour_ago[0]

    answer = client_retry(app_client, user, old)
    assert answer.status_code == 200, answer.text
    assert unfinished_from(db, user) == old
    [again] = claim(app_client, user, limit=1)
    assert again["job_id"] == str(old)
    # A job of random id unfinished: no bound at all, until it is finished.
    give_random_ids(db, [str(old)], above=True)
    partitions.mark_unfinished_from(db)
    assert unfinished_from(db, user) == UUID(int=0)


def test_a_retry_committed_while_maintain_waits_for_the_user_keeps_the_mark_it_set(
    db: psycopg.Connection, app_client: Any, database_url: str
) -> None:
    """A retry holds the user's row while maintain waits for it: once the retry commits,
    maintain's read of the jobs sees the retried job, and leaves the mark at its id rather
    than raise it past a job claims would then not see."""
    user = user_with_config(db, OPENAI)
    old = failed_hours_back(db, app_client, user)
    partitions.mark_unfinished_from(db)
    assert unfinished_from(db, user) > old

    with (
        psycopg.connect(database_url) as retrying,
        psycopg.connect(database_url, autocommit=True) as maintaining,
    ):
        retried = retrying.execute("SELECT outcome FROM retry_jobs(%s, %s)", [user, [old]])
        assert retried.fetchall() == [("retried",)]
        marking = threading.Thread(target=partitions.mark_unfinished_from, args=[maintaining])
        marking.start()
        deadline = time.monotonic() + 10
        while not db.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            [maintaining.info.backend_pid],
        ).fetchone():
            assert time.monotonic() < deadline, "maintain never waited for the retry's lock"
            time.sleep(0.01)
        retrying.commit()
        marking.join(timeout=10)
        assert not marking.is_alive()
    assert unfinished_from(db, user) == old
    [again] = claim(app_client, user, limit=1)
    assert again["job_id"] == str(old)


def test_a_claim_reads_only_the_partitions_of_its_users_unfinished_jobs(
    db: psycopg.Connection, app_client: Any
) -> None:
    """hand_out_jobs()'s walk of the queued jobs, planned for its bounds as the function
    plans it (force_custom_plan): the spans made ahead and the default partition are left
    out (and the partitions of spans ended before the user's oldest unfinished job)."""
    user = user_with_config(db, OPENAI)
    submit(app_client, user, queued_job({"openai": 1}))
    partitions.mark_unfinished_from(db)
    row = db.execute(
        "SELECT jobs_unfinished_from, unfinished_until(jobs_unfinished_from, now())"
        " FROM users WHERE user_id = %s",
        [user],
    ).fetchone()
    assert row is not None
    nodes = plan_nodes(
        db,
        "SELECT q.job_id FROM jobs q WHERE q.user_id = %(user_id)s AND q.state = 'queued'"
        " AND q.job_id >= %(from)s AND q.job_id < %(until)s"
        " ORDER BY q.priority DESC, q.created_at, q.job_id LIMIT 10",
        {"user_id": user, "from": row[0], "until": row[1]},
    )
    read = {node["Partition"] for node in nodes if "Partition" in node}
    soon = partitions.now(db) + timedelta(minutes=1)
    ahead = {p.name for p in partitions.partitions(db) if p.starts is not None and p.starts > soon}
    assert len(ahead) >= 2 and read, (read, ahead)
    assert not read & (ahead | {"jobs_default"}), read


def test_the_queue_view_and_the_gauges_read_only_the_partitions_of_their_bounds(
    db: psycopg.Connection, app_client: Any
) -> None:
    """GET /dashboard/queue and GET /metrics's queue gauges plan and read queued, waiting and
    running jobs in the partitions between their unfinished bounds only, and the queue view
    its jobs ended within a day from jobs_ended_from on: not the spans made ahead, nor the
    default partition. A job retried from hours back is counted, waiting and then ended."""
    user = user_with_config(db, OPENAI)
    old = failed_hours_back(db, app_client, user)
    submit(app_client, user, queued_job({"openai": 1}))
    # Two runs of `janus maintain` a day apart, as far as the user's low tells: the first
    # starts a low, the second makes it jobs_ended_from.
    for _ in range(2):
        db.execute(
            "UPDATE users SET jobs_unfinished_low_since = now() - interval '2 days'"
            " WHERE user_id = %s",
            [user],
        )
        partitions.mark_unfinished_from(db)
    assert UUID(int=0) < ended_from(db, user) <= unfinished_from(db, user)
    bounds = db.cursor(row_factory=dict_row).execute(queries.UNFINISHED_BOUNDS, {"user_id": user})
    params = {
        "user_id": user,
        "max_jobs": QUEUE_MAX_JOBS,
        "ended_window_s": ENDED_WINDOW_SECONDS,
        **(bounds.fetchone() or {}),
    }
    soon = partitions.now(db) + timedelta(minutes=1)
    ahead = {p.name for p in partitions.partitions(db) if p.starts is not None and p.starts > soon}
    assert len(ahead) >= 2, ahead
    for query in (queries.QUEUE_STATES, queries.QUEUE_DEPENDENCIES):
        read = {n["Partition"] for n in plan_nodes(db, query, params) if "Partition" in n}
        assert read and not read & (ahead | {"jobs_default"}), read
    # GET /metrics's queue gauges too, between the bounds of every user.
    [every] = db.execute(queries.UNFINISHED_BOUNDS_OF_ALL).fetchall()
    gauges = {"unfinished_from": every[0], "unfinished_until": every[1]}
    read = {n["Partition"] for n in plan_nodes(db, queries.QUEUE_DEPTH, gauges) if "Partition" in n}
    assert read and not read & (ahead | {"jobs_default"}), read

    assert _queue(app_client, user)["states"]["queued"] == 1
    assert client_retry(app_client, user, old).status_code == 200
    assert ended_from(db, user) == old
    assert _queue(app_client, user)["states"]["waiting"] == 1
    for job in claim(app_client, user, limit=2):
        assert lease_call(app_client, user, job, "complete").status_code == 200
    partitions.mark_unfinished_from(db)
    assert _queue(app_client, user)["states"]["completed"] == 2


def ended_from(db: psycopg.Connection, user: UUID) -> UUID:
    row = db.execute("SELECT jobs_ended_from FROM users WHERE user_id = %s", [user]).fetchone()
    assert row is not None
    mark: UUID = row[0]
    return mark


def test_the_activity_is_planned_for_the_partitions_of_its_window_only(
    db: psycopg.Connection, app_client: Any
) -> None:
    """GET /dashboard/activity's read of jobs is planned for its window's ids, given as
    values: the other partitions are left out by the planner, not pruned as it runs (no
    "Subplans Removed"), so that a week of partitions costs it no planning."""
    user = user_with_config(db, OPENAI)
    submit(app_client, user, queued_job({"openai": 1}))
    nodes = plan_nodes(db, queries.JOB_ACTIVITY, activity_params(db, user, 100))
    read = {node["Partition"] for node in nodes if "Partition" in node}
    assert read and "jobs_default" not in read, read
    assert not [n for n in nodes if n.get("Subplans Removed")], [
        n for n in nodes if "Subplans Removed" in n
    ]


def _queue(client: Any, user: UUID) -> Any:
    answer = client.simulate_get("/dashboard/queue", headers=headers_for(user))
    assert answer.status_code == 200, answer.text
    return answer.json


def client_retry(client: Any, user: UUID, job_id: UUID) -> Any:
    return post_json(client, f"/dashboard/jobs/{job_id}/retry", user, {})


def test_a_partition_holding_an_unfinished_job_is_kept_and_said_why(
    db: psycopg.Connection, app_client: Any
) -> None:
    user = user_with_config(db, OPENAI)
    waiting = submit(app_client, user, queued_job({"openai": 1}))
    done = submit(app_client, user, queued_job({"openai": 1}))
    holding = partition_of(db, waiting)
    [first, second] = claim(app_client, user, limit=2)
    assert lease_call(app_client, user, second, "complete").status_code == 200
    later = partitions.now(db) + timedelta(hours=5)
    short = JobsPartitioning(span=timedelta(hours=1), retention=timedelta(minutes=1))

    dropped, kept = partitions.drop_partitions_past(db, short, sleep=lambda _: None, at=later)

    assert [k.partition.name for k in kept] == [holding]
    assert kept[0].unfinished == {"running": 1} and "1 running" in kept[0].why
    assert holding not in {p.name for p in dropped}
    assert {partition_of(db, job_id) for job_id in (waiting, done)} == {holding}
    held = partitions.held_past_retention(db, short, at=later)
    assert [(p.name, states) for p, states in held] == [(holding, ["running"])]
    assert first["job_id"] in (waiting, done)


def test_maintain_adds_spans_ahead_and_a_new_one_takes_the_default_partitions_rows(
    db: psycopg.Connection,
) -> None:
    user = user_with_config(db, OPENAI)
    # Six hours ahead: past the three the template's migration made.
    six_hours = JobsPartitioning(span=timedelta(hours=2), retention=timedelta(days=7))
    before = partitions.partitions(db)
    added = partitions.add_partitions_ahead(db, six_hours)
    assert added and added[0].starts == [p for p in before if p.ends][-1].ends
    assert all(a.ends == b.starts for a, b in itertools.pairwise(added))
    assert added[-1].ends is not None and added[-1].ends >= partitions.now(db) + timedelta(hours=6)
    assert partitions.add_partitions_ahead(db, six_hours) == []

    # A job decided where no partition is yet (as when janus maintain stops running) goes
    # to jobs_default; the partition made for its span takes it.
    far = added[-1].ends + timedelta(hours=5)
    [(job_id,)] = db.execute(
        "INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority,"
        " dependencies, payload, status, state)"
        " VALUES (first_job_id_at(%s), %s, 'system', 'b', 't', 5, '{}', '{}', 'Accepted',"
        " 'queued') RETURNING job_id",
        [far, user],
    )
    assert partition_of(db, job_id) == "jobs_default"
    start = partitions.span_start(far, timedelta(hours=2))
    db.execute("SELECT add_jobs_partition(%s, %s)", [start, start + timedelta(hours=2)])
    assert partition_of(db, job_id) == f"jobs_{start:%Y%m%d_%H%M}"


def test_janus_maintain_says_what_it_did(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    # Spans of 4 hours: 12 ahead, past the 3 the template's migration made.
    monkeypatch.setenv("JANUS_JOBS_PARTITION_MINUTES", "240")
    monkeypatch.setenv("JANUS_JOBS_RETENTION_MINUTES", "60")
    assert janus_cli(["maintain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("added jobs_") for line in lines), lines
    assert lines[-1].startswith("jobs has ") and "(4 hours each, kept 1 hour" in lines[-1]


def test_the_scrape_reads_the_partitions_kept_past_the_retention(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as db:
        ends = next(p.ends for p in partitions.partitions(db) if p.name == "jobs_before")
        assert ends is not None
        while partitions.now(db) <= ends + timedelta(seconds=1):
            time.sleep(0.2)
    second = JobsPartitioning(retention=timedelta(seconds=1))
    with make_pool(Settings(database_url=database_url)) as pool:
        depth = read_queue_depth(pool, second)
    assert depth.partitions >= 4
    assert ("jobs_before", "none") in depth.held_partitions
    # Only partitions whose span has ended: never the current one, nor those made ahead.
    with psycopg.connect(database_url, autocommit=True) as db:
        now = partitions.now(db)
        open_spans = {p.name for p in partitions.partitions(db) if p.ends is None or p.ends > now}
    assert not {name for name, _ in depth.held_partitions} & open_spans
