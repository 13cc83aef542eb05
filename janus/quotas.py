"""The domain of a user's quotas: each token bucket as of now, as GET /dashboard/quotas and
`janus quotas` show it.

The numbers are the database's (the view token_buckets_now), at a fixed precision chosen
there: janus.db implements `QuotaReader`, and janus.app wires it. This module knows nothing
of HTTP, of the database driver, or of the rest of Janus.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from uuid import UUID

# The precision of the numbers below, in decimal places: tokens are cut (never shown higher
# than they are), full_in_seconds rounded up (never shown sooner), rates rounded.
TOKEN_DECIMALS = 6
RATE_DECIMALS = 9
SECONDS_DECIMALS = 3


@dataclass(frozen=True)
class BucketQuota:
    """One token bucket of a user as of now."""

    dependency: str
    capacity: int
    # As configured, and the rate it refills at now (lower while adaptive refill slows it).
    refill_per_second: Decimal
    effective_refill_per_second: Decimal
    tokens: Decimal
    # Seconds until full at the effective rate of now: 0 when full, None when it never
    # refills. An adaptive bucket recovering its rate may be full sooner.
    full_in_seconds: Decimal | None
    adaptive: bool


class QuotaReader(Protocol):
    """Whatever reads users' token buckets."""

    def quotas(self, user_id: UUID) -> list[BucketQuota]:
        """The user's buckets by dependency name; none without an active config.

        Raises UnknownUser (janus.admission) when there is no such user.
        """
        ...
