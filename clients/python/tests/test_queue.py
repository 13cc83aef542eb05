"""The worker's calls: claim, heartbeat, complete (one or many) and fail, and a lost lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from examples import JOB, limits
from janus_client import Completion, JanusClient, Job, LeaseLost

BATCH = "queue"


def test_a_job_is_claimed_heartbeaten_and_completed_with_its_costs(
    client: JanusClient,
) -> None:
    client.put_config(limits(10))
    submitted = client.submit(
        Job("tenant-a", 6, {"openai": 4}, payload={"text": "hello"}), batch_name=BATCH
    )

    assert client.claim(limit=5, tenant_id="tenant-b") == []
    [job] = client.claim(limit=5, lease_seconds=30, batch_name=BATCH, dependencies=["openai"])
    extended = client.heartbeat(job, lease_seconds=600)
    client.complete(job, {"words": 1}, actual_costs={"openai": 1}, upstream_throttled=["openai"])

    assert (job.job_id, job.attempt, job.priority, job.payload) == (
        submitted.job_id,
        1,
        6,
        {"text": "hello"},
    )
    assert extended > job.lease_expires_at
    assert extended > datetime.now(UTC) + timedelta(seconds=500)
    done = client.get_job(job.job_id)
    assert (done.state, done.result, done.actual_costs) == (
        "completed",
        {"words": 1},
        {"openai": 1},
    )
    assert client.quotas().buckets[0].tokens == 9
    assert client.claim() == []


def test_many_jobs_are_completed_in_one_call(client: JanusClient) -> None:
    client.put_config(limits(10))
    client.submit_batch([JOB] * 3, batch_name=BATCH)
    first, second, third = client.claim(limit=3)
    client.complete(third)

    outcomes = client.complete_many(
        [
            Completion(first.job_id, first.lease_token, {"n": 1}),
            Completion(second.job_id, second.lease_token, actual_costs={"openai": 0}),
            Completion(third.job_id, third.lease_token),
        ]
    )

    assert outcomes == ["completed", "completed", "stale_lease"]
    assert {job.state for job in client.jobs()} == {"completed"}


def test_a_failure_sends_the_job_back_until_it_is_failed_for_good(client: JanusClient) -> None:
    client.put_config(limits(10))
    submitted = client.submit(JOB, batch_name=BATCH)
    [job] = client.claim()

    assert client.fail(job, "upstream timed out", retry_after_seconds=1) == "waiting"
    assert client.claim() == []
    waiting = client.get_job(submitted.job_id)
    assert (waiting.state, waiting.error) == ("waiting", "upstream timed out")
    assert waiting.run_at is not None and waiting.run_at > datetime.now(UTC)


def test_a_call_on_a_lost_lease_is_lease_lost(client: JanusClient) -> None:
    client.put_config(limits(10))
    client.submit(JOB, batch_name=BATCH)
    [job] = client.claim()
    client.complete(job)

    with pytest.raises(LeaseLost) as lost:
        client.heartbeat(job)
    with pytest.raises(LeaseLost):
        client.complete(job)
    with pytest.raises(LeaseLost):
        client.fail(job, "too late", retry=False)

    assert lost.value.status == 409
