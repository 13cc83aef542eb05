"""A fault-injecting HTTP proxy in front of the real Janus, from the standard library alone.

Janus itself never answers 503 or drops a connection on cue, so the retry tests put this
between the client and Janus: each request is handled by the next act of a script (answer
it alone, forward it and lose the answer, drop the connection, ...), then by plain
forwarding. It records every request it got, with its headers and when it arrived, so a
test can check what the client sent on each attempt.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Hop-by-hop headers: never passed on.
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@dataclass(frozen=True)
class Answer:
    """Answer the request alone, without Janus: `status`, `headers`, `body` (JSON)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    # Pass the request to Janus first (its decision is made), and throw its answer away.
    after_forwarding: bool = False


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer, after passing the request on or not."""

    after_forwarding: bool = False


FORWARD = None


@dataclass(frozen=True)
class Seen:
    """A request the proxy got."""

    method: str
    path: str
    headers: dict[str, str]
    at: float


class FaultProxy:
    """The proxy's script and record; `url` is where clients reach it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.script: list[Answer | Drop | None] = []
        self.seen: list[Seen] = []
        self.url = ""
        self._lock = threading.Lock()

    def next_act(self, seen: Seen) -> Answer | Drop | None:
        with self._lock:
            self.seen.append(seen)
            return self.script.pop(0) if self.script else FORWARD

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Janus's answer to the request."""
        connection = http.client.HTTPConnection(self.upstream.netloc, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            act = proxy.next_act(Seen(self.command, self.path, headers, time.monotonic()))
            forwards = act is FORWARD or act.after_forwarding
            answer = proxy.forward(self.command, self.path, headers, body) if forwards else None
            if isinstance(act, Drop):
                self.close_connection = True
                return
            if isinstance(act, Answer):
                text = b"" if act.body is None else json.dumps(act.body).encode()
                kind = {"Content-Type": "application/json"} if text else {}
                answer = (act.status, [*{**kind, **act.headers}.items()], text)
            assert answer is not None
            status, answer_headers, text = answer
            self.send_response(status)
            for name, value in answer_headers:
                if name.lower() not in _HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        do_GET = do_POST = do_PUT = _any

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads `proxy.seen`."""

    return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of `upstream`, serving on a free loopback port until the end."""
    proxy = FaultProxy(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
