"""Why a job was rejected, as a code for machines beside the contract's words for people.

admit_jobs() (janus/db/sql/admit_jobs.sql) returns one of these codes with each rejection,
and jobs.reason_code holds it, checked against the same closed set. Metrics, filters and
dashboards read the code, never the words, so rewording a reason moves nothing.

This module imports nothing: janus.admission and janus.history, which import no other Janus
module, both name it.
"""

from __future__ import annotations

from enum import Enum


class ReasonCode(str, Enum):
    """The code of a rejection; beside each, the reason's words in the contract."""

    MIN_PRIORITY = "min_priority"  # priority too low
    UNKNOWN_DEPENDENCY = "unknown_dependency"  # dependency 'NAME' is not configured
    OVER_CAPACITY = "over_capacity"  # dependency 'NAME' cost K exceeds capacity C
    # dependency 'NAME' rate limit exceeded: too few tokens, the priority reserve included
    RATE_LIMIT = "rate_limit"
    TENANT_SHARE = "tenant_share"  # tenant 'T' exceeded its share of dependency 'NAME'
    ATOMIC_BATCH = "atomic_batch"  # batch rejected atomically
    # A code this version of Janus does not know: one a newer admit_jobs() gives while a
    # deploy replaces it. Never given by this version's SQL, never stored by it.
    OTHER = "other"


# The response header that carries the code where the seed's body has no room for it: a single
# job's 429 and an atomic batch's 207.
REASON_CODE_HEADER = "Janus-Reason-Code"

# The codes the database gives and stores: jobs.reason_code's CHECK (is_reason_code()).
STORED_CODES = frozenset(ReasonCode) - {ReasonCode.OTHER}


def reason_code_of(value: str | None) -> ReasonCode | None:
    """The ReasonCode a database value names: None for None (an accepted job), OTHER for a
    code newer than this version."""
    if value is None:
        return None
    try:
        return ReasonCode(value)
    except ValueError:
        return ReasonCode.OTHER
