"""Janus behind PgBouncer in transaction mode, with prepared statements on in it.

One PgBouncer (devtools/pgbouncer.py, `make pgbouncer`) for the session, in front of the
suite's Postgres, with fewer server connections for a database than the service has clients
(gunicorn's WORKERS workers times JANUS_POOL_SIZE): transactions of different clients then
share server connections, as they do in production. The service is started unchanged but for
DATABASE_URL; its settings, which PgBouncer cannot pass on, are the database's (ALTER DATABASE
... SET, as docs/operations.md has them on the role).

The concurrency invariants are tests/test_concurrency.py's own tests, imported here so that
they run again against this module's `server`: no bucket over-admits, an atomic batch is all
or nothing and atomic batches on one bucket queue on its locks (so the locks really do stay
on one server connection), nothing accepted is lost. The Postgres restart through PgBouncer
is the fault scenario `postgres-restart-via-pgbouncer` (tests/faults).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from devtools.pgbouncer import PgBouncer, give_settings_to_database
from tests.support.burst import assert_no_server_error, burst, single, statuses
from tests.support.factories import bucket_tokens
from tests.test_concurrency import (
    SERVER_ENV,
    make_user,
    test_atomic_partial_and_single_requests_mixed_keep_every_bucket_exact,
    test_concurrent_atomic_batches_are_all_or_nothing,
    test_concurrent_atomic_batches_on_one_hot_bucket_queue_instead_of_conflicting,
    test_one_bucket_admits_exactly_its_capacity,
)

pytestmark = pytest.mark.concurrency

__all__ = [
    "test_atomic_partial_and_single_requests_mixed_keep_every_bucket_exact",
    "test_concurrent_atomic_batches_are_all_or_nothing",
    "test_concurrent_atomic_batches_on_one_hot_bucket_queue_instead_of_conflicting",
    "test_one_bucket_admits_exactly_its_capacity",
]

WORKERS = 4
# Server connections per database: half of the service's 4 x 2 clients.
SERVER_CONNECTIONS = 4


@pytest.fixture(scope="session")
def pgbouncer(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the suite's Postgres, for the session."""
    with PgBouncer.start(
        postgres_server_url,
        tmp_path_factory.mktemp("pgbouncer"),
        pool_size=SERVER_CONNECTIONS,
    ) as bouncer:
        yield bouncer


@pytest.fixture
def bouncer_url(database_url: str, pgbouncer: PgBouncer) -> str:
    """This test's database through PgBouncer, holding the service's settings."""
    give_settings_to_database(database_url)
    return pgbouncer.url_for(database_url)


@pytest.fixture
def server(start_gunicorn: Callable[..., Any], bouncer_url: str) -> Any:
    """The service with WORKERS workers, connected through PgBouncer: the `server` of the
    imported tests of tests/test_concurrency.py, with its SERVER_ENV."""
    return start_gunicorn(workers=WORKERS, env={**SERVER_ENV, "DATABASE_URL": bouncer_url})


def pgbouncer_stats(pgbouncer: PgBouncer, database_url: str) -> dict[str, Any]:
    """SHOW STATS's row of this database."""
    name = urlsplit(database_url).path.lstrip("/")
    [row] = [row for row in pgbouncer.show("STATS") if row["database"] == name]
    return row


def test_the_service_prepares_its_statements_through_pgbouncer(
    db: psycopg.Connection, server: Any, pgbouncer: PgBouncer, database_url: str
) -> None:
    """psycopg prepares the hot statements after a few uses, and PgBouncer serves them from
    statements prepared once per server connection: far fewer server parses than binds, over
    a server connection assigned for each transaction."""
    requests = 200
    user_id = make_user(db, {"pool": requests})
    before = pgbouncer_stats(pgbouncer, database_url)

    answers = burst(server.url, user_id, [single(n, {"pool": 1}) for n in range(requests)])

    assert_no_server_error(answers, server)
    assert statuses(answers) == {202: requests}
    assert bucket_tokens(db, user_id, "pool") == 0
    after = pgbouncer_stats(pgbouncer, database_url)
    binds = int(after["total_bind_count"]) - int(before["total_bind_count"])
    server_parses = int(after["total_server_parse_count"]) - int(before["total_server_parse_count"])
    # Transaction mode: a server connection is assigned for each transaction, not held.
    assignments = int(after["total_server_assignment_count"]) - int(
        before["total_server_assignment_count"]
    )
    assert assignments >= requests / 2, after
    assert binds >= requests / 2, after
    assert server_parses <= SERVER_CONNECTIONS * 10, after
