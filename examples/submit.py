"""The quickstart's producer: submit the seed API's example job three times with the Python
client, and say what Janus decided for each.

    python examples/submit.py

JANUS_URL and JANUS_API_KEY come from the environment: the lines `make run` printed. The demo
config lets two of these jobs run at once and makes the third wait for its tokens, since it
asks to wait rather than be refused (`when_limited="wait"`); `janus-worker
examples.tasks:handle` then runs all three.
"""

from __future__ import annotations

from janus_client import JanusClient, Job, JobStatus

JOBS = 3
SEED_JOB = Job(
    tenant_id="tenant-abc",
    priority=8,
    dependencies={"openai": 2, "stripe": 1},
    payload={"custom_key": "custom_value"},
)


def main() -> None:
    """Submit the jobs and print one line for each."""
    with JanusClient() as janus:
        for _ in range(JOBS):
            # One Idempotency-Key per call, made by the client and sent again on its retries
            # (a 503, a dropped connection): however often it is sent, it is one job.
            result = janus.submit(SEED_JOB, batch_name="my-batch", when_limited="wait")
            if result.status is JobStatus.WAITING:
                print(f"waiting  {result.job_id}: starts about {result.estimated_start}")
            elif result.status is JobStatus.ACCEPTED:
                print(f"accepted {result.job_id}")
            else:  # a rejection is an answer, not an exception: say why, and when to retry
                print(f"rejected: {result.reason} ({result.reason_code}), {result.retry_after}")


if __name__ == "__main__":
    main()
