"""The operator CLI: users, config versions, pause switches and bucket levels, from a shell.

Every command opens its own connection to DATABASE_URL and runs in one transaction. Every
failure is one line on stderr, `janus: error: ...`, with exit status 2 when the command line
or its input is wrong and 1 when the database says no or cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TextIO
from uuid import UUID

from marshmallow import ValidationError, fields, validate

from janus import json_text
from janus.admission import (
    DatabaseRefused,
    DatabaseUnavailable,
    NoActiveConfig,
    NoDecision,
    SchemaMissing,
    UnknownUser,
)
from janus.db import accounts, maintenance
from janus.schemas import MAX_NAME_LENGTH, ConfigSchema, Text
from janus.settings import SettingsError, database_url_from_env

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEMO_USER_NAME = "demo"

# Small on purpose, so the seed API's examples show their documented outcomes by hand: the
# seed's single job (openai 2, stripe 1, priority 8) is accepted twice and the third, sent at
# once, is rejected with "dependency 'openai' rate limit exceeded"; the seed's partial batch
# gives 1 accepted and 1 rejected (stripe cost 5 exceeds capacity 4).
DEMO_CONFIG: dict[str, Any] = {
    "min_priority": 2,
    "priority_reserve": 0.2,
    "unknown_dependencies": "reject",
    "dependencies": {
        "openai": {"capacity": 6, "refill_per_second": 0.5},
        "stripe": {"capacity": 4, "refill_per_second": 1},
    },
}

# The seed API's single-job example, as `janus demo` prints it in a curl line.
DEMO_JOB: dict[str, Any] = {
    "batch_name": "my-batch",
    "tenant_id": "tenant-abc",
    "priority": 8,
    "dependencies": {"openai": 2, "stripe": 1},
    "payload": {"custom_key": "custom_value"},
}


class CommandError(Exception):
    """A failure to report as one line, with the exit status it deserves."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class UsageError(CommandError):
    """The command line or the input it names is wrong; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line through `main`, not usage text and a bare exit."""

    def error(self, message: str) -> NoReturn:
        """Report a bad command line as a UsageError."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _user_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a user id (a UUID)") from None


DEFAULT_REJECTED_RETENTION_DAYS = 7.0


def _retention_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 <= days <= 36_500:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (0 to 36500)")
    return days


_USER_NAME = Text(required=True, validate=validate.Length(min=1, max=MAX_NAME_LENGTH))


def _user_name(text: str) -> str:
    try:
        name: str = _USER_NAME.deserialize(text)
    except ValidationError as error:
        raise argparse.ArgumentTypeError(
            f"invalid user name: {_one_line(error.messages)}"
        ) from None
    return name


# --- Commands: each takes the parsed arguments, a database URL and where to print. ---


def user_create(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Create a user and print only its id, so scripts can capture it."""
    with accounts.operator_transaction(database_url) as conn:
        user_id = accounts.create_user(conn, args.name)
    print(user_id, file=out)


def user_list(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the users (those whose name contains --name, if given) as an aligned table."""
    with accounts.operator_transaction(database_url) as conn:
        users = accounts.list_users(conn, args.name)
    header = ("user_id", "name", "created_at", "config", "paused")
    rows = [
        (
            str(user.user_id),
            # A name with a line break or other control character is shown escaped, quoted.
            user.name if user.name.isprintable() else json.dumps(user.name),
            user.created_at.strftime("%Y-%m-%d %H:%M:%S%z"),
            "-" if user.config_version is None else str(user.config_version),
            "-" if user.paused is None else ("yes" if user.paused else "no"),
        )
        for user in users
    ]
    for line in _aligned_table(header, rows, numeric_columns=(3,)):
        print(line, file=out)


def user_delete(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Delete a user with everything it owns: configs, buckets, jobs and idempotency keys."""
    with accounts.operator_transaction(database_url) as conn:
        owned = accounts.user_holdings(conn, args.user_id)
        if args.yes:
            accounts.delete_user(conn, args.user_id)
    what = (
        f"user {args.user_id} with {owned.jobs} jobs (accepted and rejected, payloads "
        f"included), {owned.config_versions} config versions and {owned.buckets} buckets"
    )
    if not args.yes:
        raise UsageError(f"this deletes {what} for good; run it again with --yes")
    print(f"deleted {what}", file=out)


def config_set(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Validate a config file and activate it as the user's next version; print its number."""
    config = _load_config(args.file)
    with accounts.operator_transaction(database_url) as conn:
        version = accounts.activate_config(conn, args.user_id, config)
    print(version, file=out)


def config_show(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the user's active config as JSON in the contract's shape, with its version."""
    with accounts.operator_transaction(database_url) as conn:
        active = accounts.active_config(conn, args.user_id)
    if active is None:
        raise NoActiveConfig("no active config")
    print(json.dumps({"version": active.version, **active.config}, indent=2), file=out)


def pause(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Pause the user: every job is refused with 403 until `janus resume`."""
    with accounts.operator_transaction(database_url) as conn:
        version = accounts.set_paused(conn, args.user_id, True)
    print(f"paused (config version {version})", file=out)


def resume(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Resume a paused user."""
    with accounts.operator_transaction(database_url) as conn:
        version = accounts.set_paused(conn, args.user_id, False)
    print(f"resumed (config version {version})", file=out)


def quotas(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the user's token buckets as of now, as an aligned table."""
    with accounts.operator_transaction(database_url) as conn:
        levels = accounts.bucket_levels(conn, args.user_id)
    header = ("dependency", "capacity", "refill/s", "tokens now")
    rows = [
        (
            level.dependency,
            str(level.capacity),
            str(level.refill_per_second),
            f"{level.tokens_now:.2f}",
        )
        for level in levels
    ]
    for line in _aligned_table(header, rows):
        print(line, file=out)


def demo(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Make sure the demo user exists with a config; print its id and a curl line to try it."""
    config = ConfigSchema().load(DEMO_CONFIG)
    with accounts.operator_transaction(database_url) as conn:
        accounts.lock_user_name(conn, DEMO_USER_NAME)
        user_id = accounts.find_user_by_name(conn, DEMO_USER_NAME)
        if user_id is None:
            user_id = accounts.create_user(conn, DEMO_USER_NAME)
        # An existing demo config, maybe changed by hand since, is left as it is.
        if accounts.active_config(conn, user_id) is None:
            accounts.activate_config(conn, user_id, config)
    print(f"X-User-ID: {user_id}", file=out)
    print(
        'curl -i -X POST "http://127.0.0.1:${PORT:-8000}/dashboard/jobs"'
        " -H 'Content-Type: application/json'"
        f" -H 'X-User-ID: {user_id}'"
        f" -d '{json.dumps(DEMO_JOB)}'",
        file=out,
    )


def prune(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Delete expired idempotency keys and old rejected jobs; print how many of each."""
    with accounts.operator_transaction(database_url) as conn:
        keys = maintenance.prune_idempotency_keys(conn)
    print(f"pruned {keys} expired idempotency keys", file=out)
    with accounts.operator_transaction(database_url, autocommit=True) as conn:
        jobs = maintenance.prune_rejected_jobs(conn, timedelta(days=args.rejected_days))
    print(f"pruned {jobs} rejected jobs older than {args.rejected_days:g} days", file=out)


def build_parser() -> argparse.ArgumentParser:
    """The command line: `janus user create|list|delete`, `config set|show`, `pause`, ..."""
    parser = _ArgumentParser(
        prog="janus",
        description="Operate Janus: users, configs and quotas. Reads DATABASE_URL.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    user = commands.add_parser("user", help="manage users")
    user_commands = user.add_subparsers(metavar="ACTION", required=True)
    create = user_commands.add_parser("create", help="create a user and print its id")
    create.add_argument("name", metavar="NAME", type=_user_name)
    create.set_defaults(run=user_create)
    list_ = user_commands.add_parser("list", help="list users, oldest first")
    list_.add_argument(
        "--name", metavar="TEXT", help="only users whose name contains TEXT (any case)"
    )
    list_.set_defaults(run=user_list)
    delete = user_commands.add_parser(
        "delete",
        help="delete a user and all it owns (configs, buckets, every job and its payload)",
    )
    delete.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    delete.add_argument("--yes", action="store_true", help="really delete (nothing is kept)")
    delete.set_defaults(run=user_delete)

    config = commands.add_parser("config", help="set or show a user's config")
    config_commands = config.add_subparsers(metavar="ACTION", required=True)
    set_ = config_commands.add_parser(
        "set", help="store and activate a new config version; print its number"
    )
    set_.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    set_.add_argument("file", metavar="FILE", help="the config as JSON, or - for stdin")
    set_.set_defaults(run=config_set)
    show = config_commands.add_parser("show", help="print the active config as JSON")
    show.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    show.set_defaults(run=config_show)

    for name, run, help_text in [
        ("pause", pause, "refuse every job of a user (403 service paused)"),
        ("resume", resume, "admit a paused user's jobs again"),
        ("quotas", quotas, "show a user's token buckets as of now"),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)"
        )
        command.set_defaults(run=run)

    demo_command = commands.add_parser(
        "demo", help="create the demo user and config if missing; print a curl line to try"
    )
    demo_command.set_defaults(run=demo)

    prune_command = commands.add_parser(
        "prune",
        help="delete idempotency keys older than 24 hours and old rejected jobs "
        "(safe to run any time, e.g. daily)",
    )
    prune_command.add_argument(
        "--rejected-days",
        metavar="DAYS",
        type=_retention_days,
        default=DEFAULT_REJECTED_RETENTION_DAYS,
        help="keep rejected jobs this many days (default %(default)s); accepted jobs are kept",
    )
    prune_command.set_defaults(run=prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process's exit status."""
    try:
        args = build_parser().parse_args(argv)
        database_url = database_url_from_env()
        run: Callable[[argparse.Namespace, str, TextIO], None] = args.run
        run(args, database_url, sys.stdout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (`| head`) left; point stdout at /dev/null so the final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (CommandError, SettingsError, NoDecision) as error:
        message, exit_status = _failure(error)
        print(f"janus: error: {message}", file=sys.stderr)
        return exit_status
    return 0


def _failure(error: Exception) -> tuple[str, int]:
    """The one-line message and exit status for an expected failure."""
    match error:
        case CommandError():
            return str(error), error.exit_status
        case SettingsError():
            return str(error), EXIT_USAGE
        case UnknownUser():
            return "unknown user (no Janus user has this id)", EXIT_FAILED
        case NoActiveConfig():
            return "the user has no active config (set one with 'janus config set')", EXIT_FAILED
        case DatabaseUnavailable():
            # The driver's own words (refused, timed out, bad password) say what to fix.
            detail = _one_line(error.detail or str(error))
            return f"database unavailable: {detail}", EXIT_FAILED
        case SchemaMissing():
            detail = _one_line(str(error))
            return f"database error: {detail} (has 'alembic upgrade head' run?)", EXIT_FAILED
        case DatabaseRefused():
            return f"database error: {_one_line(str(error))}", EXIT_FAILED
        case _:
            return _one_line(str(error)), EXIT_FAILED


def _load_config(file: str) -> dict[str, Any]:
    """The config in `file` (- for stdin), parsed and validated; UsageError saying what is wrong."""
    source = "stdin" if file == "-" else file
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror or error}") from None
    try:
        # The API's own strict reading: a duplicate key or NaN is refused here as it is there.
        document = json_text.loads(raw.decode())
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
    except (ValueError, RecursionError) as error:
        raise UsageError(f"{source} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{source} must hold a JSON object, the config")
    try:
        config: dict[str, Any] = ConfigSchema().load(document)
    except ValidationError as error:
        raise UsageError(f"invalid config in {source}: {_one_line(error.messages)}") from None
    return config


def _one_line(messages: Any) -> str:
    """Marshmallow's messages, or any text, as one line: `field.path: message; ...`."""
    if isinstance(messages, str):
        return " ".join(part.strip() for part in messages.splitlines() if part.strip())
    parts = [f"{path}: {text}" if path else text for path, text in _flatten(messages, ())]
    return "; ".join(sorted(parts))


def _flatten(messages: Any, path: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    if isinstance(messages, dict):
        for key, nested in messages.items():
            yield from _flatten(nested, (*path, str(key)))
    elif isinstance(messages, list):
        for nested in messages:
            yield from _flatten(nested, path)
    else:
        yield _render_path(path), str(messages).rstrip(".")


_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_DICT_FIELDS = {
    name for name, field in ConfigSchema().fields.items() if isinstance(field, fields.Dict)
}


def _render_path(path: tuple[str, ...]) -> str:
    """`dependencies.openai.capacity`, with marshmallow's Dict and schema markers folded in."""
    # A Dict field's errors sit under {name: {"key": [...], "value": {...}}}.
    if len(path) >= 3 and path[0] in _DICT_FIELDS and path[2] in ("key", "value"):
        if path[2] == "key":
            return f"{path[0]}: name {_segment(path[1])}"
        path = (path[0], path[1], *path[3:])
    segments = [_segment(part) for part in path if part != "_schema"]
    return ".".join(segments)


def _segment(part: str) -> str:
    # Names come from the input: quote anything odd (ASCII escapes) so the line stays one line.
    return part if _PLAIN_SEGMENT.fullmatch(part) else json.dumps(part)


def _aligned_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric_columns: Sequence[int] | None = None,
) -> list[str]:
    """Columns two spaces apart: numbers right-aligned (all but the first by default)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = set(range(1, len(header)) if numeric_columns is None else numeric_columns)
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
