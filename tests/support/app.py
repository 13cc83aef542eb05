"""The real Janus app in-process, over a real pool, behind Falcon's test client.

Named `app`, not `http`: a module of that name would shadow the standard library's `http`
wherever its directory ends up on `sys.path`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import falcon.testing

from janus.app import create_app
from janus.db.pool import make_pool
from janus.settings import Settings

DASHBOARD = "/dashboard/jobs"
SYSTEM = "/system/jobs"
PREFIXES = (DASHBOARD, SYSTEM)
SINGLE_ROUTES = PREFIXES
PARTIAL_ROUTES = tuple(f"{prefix}/batch" for prefix in PREFIXES)
ATOMIC_ROUTES = tuple(f"{prefix}/batch/atomic" for prefix in PREFIXES)
JOB_ROUTES = SINGLE_ROUTES + PARTIAL_ROUTES + ATOMIC_ROUTES
CONFIG = "/dashboard/config"
# The service token of conftest.py's token_client: as short as JANUS_SERVICE_TOKEN may be (16
# characters), so the boundary is exercised too, and new each session.
SERVICE_TOKEN = "Janus-" + secrets.token_hex(5)


@contextmanager
def serve_app(
    settings: Settings, *, wait_for_database: bool = True
) -> Iterator[falcon.testing.TestClient]:
    """A test client of `create_app(settings, pool)`; the pool is closed on exit. Without
    `wait_for_database` the pool is opened as janus/wsgi.py opens it, connecting in the
    background (a database that is down then answers 503s)."""
    pool = make_pool(settings)
    pool.open(wait=wait_for_database)
    try:
        yield falcon.testing.TestClient(create_app(settings, pool))
    finally:
        pool.close()


def headers_for(user_id: UUID | str, **extra: str) -> dict[str, str]:
    """The headers of an authenticated JSON request."""
    return {"X-User-ID": str(user_id), **extra}


def put_config(client: falcon.testing.TestClient, user_id: UUID | str, body: Any) -> dict[str, Any]:
    """PUT /dashboard/config, which must answer 200; the active config it answers."""
    result = client.simulate_put(CONFIG, json=body, headers=headers_for(user_id))
    assert result.status_code == 200, result.text
    config: dict[str, Any] = result.json
    return config


def post_json(
    client: falcon.testing.TestClient,
    path: str,
    user_id: UUID | str,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> falcon.testing.Result:
    """POST `body` as JSON to `path` as `user_id`."""
    return client.simulate_post(path, json=body, headers=headers_for(user_id, **(headers or {})))
