"""Retries: a 503 or no answer is sent again, after the Retry-After given, with the same
Idempotency-Key, so a job whose answer was lost is stored once; within bounds of attempts
and time; a 429 never. Faults come from a proxy in front of the real Janus (faults.py)."""

from __future__ import annotations

import socket

import pytest
from conftest import Connect
from faults import Answer, Drop, FaultProxy

from examples import JOB, limits
from janus_client import (
    ConnectionFailed,
    JanusClient,
    RetryPolicy,
    TooManyRequests,
    Unavailable,
)

BATCH = "retries"
BUSY = Answer(503, {"Retry-After": "1"}, {"title": "503 Service Unavailable", "description": "x"})
SHARE = Answer(
    429,
    {"Retry-After": "1"},
    {"title": "429 Too Many Requests", "description": "too many requests of this user at once"},
)


def _keys(proxy: FaultProxy) -> list[str | None]:
    return [seen.headers.get("Idempotency-Key") for seen in proxy.seen]


@pytest.fixture
def through(client: JanusClient, connect: Connect, api_key: str, proxy: FaultProxy) -> JanusClient:
    """The same user's client, through the proxy; the user's config set (10 openai tokens)."""
    client.put_config(limits(10))
    return connect(api_key=api_key, base_url=proxy.url, retry=RetryPolicy(within_s=10))


def test_a_503_is_sent_again_after_its_retry_after_with_the_same_key(
    through: JanusClient, client: JanusClient, proxy: FaultProxy
) -> None:
    proxy.script = [BUSY]

    result = through.submit(JOB, batch_name=BATCH)

    assert result.accepted and not result.replayed
    first, second = proxy.seen
    assert second.at - first.at >= 0.95
    assert _keys(proxy)[0] is not None and _keys(proxy)[0] == _keys(proxy)[1]
    assert [job.job_id for job in client.jobs()] == [result.job_id]


def test_a_job_whose_answer_was_lost_is_stored_once(
    through: JanusClient, client: JanusClient, proxy: FaultProxy
) -> None:
    """Janus decided the first attempt; its answer never came back (a 503 on the way, then a
    dropped connection): the retries are replays of that decision."""
    proxy.script = [
        Answer(503, {"Retry-After": "0"}, after_forwarding=True),
        Drop(after_forwarding=True),
    ]

    result = through.submit(JOB, batch_name=BATCH)
    proxy.script = [Drop(after_forwarding=True)]
    batch = through.submit_batch([JOB, JOB], batch_name=BATCH, atomic=True)

    assert result.replayed and batch.replayed and len(proxy.seen) == 5
    assert len(set(_keys(proxy)[:3])) == 1 and len(set(_keys(proxy)[3:])) == 1
    assert sorted(job.job_id for job in client.jobs()) == sorted(
        [result.job_id, *(r.job_id for r in batch)]
    )


def test_a_dropped_connection_is_sent_again(through: JanusClient, proxy: FaultProxy) -> None:
    proxy.script = [Drop(), Drop()]

    assert through.quotas().buckets[0].capacity == 10
    assert len(proxy.seen) == 3


def test_a_keyed_call_still_being_decided_is_asked_again(
    through: JanusClient, proxy: FaultProxy
) -> None:
    """409: the same key's first attempt is still being decided; the next gets its answer."""
    proxy.script = [Answer(409, {}, {"title": "409 Conflict", "description": "in flight"})]

    assert through.submit(JOB, batch_name=BATCH).accepted
    assert len(proxy.seen) == 2


def test_a_rejection_is_never_sent_again(
    client: JanusClient, connect: Connect, api_key: str, proxy: FaultProxy
) -> None:
    client.put_config(limits(1))
    through = connect(api_key=api_key, base_url=proxy.url)
    through.submit(JOB, batch_name=BATCH)

    assert through.submit(JOB, batch_name=BATCH).rejected
    assert len(proxy.seen) == 2


def test_a_429_of_the_users_share_is_an_error_not_sent_again(
    through: JanusClient, proxy: FaultProxy
) -> None:
    proxy.script = [SHARE, SHARE]

    with pytest.raises(TooManyRequests) as refused:
        through.submit(JOB, batch_name=BATCH)
    with pytest.raises(TooManyRequests):
        list(through.jobs())

    assert refused.value.retry_after == 1 and len(proxy.seen) == 2


def test_retries_stop_at_the_policys_attempts(
    connect: Connect, api_key: str, proxy: FaultProxy
) -> None:
    through = connect(api_key=api_key, base_url=proxy.url, retry=RetryPolicy(max_attempts=3))
    proxy.script = [Answer(503, {"Retry-After": "0"})] * 5

    with pytest.raises(Unavailable) as unavailable:
        through.quotas()

    assert unavailable.value.status == 503 and len(proxy.seen) == 3


def test_a_retry_after_beyond_the_policys_time_is_not_waited_for(
    connect: Connect, api_key: str, proxy: FaultProxy
) -> None:
    through = connect(api_key=api_key, base_url=proxy.url, retry=RetryPolicy(within_s=5))
    proxy.script = [Answer(503, {"Retry-After": "30"})]

    with pytest.raises(Unavailable) as unavailable:
        through.submit(JOB, batch_name=BATCH)

    assert unavailable.value.retry_after == 30 and len(proxy.seen) == 1


def test_no_server_at_all_is_connection_failed(connect: Connect, api_key: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    nowhere = connect(
        api_key=api_key,
        base_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=2, within_s=5),
    )

    with pytest.raises(ConnectionFailed, match="no answer after 2 attempt"):
        nowhere.submit(JOB, batch_name=BATCH)


def test_a_config_put_whose_answer_was_lost_is_not_sent_again(
    through: JanusClient, client: JanusClient, proxy: FaultProxy
) -> None:
    """A second PUT would store a second version: the caller is told, and reads again."""
    proxy.script = [Drop(after_forwarding=True)]

    with pytest.raises(ConnectionFailed):
        through.put_config(limits(20), if_match=1)

    assert len(proxy.seen) == 1
    assert client.get_config().version == 2


def test_a_config_put_refused_with_503_is_sent_again(
    through: JanusClient, proxy: FaultProxy
) -> None:
    """A 503 means nothing was done: sending again is safe for any call."""
    proxy.script = [Answer(503, {"Retry-After": "0"})]

    assert through.put_config(limits(20), if_match=1).version == 2
    assert len(proxy.seen) == 2
