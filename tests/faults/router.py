"""A platform's router in front of two releases: clients connect to it, it relays to one of them.

Render (or any platform that deploys without downtime) sends each new connection to the
instance in service and moves new connections to the new instance once its health check
passes, while the old one finishes what it holds; only then is the old one stopped. Router
does that on loopback: each accepted connection is relayed, byte for byte, to the upstream in
service when it was accepted, and switch() changes that upstream for the connections after.
The fault clients open a connection per request, so a switch moves the very next request.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

from devtools.ports import HOST

RELAY_CHUNK = 65536
# A relay wakes this often to notice that the router is closing.
RELAY_POLL_S = 0.5


class Router:
    """Relays connections on its own loopback port to the upstream in service."""

    def __init__(self, upstream_url: str) -> None:
        self._listener = socket.create_server((HOST, 0), backlog=256)
        self.url = f"http://{HOST}:{self._listener.getsockname()[1]}"
        self._upstream = upstream_url
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # Connections relayed to each upstream so far, and those still open.
        self.relayed: Counter[str] = Counter()
        self._open: Counter[str] = Counter()
        # Connections accepted whose upstream refused them (closed at once, no answer).
        self.refused: Counter[str] = Counter()
        self._acceptor = threading.Thread(target=self._accept, name="router", daemon=True)

    def start(self) -> Router:
        """Start accepting connections."""
        self._acceptor.start()
        return self

    def switch(self, upstream_url: str) -> None:
        """Relay the connections accepted from now on to `upstream_url`."""
        with self._lock:
            self._upstream = upstream_url

    def open_to(self, upstream_url: str) -> int:
        """How many connections to `upstream_url` are still open."""
        with self._lock:
            return self._open[upstream_url]

    def wait_drained(self, upstream_url: str, timeout_s: float) -> bool:
        """Wait until no connection to `upstream_url` is open; whether that came in time."""
        deadline = time.monotonic() + timeout_s
        while self.open_to(upstream_url):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Stop accepting; the open relays end within RELAY_POLL_S."""
        self._closing.set()
        self._listener.close()
        self._acceptor.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                upstream = self._upstream
                self.relayed[upstream] += 1
                self._open[upstream] += 1
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream_url: str) -> None:
        address = urlsplit(upstream_url)
        try:
            with client:
                try:
                    server = socket.create_connection((address.hostname, address.port), timeout=5)
                except OSError:
                    with self._lock:
                        self.refused[upstream_url] += 1
                    return
                with server:
                    _pump(client, server, self._closing)
        finally:
            with self._lock:
                self._open[upstream_url] -= 1


def _pump(client: socket.socket, server: socket.socket, closing: threading.Event) -> None:
    """Copy bytes both ways until either side closes (or resets) its connection."""
    peers = {client: server, server: client}
    while not closing.is_set():
        readable, _, _ = select.select(list(peers), [], [], RELAY_POLL_S)
        for sock in readable:
            try:
                data = sock.recv(RELAY_CHUNK)
            except OSError:
                data = b""
            if not data:
                return
            with contextlib.suppress(OSError):
                peers[sock].sendall(data)
