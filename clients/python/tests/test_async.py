"""AsyncJanusClient as asyncio code uses it: `async with`, calls awaited side by side on one
client's connections, and `async for` over the listings. (Every other test runs it too,
through conftest's Blocking.)"""

from __future__ import annotations

import asyncio

import pytest

from examples import JOB, limits
from janus_client import AsyncJanusClient, Job, JobsRejected

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_many_jobs_are_submitted_side_by_side(janus_url: str, api_key: str) -> None:
    async with AsyncJanusClient(janus_url, api_key=api_key) as client:
        await client.put_config(limits(20))

        results = await asyncio.gather(*(client.submit(JOB, batch_name="async") for _ in range(25)))
        listed = [job.job_id async for job in client.jobs(page_size=7)]

    assert sum(result.accepted for result in results) == 20
    assert {result.reason_code for result in results if result.rejected} == {"rate_limit"}
    assert sorted(listed) == sorted(result.job_id for result in results)


async def test_the_listings_are_async_iterators(janus_url: str, api_key: str) -> None:
    async with AsyncJanusClient(janus_url, api_key=api_key) as client:
        for capacity in (1, 2):
            await client.put_config(limits(capacity))
        await client.pause()
        await client.resume()
        batch = await client.submit_batch([JOB, Job("t", 5, {"openai": 5})], batch_name="async")

        versions = [version.version async for version in client.config_versions(page_size=1)]
        changes = [change.paused async for change in client.pause_history()]

    assert versions == [2, 1] and changes == [False, True]
    with pytest.raises(JobsRejected, match="1 of 2"):
        batch.raise_for_rejections()
