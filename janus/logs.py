"""Log lines that name their request: a request id per request, written on every line.

The id is the client's `X-Request-ID` when it sent a well-formed one (so its own logs and
Janus's can be joined), a fresh one otherwise; the response echoes it either way. Lines
written outside a request (start-up, the pool's background threads) show `-`.

Two streams: diagnostics on stderr beside gunicorn's own error log, in its layout, at
JANUS_LOG_LEVEL; and the request log on stdout, one JSON object a line per request answered,
whatever the level (as gunicorn's access log would be).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import TextIO

REQUEST_ID_HEADER = "X-Request-ID"
_NO_REQUEST = "-"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}", re.ASCII)

_current: ContextVar[str] = ContextVar("janus_request_id", default=_NO_REQUEST)

# gunicorn's own error-log layout, with the logger's name and the request added.
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] [%(request_id)s] %(name)s: %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"


def request_id_from(header: str | None) -> str:
    """The client's request id when well formed (no spaces or controls), else a new one."""
    if header is not None and _WELL_FORMED.fullmatch(header):
        return header
    return uuid.uuid4().hex


def begin_request(request_id: str) -> object:
    """Make `request_id` the current one; pass the result to `end_request`."""
    return _current.set(request_id)


def end_request(token: object) -> None:
    """Restore the request id that was current before `begin_request`."""
    _current.reset(token)  # type: ignore[arg-type]


def current_request_id() -> str:
    """The current request's id, or `-` outside a request."""
    return _current.get()


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get()
        return True


def configure(level: str) -> None:
    """Send Janus's and its libraries' log lines to stderr, each naming its request, and the
    request log to stdout.

    gunicorn's own loggers keep their handlers; this is the root logger's, which the `janus`,
    `psycopg` and `psycopg.pool` loggers reach.
    """
    _configure_request_log()
    root = logging.getLogger()
    if any(isinstance(f, _RequestIdFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())


# The request log: its own stream (stdout), written without the logging module's records,
# handlers and formatters, which would cost more than the rest of the line on every request.
_request_log: TextIO | None = None
_request_log_lock = threading.Lock()


# The request log's time to the second, and that second since the epoch: its text is made once
# a second rather than on every line.
_second_text: tuple[int, str] = (-1, "")


def request_log_time() -> str:
    """Now in UTC to the millisecond, as the request log writes it:
    datetime.now(UTC).isoformat(timespec="milliseconds") (2026-12-02T05:16:10.791+00:00)."""
    global _second_text
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    cached = _second_text
    if cached[0] != second:
        # isoformat() of a whole second in UTC: 2026-12-02T05:16:10+00:00
        cached = _second_text = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
    return f"{cached[1]}.{nanoseconds // 1_000_000:03d}+00:00"


def request_log_enabled() -> bool:
    """Whether `log_request` writes anything (`configure` has run)."""
    return _request_log is not None


def _json_string(text: str | None) -> str:
    # As json.dumps writes a str (ASCII only) or None.
    return "null" if text is None else encode_basestring_ascii(text)


def log_request(
    *,
    request_id: str | None,
    method: str,
    route: str,
    status: int,
    duration_ms: float,
    user: str | None,
    key_id: str | None,
    jobs: tuple[int, int] | None = None,
) -> None:
    """Write one request's line, one JSON object, ASCII only, in one write: the time, then the
    arguments, and a decided request's jobs as jobs_accepted and jobs_rejected.

    The line is what json.dumps(..., separators=(",", ":")) writes for these fields in this
    order, written out directly: building it through json.dumps cost three times as much.
    """
    stream = _request_log
    if stream is None:
        return
    line = (
        f'{{"time":"{request_log_time()}","request_id":{_json_string(request_id)},'
        f'"method":{_json_string(method)},"route":{_json_string(route)},"status":{status:d},'
        f'"duration_ms":{duration_ms!r},"user":{_json_string(user)},'
        f'"key_id":{_json_string(key_id)}'
    )
    if jobs is not None:
        line += f',"jobs_accepted":{jobs[0]:d},"jobs_rejected":{jobs[1]:d}'
    line += "}\n"
    # As the logging module does: a line that cannot be written (stdout closed, its reader
    # gone) is lost, and the request it describes is answered all the same.
    with _request_log_lock, contextlib.suppress(OSError, ValueError):
        stream.write(line)
        stream.flush()


def _configure_request_log() -> None:
    global _request_log
    _request_log = sys.stdout
