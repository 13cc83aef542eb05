"""GET /dashboard/jobs reads a page as windows of time, newest first (janus.db.history's
history_windows), so that each of its statements is planned for the partitions of jobs of its
window only: a user's newest jobs are found without planning a week of partitions. The
windows hold every job once, in order, and share the page's bound of jobs read."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from janus.db import partitions, queries
from janus.db.history import (
    AHEAD_OF_NOW,
    FIRST_WINDOW,
    history_windows,
    job_history_params,
    job_page,
)
from janus.history import PAGE_READS_AT_MOST, JobFilter, JobPosition
from tests.conftest import migrated_database
from tests.support.factories import create_user
from tests.support.history import give_random_ids, insert_jobs
from tests.support.plans import plan_nodes

# Hourly partitions from this many hours back, and a few ahead: a week's would be 168.
HOURS_BACK = 40
HOURS_AHEAD = 4
# The moments of the sparse user's jobs, in hours back: in the first window, in later ones,
# in jobs_before (older than every hourly partition), and past the last window of its own.
SPARSE_HOURS_BACK = (0.2, 2, 5, 20, 35, 60, 300)


def _relay_partitions(db: psycopg.Connection) -> int:
    """jobs as a week of hourly partitions would be, shorter: jobs_before below HOURS_BACK
    hours ago, then a partition an hour up to HOURS_AHEAD ahead (the migration made a
    database of no jobs with jobs_before ending now). How many partitions jobs has."""
    for partition in partitions.partitions(db):
        if partition.name != "jobs_default":
            db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(partition.name)))
    first = partitions.span_start(partitions.now(db), timedelta(hours=1)) - timedelta(
        hours=HOURS_BACK
    )
    row = db.execute("SELECT first_job_id_at(%s)::text", [first]).fetchone()
    assert row is not None
    db.execute(
        sql.SQL(
            "CREATE TABLE jobs_before PARTITION OF jobs FOR VALUES FROM (MINVALUE) TO ({})"
        ).format(sql.Literal(row[0]))
    )
    for hour in range(HOURS_BACK + HOURS_AHEAD):
        db.execute(
            "SELECT add_jobs_partition(%s, %s)",
            [first + timedelta(hours=hour), first + timedelta(hours=hour + 1)],
        )
    return len(partitions.partitions(db))


@pytest.fixture(scope="module")
def history(postgres_server_url: str, template_database: str) -> Iterator[dict[str, Any]]:
    """A database of its own, its partitions relaid (_relay_partitions), with three users:
    `busy`, with 300 jobs in the last hour; `sparse`, a job at each of SPARSE_HOURS_BACK and
    two of random id; `one_system`, 1,200 dashboard jobs 40 s apart and then a system one."""
    with (
        migrated_database(postgres_server_url, template_database, "history_windows") as url,
        psycopg.connect(url, autocommit=True) as db,
    ):
        count = _relay_partitions(db)
        now = datetime.now(UTC)
        busy, sparse, one_system = (create_user(db, who) for who in ("b", "s", "o"))
        insert_jobs(db, busy, 300, newest=now - timedelta(minutes=1), spacing_s=10)
        for hours in SPARSE_HOURS_BACK:
            insert_jobs(db, sparse, 1, newest=now - timedelta(hours=hours))
        old = insert_jobs(db, sparse, 2, newest=now - timedelta(days=30))
        give_random_ids(db, [str(job_id) for job_id in old], above=True)
        dashboard = insert_jobs(db, one_system, 1_200, spacing_s=40)
        insert_jobs(db, one_system, 1, newest=now - timedelta(hours=20), source="system")
        db.execute("VACUUM ANALYZE jobs")
        yield {
            "db": db,
            "partitions": count,
            "busy": busy,
            "sparse": sparse,
            "one_system": one_system,
            "dashboard": dashboard,
        }


def _planned(db: psycopg.Connection, params: dict[str, Any]) -> set[str]:
    """The partitions of jobs the history statement is planned to read for `params`."""
    with db.transaction(force_rollback=True):
        db.execute(queries.WALK_IN_ORDER)
        nodes = plan_nodes(db, queries.JOB_HISTORY, params)
    return {node["Partition"] for node in nodes if "Partition" in node}


def test_the_first_window_of_a_page_is_planned_for_the_newest_partitions_only(
    history: dict[str, Any],
) -> None:
    db = history["db"]
    first = next(history_windows(JobFilter(), None))
    read = _planned(db, job_history_params(history["busy"], first, 50, None))
    # The partitions of the window's two hours or so, the few ahead, and the default one.
    assert 2 <= len(read) <= HOURS_AHEAD + 4 and "jobs_before" not in read, read
    assert history["partitions"] >= HOURS_BACK + HOURS_AHEAD
    # Without windows, the one statement of a page would be planned in every partition.
    whole = _planned(db, job_history_params(history["busy"], JobFilter(), 50, None))
    assert len(whole) == history["partitions"], whole

    newest = db.execute(
        "SELECT job_id FROM jobs WHERE user_id = %s ORDER BY job_id DESC LIMIT 50",
        [history["busy"]],
    ).fetchall()
    page = job_page(db, history["busy"], JobFilter(), 50)
    assert [job.job_id for job in page.jobs] == [job_id for (job_id,) in newest]


def test_every_window_is_planned_for_the_partitions_of_its_span(
    history: dict[str, Any],
) -> None:
    db = history["db"]
    spans = {p.name: p for p in partitions.partitions(db)}
    for window in history_windows(JobFilter(), None):
        read = _planned(db, job_history_params(history["sparse"], window, 50, None))
        for name in read - {"jobs_default"}:
            span = spans[name]
            assert window.since is None or span.ends is None or span.ends > window.since
            assert window.until is not None and (span.starts is None or span.starts < window.until)


def test_the_pages_of_a_sparse_history_hold_every_job_once_newest_first(
    history: dict[str, Any],
) -> None:
    db = history["db"]
    every = [
        row[0]
        for row in db.execute(
            "SELECT job_id FROM jobs WHERE user_id = %s"
            " ORDER BY job_id_version(job_id) = 7 DESC,"
            " CASE WHEN job_id_version(job_id) = 7 THEN job_id END DESC, created_at DESC",
            [history["sparse"]],
        )
    ]
    assert len(every) == len(SPARSE_HOURS_BACK) + 2
    for examine in (PAGE_READS_AT_MOST, None):
        shown: list[UUID] = []
        after: JobPosition | None = None
        while page := job_page(db, history["sparse"], JobFilter(), 2, after, examine).jobs:
            shown += [job.job_id for job in page]
            after = JobPosition(page[-1].created_at, page[-1].job_id)
        assert shown == every, examine
    # A page bounded by since and until reads its windows within them.
    now = datetime.now(UTC)
    filters = JobFilter(since=now - timedelta(hours=30), until=now - timedelta(hours=1))
    bounded = job_page(db, history["sparse"], filters, 10)
    assert [job.job_id for job in bounded.jobs] == every[1:4]


def test_the_windows_of_a_page_share_its_bound_of_jobs_read(
    history: dict[str, Any],
) -> None:
    """1,200 dashboard jobs over 13 hours, then one system job: a page of system jobs reads
    the 1,000 newest, over four windows, and stops at the thousandth; the next page goes on
    from there and finds it."""
    db = history["db"]
    user, dashboard = history["one_system"], history["dashboard"]
    system = JobFilter(source="system")
    first = job_page(db, user, system, 20)
    assert first.jobs == [] and first.read_up_to is not None
    assert first.read_up_to.job_id == dashboard[PAGE_READS_AT_MOST - 1]
    second = job_page(db, user, system, 20, first.read_up_to)
    assert [job.source for job in second.jobs] == ["system"] and second.read_up_to is None


def test_the_windows_cover_the_filters_moments_once_newest_first() -> None:
    now = datetime.now(UTC)
    cursor = JobPosition(now - timedelta(hours=3), UUID(int=1))
    for filters, after, newest in [
        (JobFilter(), None, now + AHEAD_OF_NOW),
        (JobFilter(), cursor, now + AHEAD_OF_NOW),
        (JobFilter(since=now - timedelta(hours=6)), None, now + AHEAD_OF_NOW),
        (JobFilter(until=now - timedelta(days=2)), None, now - timedelta(days=2)),
        (JobFilter(until=now + timedelta(days=3)), None, now + AHEAD_OF_NOW),
        (JobFilter(since=now - timedelta(days=3), until=now + timedelta(days=3)), cursor, None),
    ]:
        windows = list(history_windows(filters, after))
        bounds = [(window.since, window.until) for window in windows]
        assert windows[0].until is not None and bounds[-1][0] == filters.since, bounds
        assert abs(windows[0].until - (newest or now + AHEAD_OF_NOW)) < timedelta(seconds=5)
        for newer, older in itertools.pairwise(windows):
            assert newer.since is not None and newer.until is not None, bounds
            assert older.until == newer.since < newer.until, bounds
        # The first window starts an hour back from the newest moment the page may show.
        if windows[0].since is not None and after is not None:
            assert windows[0].since == after.created_at - FIRST_WINDOW
        assert windows[-1].until is not None
        assert filters.since is None or filters.since < windows[-1].until, bounds
