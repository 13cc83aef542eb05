"""The Python client of Janus: JanusClient (blocking) and AsyncJanusClient (asyncio), for
producers, admin scripts and workers; and the worker runtime, Worker (threads) and
AsyncWorker (asyncio), with what a handler returns (Done) or raises (Fail,
UpstreamThrottled)."""

from janus_client._core import Credentials, RetryPolicy
from janus_client.aio import AsyncJanusClient
from janus_client.aio_worker import AsyncJobContext, AsyncWorker
from janus_client.client import JanusClient
from janus_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    IdempotencyKeyReused,
    JanusError,
    JanusHTTPError,
    JobsRejected,
    LeaseLost,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from janus_client.handlers import Done, Fail, UpstreamThrottled
from janus_client.models import ClaimedJob, Completion, Job
from janus_client.records import (
    ActiveConfig,
    Bucket,
    ConfigVersion,
    JobDetail,
    JobRecord,
    PauseChange,
    PauseState,
    Quotas,
    TenantBucket,
)
from janus_client.results import BatchResult, JobResult, JobStatus, Quote, QuotedJob
from janus_client.worker import JobContext, Worker

__all__ = [
    "ActiveConfig",
    "AsyncJanusClient",
    "AsyncJobContext",
    "AsyncWorker",
    "BadRequest",
    "BatchResult",
    "Bucket",
    "ClaimedJob",
    "Completion",
    "ConfigVersion",
    "Conflict",
    "ConnectionFailed",
    "Credentials",
    "Done",
    "Fail",
    "Forbidden",
    "IdempotencyKeyReused",
    "JanusClient",
    "JanusError",
    "JanusHTTPError",
    "Job",
    "JobContext",
    "JobDetail",
    "JobRecord",
    "JobResult",
    "JobStatus",
    "JobsRejected",
    "LeaseLost",
    "NotFound",
    "PauseChange",
    "PauseState",
    "PreconditionFailed",
    "Quotas",
    "Quote",
    "QuotedJob",
    "RetryPolicy",
    "TenantBucket",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UpstreamThrottled",
    "Worker",
]
