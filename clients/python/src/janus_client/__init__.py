"""The Python client of Janus: JanusClient (blocking) for producers, scripts and workers."""

from janus_client._core import Credentials, RetryPolicy
from janus_client.client import JanusClient
from janus_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    IdempotencyKeyReused,
    JanusError,
    JanusHTTPError,
    LeaseLost,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from janus_client.models import ClaimedJob, Completion

__all__ = [
    "BadRequest",
    "ClaimedJob",
    "Completion",
    "Conflict",
    "ConnectionFailed",
    "Credentials",
    "Forbidden",
    "IdempotencyKeyReused",
    "JanusClient",
    "JanusError",
    "JanusHTTPError",
    "LeaseLost",
    "NotFound",
    "PreconditionFailed",
    "RetryPolicy",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
]
