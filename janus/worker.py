"""The gunicorn worker Janus runs in: slow clients cost no thread, errors are JSON.

Janus faces the internet, where a client can open a connection, announce a body and send it
one byte at a time. A sync worker (or a plain gthread one) waits for it as long as the client
likes, so a few such clients hold every worker. Here a worker's main thread reads each request
off the socket as bytes arrive, without blocking, and hands it to a thread only once it is
complete (head and a Content-Length body), so a slow client costs a buffer, not a thread.
A request must arrive within `JANUS_READ_TIMEOUT_S` of the connection turning readable;
otherwise it is answered 408 and its connection closed, before anything is decided.

The few requests handed over before their body is in (chunked bodies, `Expect:
100-continue`, heads too large to judge) are read by the thread against the same deadline
(DeadlineSocket), so even they hold a thread for a bounded time.

gunicorn answers a request it cannot parse (a negative Content-Length, a 9,000-byte header)
itself, with an HTML page; here that answer is the same JSON error body as Janus's own.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import selectors
import socket
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from janus.schemas.answers import ErrorSchema
from janus.settings import Settings

# How often, at most, a worker tells the arbiter it is alive (gunicorn's timeout is 30 s).
NOTIFY_EVERY_S = 1.0
# A response is small (at most a few hundred KiB for a 1000-job batch); a client that does
# not take it in this long has gone.
WRITE_TIMEOUT_S = 30.0


class RequestHeadTimeout(Exception):
    """The request's head did not arrive by its deadline (not an OSError: gunicorn would log
    that as a socket fault)."""


class RequestBodyTimeout(TimeoutError):
    """The request's body did not arrive by its deadline (a TimeoutError, as the app and
    gunicorn's body drain expect from a socket read that timed out)."""


class DeadlineSocket:
    """A client socket whose reads for one request share one deadline.

    `arm(deadline)` starts a request; `raw` is the socket itself, for the main thread's
    non-blocking reads. Everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket, read_timeout_s: float) -> None:
        self.raw = sock
        self.read_timeout_s = read_timeout_s
        # What gunicorn and the poller call on every request, found without __getattr__.
        self.fileno = sock.fileno
        self.setblocking = sock.setblocking
        self.gettimeout = sock.gettimeout
        self.settimeout = sock.settimeout
        self.deadline = 0.0
        # The request whose body is being read, once its head has been.
        self._request: Any = None

    def arm(self, deadline: float) -> None:
        """Start the next request: all of it must be read by `deadline` (time.monotonic())."""
        self.deadline = deadline
        self._request = None

    def reading_body(self, request: Any) -> None:
        """`request`'s head has been read; what is read from now on is its body."""
        self._request = request

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Read like socket.recv, raising a Request*Timeout once the deadline has passed."""
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            self.raw.settimeout(remaining)
            return self.raw.recv(size, flags)
        except TimeoutError:
            if self._request is not None:
                # What is left of the body is unread: the connection cannot carry another
                # request, and the answer says so (Connection: close).
                self._request.must_close = True
                raise RequestBodyTimeout(
                    f"the body did not arrive within {self.read_timeout_s:g} s"
                ) from None
            raise RequestHeadTimeout(
                f"the request did not arrive within {self.read_timeout_s:g} s"
            ) from None

    def sendall(self, data: bytes, flags: int = 0) -> None:
        """Write like socket.sendall, with a write timeout of its own."""
        self._to_write()
        self.raw.sendall(data, flags)

    def send(self, data: bytes, flags: int = 0) -> int:
        """Write like socket.send, with a write timeout of its own."""
        self._to_write()
        return self.raw.send(data, flags)

    def _to_write(self) -> None:
        # settimeout is a system call even when the timeout stays the same, as it does from an
        # answer's head to its body.
        if self.raw.gettimeout() != WRITE_TIMEOUT_S:
            self.raw.settimeout(WRITE_TIMEOUT_S)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


# Heads are read whole before a thread takes them up to this size; gunicorn's own limits
# (4094-byte request line, 100 fields of 8190 bytes) refuse most larger ones.
MAX_BUFFERED_HEAD = 64 * 1024
# Bodies are read whole before a thread takes them up to this size: Janus's own limit (1 MiB,
# answered 413 from the Content-Length alone) and some room.
MAX_BUFFERED_BODY = 1024 * 1024 + 1


def ready_to_serve(buffered: bytes | bytearray) -> bool:
    """Whether a thread can take a request starting with `buffered` without waiting on it.

    True once its head and its Content-Length body are in. Also True for every request whose
    rest a thread must read itself (chunked, `Expect: 100-continue`, oversized) or that
    gunicorn will refuse from its head (a malformed or repeated Content-Length): deciding how
    to parse it stays gunicorn's, this only decides when to start.
    """
    head_end = buffered.find(b"\r\n\r\n")
    if head_end < 0:
        return len(buffered) > MAX_BUFFERED_HEAD
    length: int | None = None
    for line in bytes(buffered[:head_end]).split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or name in (b"transfer-encoding", b"expect"):
            return True
        if name == b"content-length":
            value = value.strip(b" \t")
            if length is not None or not value.isdigit():
                return True
            length = int(value)
    if length is None or length > MAX_BUFFERED_BODY:
        return True
    return len(buffered) - (head_end + 4) >= length


# gunicorn's own errors have Janus's error body too.
ERROR = ErrorSchema()


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answer (util.write_error), as Janus's JSON error body."""
    error = {"title": f"{status_int} {reason}", "description": mesg or reason}
    body = json.dumps(ERROR.dump(error)).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


class JanusWorker(ThreadWorker):
    """gthread, reading requests in the main thread's poller first; JSON error answers."""

    def init_process(self) -> None:
        """Read the deadline and route gunicorn's error answers through the JSON writer."""
        self.read_timeout_s = Settings.from_env().read_timeout_s
        # Connections whose request is still arriving, oldest (earliest deadline) first.
        self.arriving: deque[Any] = deque()
        # gunicorn writes every error answer of its own through this one function.
        util.write_error = write_json_error
        self.notify_every_s = min(NOTIFY_EVERY_S, self.timeout / 4)
        self.notified_at = -math.inf
        super().init_process()

    def notify(self) -> None:
        """Tell the arbiter this worker is alive, at most every `notify_every_s`.

        gthread's loop tells it on every round, each a system call on a file (os.utime); the
        arbiter only needs to hear within its timeout.
        """
        now = time.monotonic()
        if now - self.notified_at >= self.notify_every_s:
            self.notified_at = now
            super().notify()

    def accept(self, listener: socket.socket) -> None:
        """Accept a connection and wait, in the poller, for its first request to arrive."""
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())
        conn.sock = DeadlineSocket(client, self.read_timeout_s)
        self._await_request(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection sends its next request: read it in the poller too, now.

        The connection stays registered, for reading: only its callback changes (no system
        call), and what has arrived is read at once rather than on the poller's next round.
        """
        self.keepalived_conns.remove(conn)
        self._await_request(conn, registered=True)
        self._on_arriving(conn, client)

    def _await_request(self, conn: Any, *, registered: bool = False) -> None:
        # The socket is already non-blocking: TConn made it so when it was accepted, and
        # gunicorn again when it kept it alive.
        conn.sock.arm(time.monotonic() + self.read_timeout_s)
        conn.arrived = bytearray()
        self.arriving.append(conn)
        on_arriving = partial(self._on_arriving, conn)
        if registered:
            self.poller.modify(conn.sock, selectors.EVENT_READ, on_arriving)
        else:
            self.poller.register(conn.sock, selectors.EVENT_READ, on_arriving)

    def _on_arriving(self, conn: Any, client: Any) -> None:
        try:
            data = conn.sock.raw.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data and not conn.arrived:
            # Closed (or reset) before sending anything: nothing to answer.
            self._drop(conn)
            return
        conn.arrived += data
        # A client that stopped sending part-way (half-closed) is answered from what came:
        # gunicorn and the app find the request incomplete and say so.
        if not data or ready_to_serve(conn.arrived):
            self.poller.unregister(client)
            self.arriving.remove(conn)
            conn.data_ready = True
            self.enqueue_req(conn)

    def _drop(self, conn: Any) -> None:
        self.poller.unregister(conn.sock)
        self.arriving.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also answer 408 to the requests that did not arrive by their deadline."""
        super().murder_pending()
        now = time.monotonic()
        while self.arriving and self.arriving[0].sock.deadline <= now:
            conn = self.arriving[0]
            if conn.arrived:
                # Some of a request came: it gets an answer. An idle connection just closes.
                self.log.info("Request timed out from ip=%s", _ip(conn.client))
                with contextlib.suppress(OSError):
                    write_json_error(
                        conn.sock.raw,
                        408,
                        "Request Timeout",
                        f"the request did not arrive within {self.read_timeout_s:g} s",
                    )
            self._drop(conn)

    def handle(self, conn: Any) -> Any:
        """Serve the request read in the poller: the parser starts from the bytes read there."""
        if conn.arrived:
            conn.init()
            conn.parser.unreader.unread(bytes(conn.arrived))
            conn.arrived = bytearray()
        else:
            # A request the client sent right behind the previous one on this connection
            # (pipelined): gunicorn already holds its first bytes, and it gets its own deadline.
            conn.sock.arm(time.monotonic() + self.read_timeout_s)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """Serve a request whose head has been read; any unread body counts to its deadline."""
        conn.sock.reading_body(req)
        return bool(super().handle_request(req, conn))

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer a request that missed its deadline with 408; anything else as gunicorn does."""
        if not isinstance(exc, RequestHeadTimeout):
            super().handle_error(req, client, addr, exc)
            return
        self.log.info("Request timed out from ip=%s", _ip(addr))
        try:
            write_json_error(client, 408, "Request Timeout", str(exc))
        except OSError:
            self.log.debug("Failed to send the 408 answer.")


def _ip(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else ""
