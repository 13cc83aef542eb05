"""The client's tests run against a real Janus, over real HTTP: never a mock of it.

They need, in the environment:
- JANUS_URL: where Janus serves;
- JANUS_TEST_USERS: JSON, {"api_keys": [...], "user_ids": [...]}: API keys of fresh users
  (every scope, no config yet), one per test, and ids of fresh users that never had a key;
- JANUS_SERVICE_TOKEN when the service has one (the client reads it from there).
The repository's tests/test_client.py prepares these, starts gunicorn and runs this suite;
clients/python/README.md says how to run it by hand.

Every test that takes `client` runs twice: with JanusClient, and with AsyncJanusClient
driven on an event loop of its own (the `Blocking` wrapper), so both clients' every call and
retry loop meet the same checks.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from faults import FaultProxy, fault_proxy

from janus_client import AsyncJanusClient, JanusClient


def _environment() -> tuple[str, dict[str, list[str]]]:
    url = os.environ.get("JANUS_URL")
    users = os.environ.get("JANUS_TEST_USERS")
    if not url or not users:
        pytest.exit("set JANUS_URL and JANUS_TEST_USERS (see clients/python/tests/conftest.py)", 2)
    return url.rstrip("/"), json.loads(users)


@pytest.fixture(scope="session")
def janus_url() -> str:
    """Where the real Janus serves."""
    return _environment()[0]


@pytest.fixture(scope="session")
def _users() -> dict[str, Iterator[str]]:
    return {kind: iter(values) for kind, values in _environment()[1].items()}


def _fresh(users: dict[str, Iterator[str]], kind: str) -> str:
    found = next(users[kind], None)
    if found is None:
        pytest.fail(f"JANUS_TEST_USERS has too few {kind} for this suite: give more")
    return found


@pytest.fixture
def api_key(_users: dict[str, Iterator[str]]) -> str:
    """An API key, with every scope, of a user of this test's own, with no config yet."""
    return _fresh(_users, "api_keys")


@pytest.fixture
def keyless_user(_users: dict[str, Iterator[str]]) -> str:
    """The id of a user of this test's own that never had an API key."""
    return _fresh(_users, "user_ids")


@pytest.fixture(scope="session")
def portal() -> Iterator[BlockingPortal]:
    """An asyncio event loop in a thread of its own, where the async clients run."""
    with start_blocking_portal("asyncio") as portal:
        yield portal


class Blocking:
    """An AsyncJanusClient driven from the test's thread: each coroutine method is awaited
    on the portal's loop, and each async iterator is drained from it item by item."""

    def __init__(self, portal: BlockingPortal, client: AsyncJanusClient) -> None:
        self._portal = portal
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if inspect.iscoroutinefunction(method):
            return lambda *args, **kwargs: self._portal.call(
                functools.partial(method, *args, **kwargs)
            )
        return lambda *args, **kwargs: self._drain(method(*args, **kwargs))

    def _drain(self, items: AsyncIterator[Any]) -> Iterator[Any]:
        async def following() -> tuple[bool, Any]:
            try:
                return True, await items.__anext__()
            except StopAsyncIteration:
                return False, None

        while True:
            more, item = self._portal.call(following)
            if not more:
                return
            yield item

    def close(self) -> None:
        self._portal.call(self._client.aclose)


Connect = Callable[..., JanusClient]


@pytest.fixture(params=["sync", "async"])
def connect(
    request: pytest.FixtureRequest, portal: BlockingPortal, janus_url: str
) -> Iterator[Connect]:
    """Make clients of the test's kind (JanusClient, or AsyncJanusClient as `Blocking`):
    `connect(api_key=..., base_url=..., retry=...)`; all closed when the test ends."""
    made: list[Any] = []

    def make(**options: Any) -> JanusClient:
        options.setdefault("base_url", janus_url)
        client: Any
        if request.param == "sync":
            client = JanusClient(**options)
        else:
            client = Blocking(portal, AsyncJanusClient(**options))
        made.append(client)
        return cast(JanusClient, client)

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(connect: Connect, api_key: str) -> JanusClient:
    """A client of a fresh user with an API key of every scope and no config yet."""
    return connect(api_key=api_key)


@pytest.fixture
def proxy(janus_url: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of Janus: script its acts, point a client at `proxy.url`."""
    with fault_proxy(janus_url) as proxy:
        yield proxy
