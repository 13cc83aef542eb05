"""PgBouncer in transaction mode in front of a Postgres, for the tests, the fault scenarios
and the bench: the setup docs/operations.md describes for many instances.

`make pgbouncer` (devtools/install_pgbouncer.sh) provides the binary: one on the PATH at
MIN_VERSION or later, else Debian's source built into .venv/pgbouncer. PgBouncer.start()
writes a pgbouncer.ini into a directory of the caller's, starts it on a free port and returns
once it accepts connections; url_for() turns a URL of the Postgres behind it into one
through it. As root, PgBouncer (which refuses root) runs as the embedded Postgres's user.

`python -m devtools.pgbouncer binary` prints the binary's path, or exits 1 without one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from devtools.localdb import ServerUser
from devtools.ports import HOST, free_port
from janus.db.pool import server_settings
from janus.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_BINARY = REPO_ROOT / ".venv" / "pgbouncer" / "bin" / "pgbouncer"
# max_prepared_statements, prepared statements in transaction mode, came in 1.21.
MIN_VERSION = (1, 21)
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
# psycopg keeps up to 100 statements prepared per connection (prepared_max): room for them.
MAX_PREPARED_STATEMENTS = 200
ADMIN_DATABASE = "pgbouncer"


class PgBouncerError(RuntimeError):
    """PgBouncer is missing, or did not start; the message says why."""


def version_of(binary: str | Path) -> tuple[int, int] | None:
    """The (major, minor) version `binary --version` reports; None if it does not run."""
    try:
        output = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"PgBouncer (\d+)\.(\d+)", output)
    return None if match is None else (int(match[1]), int(match[2]))


def find_binary() -> Path:
    """A PgBouncer of MIN_VERSION or later: the PATH's, else the one `make pgbouncer` built."""
    for candidate in (shutil.which("pgbouncer"), LOCAL_BINARY):
        version = None if candidate is None else version_of(candidate)
        if candidate is not None and version is not None and version >= MIN_VERSION:
            return Path(candidate)
    wanted = ".".join(map(str, MIN_VERSION))
    raise PgBouncerError(f"no PgBouncer {wanted} or later: `make pgbouncer` builds one")


def config_text(
    upstream_url: str,
    *,
    port: int,
    workdir: Path,
    pool_size: int,
    max_client_conn: int,
    reserve_pool_size: int = 0,
) -> str:
    """A pgbouncer.ini in transaction mode that sends any database name to the same name on
    `upstream_url`'s server, as its user; clients may log in as anyone (auth_type any)."""
    upstream = urlsplit(upstream_url)
    server = f"host={upstream.hostname or HOST} port={upstream.port or 5432}"
    server += f" user={unquote(upstream.username or 'postgres')}"
    if upstream.password:
        server += f" password={unquote(upstream.password)}"
    return "\n".join(
        [
            "[databases]",
            f"* = {server}",
            "",
            "[pgbouncer]",
            f"listen_addr = {HOST}",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = any",
            f"admin_users = {unquote(upstream.username or 'postgres')}",
            "pool_mode = transaction",
            f"max_prepared_statements = {MAX_PREPARED_STATEMENTS}",
            f"default_pool_size = {pool_size}",
            f"reserve_pool_size = {reserve_pool_size}",
            f"max_client_conn = {max_client_conn}",
            # After Postgres restarts, try logging in again within a second, not 15, and
            # fail a query that waits for a server connection after 5 s, not 120: the
            # service then answers 503 with Retry-After instead of holding the request.
            "server_login_retry = 1",
            "query_wait_timeout = 5",
            # Janus sends its settings in `options`, which PgBouncer cannot pass on: the
            # database (or role) holds them instead (docs/operations.md).
            "ignore_startup_parameters = options",
            f"logfile = {workdir / 'pgbouncer.log'}",
            f"pidfile = {workdir / 'pgbouncer.pid'}",
            "",
        ]
    )


def give_settings_to_database(database_url: str, settings: Settings | None = None) -> None:
    """ALTER DATABASE ... SET the settings Janus sends in `options` (janus.db.pool), which
    PgBouncer cannot pass on: docs/operations.md gives them to the role, the same way.

    New sessions of the database have them; `settings` defaults to Janus's defaults.
    """
    name = urlsplit(database_url).path.lstrip("/")
    chosen = settings or Settings(database_url=database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for setting, value in server_settings(chosen).items():
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
                )
            )


@dataclass
class PgBouncer:
    """A running PgBouncer on 127.0.0.1:`port`; also a context manager that stops it."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @classmethod
    def start(
        cls,
        upstream_url: str,
        workdir: Path,
        *,
        pool_size: int = 10,
        max_client_conn: int = 200,
        reserve_pool_size: int = 0,
    ) -> PgBouncer:
        """Start PgBouncer in front of `upstream_url`'s server, with its files in `workdir`."""
        binary = find_binary()
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "pgbouncer.ini"
        config.write_text(
            config_text(
                upstream_url,
                port=port,
                workdir=workdir,
                pool_size=pool_size,
                max_client_conn=max_client_conn,
                reserve_pool_size=reserve_pool_size,
            ),
            encoding="utf-8",
        )
        user = ServerUser.for_this_process()
        for path in (workdir, config):
            user.give(path)
        if user.uid is not None:
            # PgBouncer's user must reach its binary and its directory.
            for parent in [*workdir.parents, *binary.parents]:
                with contextlib.suppress(OSError):
                    os.chmod(parent, os.stat(parent).st_mode | 0o011)
        process = subprocess.Popen(
            [str(binary), str(config)],
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=user.uid,
            group=user.gid,
            extra_groups=None if user.uid is None else [],
        )
        bouncer = cls(port, process, workdir)
        try:
            bouncer._wait_until_accepting()
        except BaseException:
            bouncer.stop()
            raise
        return bouncer

    def url_for(self, database_url: str) -> str:
        """`database_url` (of the server behind) through this PgBouncer: same user, password
        and database, this host and port."""
        parts = urlsplit(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{HOST}:{self.port}" if credentials else f"{HOST}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """A connection to PgBouncer's admin console (SHOW POOLS, SHOW STATS, ...)."""
        return psycopg.connect(
            host=HOST,
            port=self.port,
            dbname=ADMIN_DATABASE,
            user="postgres",
            autocommit=True,
            prepare_threshold=None,
        )

    def show(self, what: str) -> list[dict[str, Any]]:
        """The rows of the admin console's `SHOW <what>`, as dicts."""
        with self.admin() as conn:
            cursor = conn.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def log(self) -> str:
        """PgBouncer's log so far."""
        with contextlib.suppress(OSError):
            return (self.workdir / "pgbouncer.log").read_text(encoding="utf-8", errors="replace")
        return ""

    def stop(self) -> None:
        """SIGINT (close the connections and exit), then wait; SIGKILL if that never ends."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if (status := self.process.poll()) is not None:
                raise PgBouncerError(f"pgbouncer exited at start ({status}): {self.log()[-2000:]}")
            try:
                with self.admin():
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PgBouncerError(f"pgbouncer did not start: {error}") from None
            time.sleep(POLL_INTERVAL_S)


def main(argv: list[str]) -> int:
    if argv != ["binary"]:
        print("usage: python -m devtools.pgbouncer binary", file=sys.stderr)
        return 2
    try:
        print(find_binary())
    except PgBouncerError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
