"""Raw HTTP/1.1 on a socket: requests written byte for byte, answers read as sent.

Nothing between the test and the server tidies a request up, so a test can send what only a
real server sees: invalid UTF-8, a Content-Length that lies, chunked framing, odd headers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

from tests.support.answers import JSON, Answer, assert_clear_error
from tests.support.app import SINGLE_ROUTES
from tests.support.bodies import body_with

SOCKET_TIMEOUT_S = 15


class Server(Protocol):
    """A running service, as the gunicorn fixtures give it: its base URL and its log."""

    @property
    def url(self) -> str:
        """Its base URL, http://host:port."""
        ...

    def log(self) -> str:
        """Everything the server wrote so far."""
        ...


def request_bytes(
    path: str,
    headers: Sequence[bytes | str],
    body: bytes = b"",
    *,
    method: str = "POST",
) -> bytes:
    """An HTTP/1.1 request, byte for byte: exactly these headers (and Host, Connection: close)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: janus", b"Connection: close"]
    lines += [header.encode("latin-1") if isinstance(header, str) else header for header in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def length(body: bytes) -> str:
    """The Content-Length header of `body`."""
    return f"Content-Length: {len(body)}"


def chunked(body: bytes, size: int = 7) -> bytes:
    """`body` in chunked transfer coding."""
    chunks = [body[start : start + size] for start in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def parse_response(received: bytes) -> Answer:
    """The final response in `received`, skipping any 100 Continue."""
    while True:
        head, separator, rest = received.partition(b"\r\n\r\n")
        assert separator, received[:2000]
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        if 100 <= status < 200:
            received = rest
            continue
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", len(rest)))
        return Answer(status, headers, rest[:size])


def exchange(server: Server, request: bytes) -> Answer:
    """Send `request`, end our side of the connection, and read the answer until gunicorn closes."""
    address = urlsplit(server.url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), SOCKET_TIMEOUT_S) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return parse_response(received)


def assert_refused(answer: Answer, *statuses: int) -> None:
    """A 4xx with the JSON error shape, whether the app or gunicorn answered it."""
    assert 400 <= answer.status < 500, (answer.status, answer.text[:2000])
    if statuses:
        assert answer.status in statuses, (answer.status, answer.text[:2000])
    assert b"Traceback" not in answer.content
    assert answer.headers.get("content-type", "").startswith(JSON), answer.headers
    assert_clear_error(answer)


def assert_no_traceback(server: Server) -> None:
    """Nothing gunicorn or the app logged was an unhandled error."""
    log = server.log()
    assert "Traceback" not in log, log[-5000:]


def single_body() -> bytes:
    """A valid single-job body, as bytes for the wire."""
    return json.dumps(body_with(SINGLE_ROUTES[0])).encode()


def single_request(*headers: bytes | str) -> bytes:
    """POST /dashboard/jobs of single_body(), with exactly `headers` and its Content-Length."""
    body = single_body()
    return request_bytes("/dashboard/jobs", [*headers, length(body)], body)
