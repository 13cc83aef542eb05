"""The admin calls: the config with If-Match, its versions and rollback, pause, the buckets,
the job history through every page (short and empty ones too), one job, cancel and retry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from examples import JOB, limits
from janus_client import (
    Conflict,
    JanusClient,
    Job,
    NotFound,
    PreconditionFailed,
)

BATCH = "admin"


def test_the_config_is_written_read_and_guarded_by_if_match(client: JanusClient) -> None:
    with pytest.raises(NotFound, match="no active config"):
        client.get_config()

    first = client.put_config(limits(10))
    read = client.get_config()
    second = client.put_config({**read.config, "min_priority": 3}, if_match=read.version)

    assert (first.version, first.etag, first.paused) == (1, '"1"', False)
    assert read == first and read.config["dependencies"]["openai"]["capacity"] == 10
    assert (second.version, second.config["min_priority"]) == (2, 3)
    with pytest.raises(PreconditionFailed, match='it is "2"'):
        client.put_config(limits(5), if_match=read.version)
    assert client.get_config().version == 2
    assert client.put_config(limits(6), if_match=second.etag).version == 3
    assert client.put_config(limits(7), if_match="*").version == 4


def test_versions_are_listed_newest_first_and_one_is_rolled_back_to(
    client: JanusClient,
) -> None:
    for capacity in (10, 20, 30):
        client.put_config(limits(capacity))

    versions = list(client.config_versions(page_size=1))
    rolled_back = client.activate_config(1)

    assert [version.version for version in versions] == [3, 2, 1]
    assert [version.is_active for version in versions] == [True, False, False]
    assert versions[2].config["dependencies"]["openai"]["capacity"] == 10
    assert (rolled_back.version, rolled_back.etag) == (1, '"1"')
    assert client.get_config().config["dependencies"]["openai"]["capacity"] == 10
    assert [v.version for v in client.config_versions() if v.is_active] == [1]
    with pytest.raises(NotFound):
        client.activate_config(9)


def test_pause_and_resume_are_kept_with_their_history(client: JanusClient) -> None:
    client.put_config(limits(10))

    paused = client.pause()
    again = client.pause()
    resumed = client.resume()

    assert paused.paused and paused.since is not None and again == paused
    assert not resumed.paused and resumed.since is not None and resumed.since > paused.since
    changes = list(client.pause_history(page_size=1))
    assert [(change.paused, change.changed_at) for change in changes] == [
        (False, resumed.since),
        (True, paused.since),
    ]
    assert client.get_config().paused is False


def test_the_buckets_are_read_as_of_now(client: JanusClient) -> None:
    assert client.quotas().mode is None and client.quotas().buckets == []
    client.put_config({**limits(10), "tenant_share": 0.5})

    client.submit(Job("tenant-a", 9, {"openai": 3}), batch_name=BATCH)
    quotas = client.quotas()

    assert quotas.mode == "enforce"
    [bucket] = quotas.buckets
    assert (bucket.dependency, bucket.capacity, bucket.tokens, bucket.adaptive) == (
        "openai",
        10,
        7,
        False,
    )
    [tenant] = quotas.tenant_buckets
    assert (tenant.tenant_id, tenant.share, tenant.capacity, tenant.tokens) == (
        "tenant-a",
        0.5,
        5,
        2,
    )


def test_the_history_is_iterated_newest_first_with_its_filters(client: JanusClient) -> None:
    client.put_config(limits(4))
    started = datetime.now(UTC) - timedelta(seconds=1)
    batch = client.submit_batch(
        [Job(f"tenant-{n % 2}", 5, {"openai": 1}) for n in range(6)], batch_name=BATCH
    )
    other = client.submit(JOB, batch_name="other", source="dashboard")

    every = list(client.jobs(page_size=2))
    rejected = list(client.jobs(status="Rejected", page_size=1))

    assert next(job.job_id for job in every) == other.job_id
    assert {job.job_id for job in every} == {other.job_id, *(r.job_id for r in batch)}
    assert len(rejected) == 3 and {job.reason_code for job in rejected} == {"rate_limit"}
    assert len(list(client.jobs(tenant_id="tenant-0", batch_name=BATCH))) == 3
    assert [job.job_id for job in client.jobs(source="dashboard")] == [other.job_id]
    assert len(list(client.jobs(state="queued", since=started))) == 4
    assert list(client.jobs(until=started)) == []


def test_the_history_follows_short_and_empty_pages_to_the_end(
    client: JanusClient, janus_url: str, api_key: str
) -> None:
    """A page reads at most 1,000 jobs: with 1,100 system jobs newer than the two dashboard
    jobs, the first page of `source=dashboard` is empty and has a next."""
    client.put_config(limits(10))
    older = [client.submit(Job("tenant-a", 5), batch_name=BATCH, source="dashboard") for _ in "ab"]
    for size in (1000, 100):
        client.submit_batch([Job("tenant-a", 5)] * size, batch_name=BATCH).raise_for_rejections()

    first = httpx.get(
        f"{janus_url}/dashboard/jobs",
        params={"source": "dashboard"},
        headers={"Authorization": f"Bearer {api_key}"},
    ).json()
    found = list(client.jobs(source="dashboard"))

    assert first["jobs"] == [] and first["next"] is not None
    assert [job.job_id for job in found] == [job.job_id for job in reversed(older)]


def test_one_job_is_read_cancelled_and_retried(client: JanusClient) -> None:
    client.put_config(limits(10))
    job = client.submit(Job("tenant-a", 5, {"openai": 2}, payload={"order": 17}), batch_name=BATCH)

    assert client.cancel_job(job.job_id) == "cancelled"
    assert client.cancel_job(uuid.UUID(job.job_id)) == "cancelled"
    cancelled = client.get_job(job.job_id)
    assert client.retry_job(job.job_id) == "waiting"
    assert client.get_job(job.job_id).state == "waiting"
    with pytest.raises(Conflict):
        client.retry_job(job.job_id)

    assert (cancelled.state, cancelled.payload, cancelled.actual_costs) == (
        "cancelled",
        {"order": 17},
        {"openai": 0},
    )
    assert cancelled.finished_at is not None and cancelled.attempts == 0
    with pytest.raises(NotFound, match="no job with this id"):
        client.get_job(uuid.uuid4())
    with pytest.raises(NotFound):
        client.cancel_job(uuid.uuid4())


def test_a_running_job_is_not_cancelled_and_a_failed_one_is_retried(
    client: JanusClient,
) -> None:
    client.put_config(limits(10))
    job = client.submit(JOB, batch_name=BATCH)
    [claimed] = client.claim()

    with pytest.raises(Conflict, match="running"):
        client.cancel_job(job.job_id)
    assert client.fail(claimed, "upstream said no", retry=False) == "failed"
    assert client.retry_job(job.job_id) == "waiting"
    [again] = client.claim()

    assert (again.job_id, again.attempt) == (job.job_id, 1)
    assert client.get_job(job.job_id).error is None
