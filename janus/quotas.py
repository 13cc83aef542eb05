"""The domain of a user's quotas: each token bucket as of now, the tenant buckets closest to
their limit, and the active config's mode, as GET /dashboard/quotas and `janus quotas` show
them.

The numbers are the database's (the views token_buckets_now and tenant_buckets_now), at a
fixed precision chosen there: janus.db implements `QuotaReader`, and janus.app wires it. This
module knows nothing of HTTP, of the database driver, or of the rest of Janus.
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
# The most tenant buckets a read lists, those closest to their limit: a user may have a bucket
# per tenant and dependency, and the dashboard wants the tenants near their limit.
TENANT_QUOTAS_SHOWN = 100


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


@dataclass(frozen=True)
class TenantQuota:
    """One tenant's bucket of a dependency as of now, under a config that shares buckets.

    Only a bucket some job has taken from has a row; a tenant without one is full.
    """

    dependency: str
    tenant_id: str
    # The tenant's share under the active config; capacity and refill are that share of the
    # dependency's (not rounded: a product of two exact decimals).
    share: Decimal
    capacity: Decimal
    refill_per_second: Decimal
    tokens: Decimal
    # Seconds until full at its refill: 0 when full, None when it never refills.
    full_in_seconds: Decimal | None


@dataclass(frozen=True)
class UserQuotas:
    """A user's quotas as of now, as one read of the database saw them."""

    # The active config's mode, "enforce" or "shadow" (janus.admission.ConfigMode's values);
    # None without an active config (and then there are no buckets either).
    mode: str | None
    # Every bucket, by dependency name.
    buckets: list[BucketQuota]
    # At most TENANT_QUOTAS_SHOWN tenant buckets, closest to their limit first (the smallest
    # part of their capacity left), then by dependency and tenant.
    tenants: list[TenantQuota]


class QuotaReader(Protocol):
    """Whatever reads users' token buckets."""

    def quotas(self, user_id: UUID) -> UserQuotas:
        """The user's mode, buckets and tenant buckets closest to their limit.

        Raises UnknownUser (janus.admission) when there is no such user.
        """
        ...
