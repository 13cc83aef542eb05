"""Choosing a TCP port for a server the tests, the bench or the fault scenarios start."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it (a bind to port 0), so callers running at once get different ports.
    It is free when chosen, not reserved: the caller's server is to bind it straight away.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port
