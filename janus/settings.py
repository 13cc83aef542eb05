"""Settings, read from the environment once and checked at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta


class SettingsError(Exception):
    """The environment does not describe a runnable Janus; the message says what to fix."""


def normalize_database_url(url: str) -> str:
    """Accept both `postgres://` (Render, Heroku) and `postgresql://` URLs."""
    if url.startswith("postgres://"):
        return "postgresql://" + url.removeprefix("postgres://")
    if not url.startswith("postgresql://"):
        raise SettingsError("DATABASE_URL must start with postgres:// or postgresql://")
    return url


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The normalised DATABASE_URL, or a SettingsError saying it is missing.

    Whether libpq can parse it is checked where Janus connects (janus.db.urls), so that
    settings need no database driver.
    """
    environ = os.environ if environ is None else environ
    url = environ.get("DATABASE_URL", "").strip()
    if not url:
        raise SettingsError("DATABASE_URL is not set (e.g. postgresql://user@host:5432/janus)")
    return normalize_database_url(url)


def sqlalchemy_url(environ: Mapping[str, str] | None = None) -> str:
    """DATABASE_URL in the form SQLAlchemy (and so alembic) needs to use psycopg 3."""
    return "postgresql+psycopg://" + database_url_from_env(environ).removeprefix("postgresql://")


def _int_setting(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level(environ: Mapping[str, str]) -> str:
    raw = environ.get("JANUS_LOG_LEVEL", "").strip().lower() or "info"
    if raw not in LOG_LEVELS:
        raise SettingsError(f"JANUS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw


MIN_SERVICE_TOKEN_LENGTH = 16


def _service_token(environ: Mapping[str, str]) -> str | None:
    raw = environ.get("JANUS_SERVICE_TOKEN", "")
    if raw == "":
        return None
    token = raw.strip()
    if len(token) < MIN_SERVICE_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise SettingsError(
            f"JANUS_SERVICE_TOKEN must be at least {MIN_SERVICE_TOKEN_LENGTH} printable ASCII "
            "characters (e.g. the output of `openssl rand -hex 32`)"
        )
    # A bearer credential that starts so is read as an API key (janus.keys), never a token.
    if token.startswith("janus_"):
        raise SettingsError("JANUS_SERVICE_TOKEN must not start with janus_, as API keys do")
    return token


# JANUS_AUTH: how users are named. "" (unset): by API key, or by X-User-ID alone for a user
# that has never had a key; "keys": by API key only; "user-id": as unset, said on purpose (an
# operator who serves a non-loopback address without keys or a token must say it).
AUTH_MODES = ("", "keys", "user-id")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _auth(environ: Mapping[str, str]) -> str:
    raw = environ.get("JANUS_AUTH", "").strip().lower()
    if raw not in AUTH_MODES:
        raise SettingsError(f"JANUS_AUTH must be keys or user-id (or unset), got {raw!r}")
    return raw


def _user_connections(environ: Mapping[str, str]) -> int | None:
    if (environ.get("JANUS_USER_CONNECTIONS") or "").strip() == "":
        return None
    return _int_setting(environ, "JANUS_USER_CONNECTIONS", 1, 1, 100)


@dataclass(frozen=True)
class JobsPartitioning:
    """How jobs is split by time and forgotten: read by the migration that partitions it,
    `janus maintain` and GET /metrics, none of which needs DATABASE_URL from here."""

    # JANUS_JOBS_PARTITION_MINUTES: the span of time of each partition of jobs.
    span: timedelta = timedelta(hours=1)
    # JANUS_JOBS_RETENTION_MINUTES: how long a partition is kept after its span ends.
    retention: timedelta = timedelta(days=7)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobsPartitioning:
        """Read and check both settings; raise SettingsError naming a bad one."""
        environ = os.environ if environ is None else environ
        span = _int_setting(environ, "JANUS_JOBS_PARTITION_MINUTES", 60, 1, 7 * 24 * 60)
        retention = _int_setting(
            environ, "JANUS_JOBS_RETENTION_MINUTES", 7 * 24 * 60, 1, 10 * 365 * 24 * 60
        )
        return cls(timedelta(minutes=span), timedelta(minutes=retention))

    @property
    def ahead(self) -> timedelta:
        """How far past now the partitions must reach: the next hour, and three spans."""
        return max(timedelta(hours=1), 3 * self.span)


@dataclass(frozen=True)
class Settings:
    """Everything Janus reads from its environment."""

    database_url: str
    max_batch_jobs: int = 1000
    pool_size: int = 2
    # JANUS_USER_CONNECTIONS: the most of a worker's pool one user may hold at once; None:
    # half the pool, at least 1 (user_connections).
    user_connections_setting: int | None = None
    pool_timeout_ms: int = 1500
    statement_timeout_ms: int = 5000
    # A page of GET /dashboard/jobs gives up after this long: well under the admission path's.
    history_statement_timeout_ms: int = 1000
    # A user's reads of its jobs and activity run one at a time, at most this many a second.
    user_reads_per_second: int = 20
    lock_timeout_ms: int = 2000
    conflict_retries: int = 10
    # When set, every route but /health and /health/ready also requires
    # `Authorization: Bearer <token>`.
    service_token: str | None = None
    # JANUS_AUTH (AUTH_MODES): "keys" requires an API key of every user.
    auth: str = ""
    log_level: str = "info"
    # A request's head and body must arrive within this many seconds of its first byte.
    read_timeout_s: int = 10
    # Threads per gunicorn worker: requests served at once, slow clients included.
    threads: int = 16
    # Group admission (janus/grouping.py): the most jobs one group of a user's requests may
    # decide together. A request waits in a group for a connection at most pool_timeout_ms.
    group_max_jobs: int = 1000
    # How jobs is split by time and forgotten (GET /metrics reports what is held past it).
    partitioning: JobsPartitioning = JobsPartitioning()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check the settings; raise SettingsError naming the first bad variable."""
        environ = os.environ if environ is None else environ
        return cls(
            database_url=database_url_from_env(environ),
            max_batch_jobs=_int_setting(environ, "JANUS_MAX_BATCH_JOBS", 1000, 1, 100_000),
            pool_size=_int_setting(environ, "JANUS_POOL_SIZE", 2, 1, 100),
            user_connections_setting=_user_connections(environ),
            pool_timeout_ms=_int_setting(environ, "JANUS_POOL_TIMEOUT_MS", 1500, 100, 60_000),
            statement_timeout_ms=_int_setting(
                environ, "JANUS_STATEMENT_TIMEOUT_MS", 5000, 100, 600_000
            ),
            lock_timeout_ms=_int_setting(environ, "JANUS_LOCK_TIMEOUT_MS", 2000, 10, 600_000),
            history_statement_timeout_ms=_int_setting(
                environ, "JANUS_HISTORY_STATEMENT_TIMEOUT_MS", 1000, 100, 600_000
            ),
            user_reads_per_second=_int_setting(
                environ, "JANUS_USER_READS_PER_SECOND", 20, 1, 10_000
            ),
            conflict_retries=_int_setting(environ, "JANUS_CONFLICT_RETRIES", 10, 0, 50),
            service_token=_service_token(environ),
            auth=_auth(environ),
            log_level=_log_level(environ),
            read_timeout_s=_int_setting(environ, "JANUS_READ_TIMEOUT_S", 10, 1, 600),
            threads=_int_setting(environ, "JANUS_THREADS", 16, 1, 1000),
            group_max_jobs=_int_setting(environ, "JANUS_GROUP_MAX_JOBS", 1000, 1, 100_000),
            partitioning=JobsPartitioning.from_env(environ),
        )

    @property
    def user_connections(self) -> int:
        """The most of a worker's connections one user may hold at once (JANUS_USER_CONNECTIONS,
        never more than the pool): half the pool by default, at least 1."""
        if self.user_connections_setting is None:
            return max(1, self.pool_size // 2)
        return min(self.user_connections_setting, self.pool_size)

    @property
    def keys_required(self) -> bool:
        """Whether every request must carry an API key (JANUS_AUTH=keys)."""
        return self.auth == "keys"

    def check_exposure(self, bind_host: str) -> None:
        """SettingsError unless serving `bind_host` is safe: a loopback address, or keys
        required, or a service token, or JANUS_AUTH=user-id said on purpose. Otherwise anyone
        who can reach the address and learns a user's id would be that user (Redis's
        protected mode refuses the same way)."""
        if (
            bind_host in LOOPBACK_HOSTS
            or self.keys_required
            or self.service_token is not None
            or self.auth == "user-id"
        ):
            return
        raise SettingsError(
            f"refusing to serve {bind_host}, which is not a loopback address, while a user's id"
            " alone is enough to act as that user: set JANUS_AUTH=keys (every request needs an"
            " API key; `janus keys create` makes them), or JANUS_SERVICE_TOKEN, or"
            " JANUS_AUTH=user-id to serve anyway (behind a gateway that authenticates)"
        )
