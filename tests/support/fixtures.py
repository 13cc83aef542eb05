"""Users every test module may ask for, besides conftest.py's databases, app and servers.

A pytest plugin: tests/conftest.py registers it (`pytest_plugins`), so a test names these as
it names any fixture. A user only one module needs stays a fixture of that module, under a
name of its own.
"""

from __future__ import annotations

from uuid import UUID

import psycopg
import pytest

from tests.support.factories import CONFIGURED, OPEN_CAPACITY, user_with_config


@pytest.fixture
def open_user(db: psycopg.Connection) -> UUID:
    """A user whose config admits any valid job: huge buckets, unknown dependencies allowed.

    Each of CONFIGURED has a bucket of OPEN_CAPACITY tokens that never refills; any other
    dependency is admitted without one.
    """
    return user_with_config(
        db,
        {name: {"capacity": OPEN_CAPACITY, "refill_per_second": 0} for name in CONFIGURED},
        unknown_dependencies="allow",
    )


@pytest.fixture
def openai_user(db: psycopg.Connection) -> UUID:
    """A user with one bucket, openai, of 1,000 tokens that never refills; nothing else."""
    return user_with_config(db, {"openai": {"capacity": 1000, "refill_per_second": 0}})


@pytest.fixture
def ten_token_user(db: psycopg.Connection) -> UUID:
    """A user with one bucket, openai, of 10 tokens that never refills; nothing else."""
    return user_with_config(db, {"openai": {"capacity": 10, "refill_per_second": 0}})


@pytest.fixture
def seed_once_user(db: psycopg.Connection) -> UUID:
    """A user with room for the seed's single job (openai 2, stripe 1) exactly once: its
    buckets never refill, so the same job sent again is rejected, with no Retry-After."""
    return user_with_config(
        db,
        {
            "openai": {"capacity": 2, "refill_per_second": 0},
            "stripe": {"capacity": 1, "refill_per_second": 0},
        },
    )


# The buckets of `queue_user`: openai never refills, search refills a token a second.
QUEUE_LIMITS = {
    "openai": {"capacity": 100, "refill_per_second": 0},
    "search": {"capacity": 1000, "refill_per_second": 1},
}


@pytest.fixture
def queue_user(db: psycopg.Connection) -> UUID:
    """A user with the buckets of QUEUE_LIMITS, which also admits dependencies without one:
    GET /dashboard/queue's drains of each kind (never, in time, no bucket)."""
    return user_with_config(db, QUEUE_LIMITS, unknown_dependencies="allow")
