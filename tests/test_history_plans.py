"""GET /dashboard/jobs and /dashboard/jobs/{job_id} read jobs through indexes: the plans of
their exact statements, on a table large enough that Postgres would rather scan it whole
than use a poor index, name the index that serves each filter (migration 0016): the primary
key (user_id, job_id), whose time-ordered ids are the history's order, or one of the indexes
that lead with the filter's column and end with job_id. GET /dashboard/queue's two reads
read each state through its partial index too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from janus.db import queries
from janus.db.history import job_history_params, job_page, random_ids_params
from janus.history import PAGE_READS_AT_MOST, JobFilter, JobPage, JobPosition
from janus.queue_view import ENDED_WINDOW_SECONDS, QUEUE_MAX_JOBS
from tests.conftest import migrated_database
from tests.support.factories import create_user
from tests.support.history import job_id_at
from tests.support.plans import (
    partition_holding_most,
    plan_nodes,
    reading,
)

JOBS_PER_USER = 20_000

# Every user's jobs: one a second back from now, mostly completed (as a history is), some
# rejected, queued, running and failed; 50 tenants, 200 batches, both sources. Their ids are
# time-ordered, of their created_at, as admission makes them; JOBS_OF_RANDOM_ID more, older,
# have random ids, as the jobs stored before migration 0013 keep.
JOBS_OF_RANDOM_ID = 500
_INSERT = (
    """
INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority, dependencies,
                  payload, status, reason, state, attempts, lease_token, lease_expires_at,
                  created_at, finished_at)
SELECT CASE WHEN n > %(count)s THEN gen_random_uuid() ELSE """
    + job_id_at("now() - make_interval(secs => n)")
    + """ END,
       %(user_id)s, CASE WHEN n %% 2 = 0 THEN 'dashboard' ELSE 'system' END,
       'batch-' || (n %% 200), 'tenant-' || (n %% 50), 5, '{"openai": 1}', '{}',
       CASE WHEN kind = 'rejected' THEN 'Rejected' ELSE 'Accepted' END,
       CASE WHEN kind = 'rejected' THEN 'priority too low' ELSE '' END,
       CASE WHEN kind = 'rejected' THEN NULL ELSE kind END,
       CASE WHEN kind IN ('rejected', 'queued') THEN 0 ELSE 1 END,
       CASE WHEN kind = 'running' THEN gen_random_uuid() END,
       CASE WHEN kind = 'running' THEN now() + interval '1 minute' END,
       now() - make_interval(secs => n),
       CASE WHEN kind IN ('completed', 'failed') THEN now() - make_interval(secs => n) END
  FROM generate_series(1, %(count)s + %(random)s) AS n
 CROSS JOIN LATERAL (
       SELECT CASE WHEN n %% 100 < 70 THEN 'completed' WHEN n %% 100 < 85 THEN 'rejected'
                   WHEN n %% 100 < 95 THEN 'queued' WHEN n %% 100 < 98 THEN 'failed'
                   ELSE 'running' END AS kind) k
"""
)

NEWEST = "jobs_pkey"
IN_STATE = "jobs_in_state"
# Each filter and the indexes that may serve it, in the listing's order. A state that holds
# most of the user's jobs (completed, here 70%) may as well be found by walking jobs_pkey: a
# page then reads about 1/0.7 entries per job shown, and Postgres picks either, by a hair of
# estimated cost.
FILTERS: list[tuple[JobFilter, set[str]]] = [
    (JobFilter(), {NEWEST}),
    (JobFilter(status="Accepted"), {NEWEST}),
    (JobFilter(source="system"), {NEWEST}),
    (JobFilter(status="Rejected"), {"jobs_rejected"}),
    (JobFilter(state="queued"), {IN_STATE}),
    (JobFilter(state="running"), {IN_STATE}),
    (JobFilter(state="completed"), {IN_STATE, NEWEST}),
    (JobFilter(state="failed"), {IN_STATE}),
    (JobFilter(tenant_id="tenant-7"), {"jobs_of_tenant"}),
    (JobFilter(batch_name="batch-7"), {"jobs_of_batch"}),
    (JobFilter(tenant_id="tenant-7", status="Rejected"), {"jobs_of_tenant"}),
]


def _indexes_read(nodes: list[dict[str, Any]]) -> set[str]:
    return {node["Index Name"] for node in nodes if "Index Name" in node}


def _scans_jobs_whole(nodes: list[dict[str, Any]]) -> bool:
    return any(
        node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "jobs" for node in nodes
    )


@pytest.fixture(scope="module")
def history(postgres_server_url: str, template_database: str) -> Iterator[tuple[Any, UUID]]:
    """(a connection, the big user): JOBS_PER_USER jobs of it (and JOBS_OF_RANDOM_ID older
    ones of random id) beside two users with as many.

    Built once for the module, in a database of its own: the tests only read it.
    """
    with (
        migrated_database(postgres_server_url, template_database, "history_plans") as url,
        psycopg.connect(url, autocommit=True) as db,
    ):
        users = [create_user(db, who) for who in ("big", "neighbour", "other")]
        for user_id in users:
            db.execute(
                _INSERT,
                {"user_id": user_id, "count": JOBS_PER_USER, "random": JOBS_OF_RANDOM_ID},
            )
        db.execute("VACUUM ANALYZE jobs")
        yield db, users[0]


@pytest.fixture
def paging(history: tuple[Any, UUID]) -> Iterator[tuple[Any, UUID]]:
    """The history's connection in a transaction planned as janus.db.history plans a page."""
    db, big_user = history
    with db.transaction(force_rollback=True):
        db.execute(queries.WALK_IN_ORDER)
        yield db, big_user


def test_each_filter_of_the_history_reads_its_own_index(paging: tuple[Any, UUID]) -> None:
    db, big_user = paging
    since = datetime.now(UTC) - timedelta(hours=2)
    row = db.execute(
        "SELECT created_at, job_id FROM jobs WHERE user_id = %s AND job_id_version(job_id) = 7"
        " ORDER BY job_id DESC OFFSET 500 LIMIT 1",
        [big_user],
    ).fetchone()
    assert row is not None
    middle = JobPosition(*row)
    holding = {partition_holding_most(db, big_user)}
    for filters, indexes in [
        *FILTERS,
        (JobFilter(since=since), {NEWEST}),
        (JobFilter(until=since), {NEWEST}),
        (JobFilter(since=since - timedelta(hours=1), until=since), {NEWEST}),
    ]:
        # The first page, and a later one (below a cursor), as GET /dashboard/jobs asks.
        for after in (None, middle):
            params = job_history_params(big_user, filters, 21, after)
            nodes = reading(plan_nodes(db, queries.JOB_HISTORY, params), holding)
            assert len(_indexes_read(nodes) & indexes) == 1, (filters, after, nodes)
            assert not _scans_jobs_whole(nodes), (filters, after, nodes)
            # Read in the index's order: no sort of the user's jobs.
            assert not any("Sort" in node["Node Type"] for node in nodes), (filters, nodes)


# Filters that none of the big user's jobs match, beside a driving filter that thousands do:
# each read of a page stops at its bound.
RARE_MATCHES = [
    JobFilter(state="completed", status="Rejected"),
    JobFilter(state="queued", status="Rejected", source="system"),
]


def test_a_page_reads_at_most_its_bound_of_jobs_whatever_the_filters(
    paging: tuple[Any, UUID],
) -> None:
    db, big_user = paging
    for filters in RARE_MATCHES:
        params = job_history_params(big_user, filters, 21, None)
        read = plan_nodes(db, queries.JOB_HISTORY, params, analyze=True)
        scans = [node for node in read if node["Node Type"].startswith("Index")]
        assert scans, read
        # Every index scan of the read stops at the bound (actual rows are per loop: one),
        # and one job more: numbering the jobs read looks one ahead.
        assert all(node["Actual Rows"] <= PAGE_READS_AT_MOST + 1 for node in scans), (filters, read)
        assert all(node["Actual Loops"] == 1 for node in scans), (filters, read)
        page = job_page(db, big_user, filters, 21)
        assert page.jobs == [] and page.read_up_to is not None, filters
        # The operator's CLI reads without a bound: the same filters, to the end.
        assert job_page(db, big_user, filters, 21, examine=None) == JobPage([], None)


def test_a_page_whose_jobs_match_reads_about_as_many_as_it_shows(
    paging: tuple[Any, UUID],
) -> None:
    db, big_user = paging
    # 85% of the big user's jobs are accepted, half are of each source.
    for filters in (JobFilter(), JobFilter(status="Accepted"), JobFilter(source="system")):
        params = job_history_params(big_user, filters, 21, None)
        read = plan_nodes(db, queries.JOB_HISTORY, params, analyze=True)
        scans = [node for node in read if node["Node Type"].startswith("Index")]
        # Two jobs read for each shown, and one more: telling the last job read (read_last)
        # looks one ahead.
        assert scans and all(node["Actual Rows"] <= 2 * 21 + 1 for node in scans), (filters, read)


def test_without_its_index_the_listing_would_sort_the_users_jobs(
    history: tuple[Any, UUID],
) -> None:
    db, big_user = history
    params = job_history_params(big_user, JobFilter(), 21, None)
    with db.transaction(force_rollback=True):
        db.execute("ALTER TABLE jobs DROP CONSTRAINT jobs_pkey")
        nodes = plan_nodes(db, queries.JOB_HISTORY, params)
    assert NEWEST not in _indexes_read(nodes)
    assert any("Sort" in node["Node Type"] for node in nodes), nodes


def test_the_jobs_of_random_id_are_read_through_their_own_index(
    paging: tuple[Any, UUID],
) -> None:
    """The rest of a page, after the last job of time-ordered id: the jobs stored before
    migration 0013, newest first, from jobs_with_random_ids, where no job of time-ordered id
    is entered."""
    db, big_user = paging
    row = db.execute(
        "SELECT created_at, job_id FROM jobs WHERE user_id = %s AND job_id_version(job_id) <> 7"
        " ORDER BY created_at DESC, job_id DESC OFFSET 100 LIMIT 1",
        [big_user],
    ).fetchone()
    assert row is not None
    for after in (None, JobPosition(*row)):
        params = random_ids_params(big_user, JobFilter(), 21, after)
        nodes = plan_nodes(db, queries.JOB_HISTORY_OF_RANDOM_IDS, params)
        assert _indexes_read(nodes) == {"jobs_with_random_ids"}, nodes
        assert not any("Sort" in node["Node Type"] for node in nodes), nodes


def test_one_job_is_read_by_the_primary_key(history: tuple[Any, UUID]) -> None:
    db, big_user = history
    row = db.execute("SELECT job_id FROM jobs WHERE user_id = %s LIMIT 1", [big_user]).fetchone()
    assert row is not None
    nodes = plan_nodes(db, queries.JOB_RECORD, {"user_id": big_user, "job_id": row[0]})
    assert _indexes_read(nodes) == {"jobs_pkey"} and not _scans_jobs_whole(nodes)
    # Pruned by its id to the one partition that can hold it.
    [partition] = db.execute("SELECT tableoid::regclass::text FROM jobs WHERE job_id = %s", row)
    assert {node["Partition"] for node in nodes if "Partition" in node} == set(partition)


# GET /dashboard/queue: each statement, the indexes it may read jobs through, and how many
# reads of jobs it makes. queue_states counts in the partial index of each state, the ended
# jobs in jobs_done, and finds the oldest waiting and queued job in
# jobs_in_state and jobs_with_random_ids (those stored before migration 0013). Each state of
# queue_dependencies is read through its partial index, or jobs_in_state's (user_id, state)
# when the state holds fewer jobs than the read's bound (here 2,000 queued of 20,000).
QUEUE_READS = {
    queries.QUEUE_STATES: (
        {
            "jobs_waiting", "jobs_queued", "jobs_leased", "jobs_done", "jobs_in_state",
            "jobs_with_random_ids",
        },
        6,
    ),
    queries.QUEUE_DEPENDENCIES: (
        {"jobs_waiting", "jobs_queued", "jobs_leased", "jobs_in_state"},
        3,
    ),
}  # fmt: skip


@pytest.mark.parametrize("query", list(QUEUE_READS), ids=["queue_states", "queue_dependencies"])
def test_the_queue_reads_each_state_through_its_own_index(
    history: tuple[Any, UUID], query: str
) -> None:
    """Every read of jobs goes through one of the statement's indexes, on the user's key, run
    as the dashboard runs it: a user of 20,000 jobs is never read whole."""
    db, big_user = history
    bounds = db.cursor(row_factory=dict_row).execute(
        queries.UNFINISHED_BOUNDS, {"user_id": big_user}
    )
    params = {
        "user_id": big_user,
        "max_jobs": QUEUE_MAX_JOBS,
        "ended_window_s": ENDED_WINDOW_SECONDS,
        **(bounds.fetchone() or {}),
    }
    with db.transaction(force_rollback=True):
        db.execute(queries.WITHOUT_JIT)
        # The partition holding most of the user's jobs reads the statement's indexes; one of
        # a few jobs may rightly take a bitmap, jobs_pkey or a scan of its few rows.
        holding = {partition_holding_most(db, big_user)}
        nodes = reading(plan_nodes(db, query, params, analyze=True), holding)
    # Every index of jobs is named jobs_...: the index scans, and the bitmaps' index scans.
    of_jobs = [node for node in nodes if node.get("Index Name", "").startswith("jobs_")]
    indexes, reads = QUEUE_READS[query]
    assert _indexes_read(of_jobs) <= indexes and len(of_jobs) == reads, of_jobs
    assert all("user_id" in node["Index Cond"] for node in of_jobs), of_jobs
    assert not _scans_jobs_whole(nodes)
