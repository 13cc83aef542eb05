"""The Python client of Janus: JanusClient (blocking) and AsyncJanusClient (asyncio), for
producers, admin scripts and workers."""

from janus_client._core import Credentials, RetryPolicy
from janus_client.aio import AsyncJanusClient
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

__all__ = [
    "ActiveConfig",
    "AsyncJanusClient",
    "BadRequest",
    "BatchResult",
    "Bucket",
    "ClaimedJob",
    "Completion",
    "ConfigVersion",
    "Conflict",
    "ConnectionFailed",
    "Credentials",
    "Forbidden",
    "IdempotencyKeyReused",
    "JanusClient",
    "JanusError",
    "JanusHTTPError",
    "Job",
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
]
