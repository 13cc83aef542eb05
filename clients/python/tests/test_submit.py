"""Submitting: one job, batches and quotes, answered as typed results; a rejection is a
result, a refused job of a batch cannot be missed, and an idempotency key replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import Connect

from examples import JOB, limits
from janus_client import (
    BadRequest,
    Forbidden,
    IdempotencyKeyReused,
    JanusClient,
    Job,
    JobsRejected,
    JobStatus,
)

BATCH = "client-tests"


def test_a_job_accepted_is_a_result_with_its_id(client: JanusClient) -> None:
    client.put_config(limits(10))
    job = Job("tenant-a", 7, {"openai": 2}, payload={"n": 1})

    result = client.submit(job, batch_name=BATCH)

    assert result.status is JobStatus.ACCEPTED and result.accepted and not result.rejected
    assert (result.reason, result.reason_code, result.retry_after) == ("", None, None)
    assert result.raise_for_rejection() is result
    stored = client.get_job(result.job_id)
    assert (stored.source, stored.batch_name, stored.tenant_id) == ("system", BATCH, "tenant-a")
    assert (stored.priority, stored.dependencies, stored.payload) == (7, {"openai": 2}, {"n": 1})
    assert stored.state == "queued"


def test_a_rejection_is_a_result_with_its_code_and_retry_after(client: JanusClient) -> None:
    client.put_config(limits(1, refill=0.5))
    client.submit(JOB, batch_name=BATCH)

    result = client.submit(JOB, batch_name=BATCH)

    assert result.status is JobStatus.REJECTED and result.rejected
    assert result.reason == "dependency 'openai' rate limit exceeded"
    assert result.reason_code == "rate_limit"
    assert result.retry_after is not None and 1 <= result.retry_after <= 2
    with pytest.raises(JobsRejected) as refused:
        result.raise_for_rejection()
    assert refused.value.rejected == [result]
    assert "rate limit exceeded (rate_limit)" in str(refused.value)


def test_a_job_accepted_to_wait_tells_when_it_should_start(client: JanusClient) -> None:
    client.put_config(limits(1, refill=1))
    client.submit(JOB, batch_name=BATCH)
    before = datetime.now(UTC)

    result = client.submit(JOB, batch_name=BATCH, when_limited="wait", max_wait_seconds=60)
    later = Job("tenant-a", 5, run_at=datetime.now(UTC) + timedelta(hours=1))
    scheduled = client.submit(later, batch_name=BATCH)

    assert result.status is JobStatus.WAITING and result.accepted
    assert result.estimated_start is not None and result.estimated_start > before
    assert scheduled.status is JobStatus.WAITING
    assert client.get_job(scheduled.job_id).run_at == later.run_at


def test_jobs_go_through_the_family_asked_for(client: JanusClient) -> None:
    client.put_config(limits(10))

    system = client.submit(JOB, batch_name=BATCH)
    dashboard = client.submit(JOB, batch_name=BATCH, source="dashboard")
    batch = client.submit_batch([JOB], batch_name=BATCH, source="dashboard")

    assert client.get_job(system.job_id).source == "system"
    assert client.get_job(dashboard.job_id).source == "dashboard"
    assert client.get_job(batch[0].job_id).source == "dashboard"


def test_a_partial_batch_puts_its_refused_jobs_in_front(client: JanusClient) -> None:
    client.put_config(limits(3))
    jobs = [JOB, Job("tenant-b", 5, {"openai": 9}), JOB, Job("tenant-a", 5, {"stripe": 1})]

    batch = client.submit_batch(jobs, batch_name=BATCH)

    assert not batch.atomic and not batch.all_accepted and len(batch) == 4
    assert [result.index for result in batch.accepted] == [0, 2]
    assert [(r.index, r.reason_code) for r in batch.rejected] == [
        (1, "over_capacity"),
        (3, "unknown_dependency"),
    ]
    assert [result.status for result in batch] == [
        JobStatus.ACCEPTED,
        JobStatus.REJECTED,
        JobStatus.ACCEPTED,
        JobStatus.REJECTED,
    ]
    with pytest.raises(JobsRejected) as refused:
        batch.raise_for_rejections()
    assert refused.value.rejected == batch.rejected and refused.value.total == 4
    assert str(refused.value).startswith("2 of 4 job(s) rejected: job 1: dependency 'openai'")


def test_a_batch_all_accepted_raises_nothing(client: JanusClient) -> None:
    client.put_config(limits(10))

    for atomic in (False, True):
        batch = client.submit_batch([JOB, JOB], batch_name=BATCH, atomic=atomic)
        assert batch.all_accepted and batch.rejected == [] and batch.atomic is atomic
        assert batch.raise_for_rejections() is batch
        assert {client.get_job(result.job_id).state for result in batch} == {"queued"}


def test_an_atomic_batch_refused_stores_nothing_and_names_what_sank_it(
    client: JanusClient,
) -> None:
    client.put_config(limits(3))

    batch = client.submit_batch(
        [JOB, Job("tenant-a", 5, {"openai": 9})], batch_name=BATCH, atomic=True
    )

    assert batch.atomic and batch.accepted == [] and len(batch.rejected) == 2
    assert batch.reason_code == "over_capacity"
    assert [result.reason for result in batch] == [
        "batch rejected atomically",
        "dependency 'openai' cost 9 exceeds capacity 3",
    ]
    with pytest.raises(JobsRejected):
        batch.raise_for_rejections()
    assert list(client.jobs()) == []


def test_a_quote_tells_what_a_request_would_get_and_takes_nothing(client: JanusClient) -> None:
    client.put_config(limits(2, refill=1))
    one = client.quote(Job("tenant-a", 5, {"openai": 3}), batch_name=BATCH)
    partial = client.quote([JOB, JOB, JOB], batch_name=BATCH)
    atomic = client.quote([JOB, JOB, JOB], batch_name=BATCH, atomic=True)

    assert (one.kind, one.status, one.replayed) == ("single", 429, False)
    assert one[0].reason_code == "over_capacity" and one[0].fits_at is None
    assert (partial.kind, partial.status) == ("partial", 200)
    assert [result.accepted for result in partial] == [True, True, False]
    assert partial.rejected[0].retry_after == 1 and partial.rejected[0].fits_at is not None
    assert (atomic.kind, atomic.status, atomic.all_accepted) == ("atomic", 207, False)
    assert client.quotas().buckets[0].tokens == 2
    assert list(client.jobs()) == []


def test_an_idempotency_key_given_replays_the_first_answer(client: JanusClient) -> None:
    client.put_config(limits(10))

    first = client.submit(JOB, batch_name=BATCH, idempotency_key="order-17")
    again = client.submit(JOB, batch_name=BATCH, idempotency_key="order-17")
    batch = client.submit_batch([JOB, JOB], batch_name=BATCH, idempotency_key="order-18")
    batch_again = client.submit_batch([JOB, JOB], batch_name=BATCH, idempotency_key="order-18")
    quoted = client.quote(JOB, batch_name=BATCH, idempotency_key="order-17")

    assert (again.job_id, again.replayed, first.replayed) == (first.job_id, True, False)
    assert [r.job_id for r in batch_again] == [r.job_id for r in batch] and batch_again.replayed
    assert quoted.replayed
    assert len(list(client.jobs())) == 3
    with pytest.raises(IdempotencyKeyReused):
        client.submit(Job("tenant-b", 5), batch_name=BATCH, idempotency_key="order-17")


def test_each_call_has_a_key_of_its_own(client: JanusClient) -> None:
    """Without a key given, two calls with the same job are two jobs."""
    client.put_config(limits(10))

    first = client.submit(JOB, batch_name=BATCH)
    second = client.submit(JOB, batch_name=BATCH)

    assert first.job_id != second.job_id and not second.replayed


def test_refusals_of_the_request_itself_are_errors(client: JanusClient) -> None:
    with pytest.raises(Forbidden, match="no active config"):
        client.submit(JOB, batch_name=BATCH)
    client.put_config(limits(10))
    with pytest.raises(BadRequest) as bad:
        client.submit(Job("tenant-a", 11), batch_name=BATCH)
    assert bad.value.status == 400 and "priority" in bad.value.errors
    client.pause()
    with pytest.raises(Forbidden, match="service paused"):
        client.submit_batch([JOB], batch_name=BATCH)


def test_a_user_without_a_key_calls_by_its_id(connect: Connect, keyless_user: str) -> None:
    client = connect(user_id=keyless_user)

    client.put_config(limits(10))

    assert client.submit(JOB, batch_name=BATCH).accepted
    assert client.get_config().version == 1
