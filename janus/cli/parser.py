"""The command line: `janus user create|list|delete`, `config set|show`, `pause`, ..."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn
from uuid import UUID

from marshmallow import ValidationError, validate

from janus.cli.commands import (
    config_activate,
    config_set,
    config_show,
    config_versions,
    pause,
    quotas,
    resume,
    user_create,
    user_delete,
    user_list,
)
from janus.cli.demo import demo
from janus.cli.failures import UsageError
from janus.cli.jobs import jobs, jobs_cancel, jobs_retry
from janus.cli.keys import keys_create, keys_list, keys_revoke, user_tag_command
from janus.cli.maintain import maintain_arguments
from janus.cli.prune import prune_arguments
from janus.cli.text import one_line
from janus.history import SOURCES, STATES, STATUSES
from janus.keys import KEY_ID_HEX, MAX_NAME_CHARS, SCOPES
from janus.queue import RETRYABLE_STATES
from janus.schemas.fields import MAX_NAME_LENGTH, Text


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


def _job_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a UUID)") from None


DEFAULT_JOBS_SHOWN = 50
MAX_JOBS_SHOWN = 10_000


def _version(text: str) -> int:
    if not text.isascii() or not text.isdecimal() or not 1 <= int(text) <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a config version (a number from 1)")
    return int(text)


def _job_limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_JOBS_SHOWN:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of jobs (1 to {MAX_JOBS_SHOWN})"
        )
    return limit


_USER_NAME = Text(required=True, validate=validate.Length(min=1, max=MAX_NAME_LENGTH))


def _user_name(text: str) -> str:
    try:
        name: str = _USER_NAME.deserialize(text)
    except ValidationError as error:
        raise argparse.ArgumentTypeError(f"invalid user name: {one_line(error.messages)}") from None
    return name


def _job_filters(command: argparse.ArgumentParser) -> None:
    """The filters `janus jobs list`, `cancel` and `retry` share with GET /dashboard/jobs."""
    command.add_argument("--tenant", metavar="TENANT_ID", help="only this tenant's jobs")
    command.add_argument("--batch", metavar="BATCH_NAME", help="only this batch's jobs")
    command.add_argument(
        "--source", choices=SOURCES, help="only jobs submitted through this family of routes"
    )
    command.add_argument(
        "--since",
        metavar="TIME",
        help="only jobs decided at or after TIME (ISO 8601 with a timezone: 2025-01-31T09:00Z)",
    )
    command.add_argument(
        "--until", metavar="TIME", help="only jobs decided before TIME (not at it)"
    )


def _job_action_arguments(command: argparse.ArgumentParser, verb: str, states: str) -> None:
    """What `janus jobs cancel` and `retry` take: the user, job ids or filters (or --all), and
    --yes; `states` names the jobs the action takes."""
    command.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    command.add_argument(
        "job_ids", metavar="JOB_ID", type=_job_id, nargs="*", help=f"the jobs to {verb}"
    )
    _job_filters(command)
    command.add_argument(
        "--all", action="store_true", help=f"every {states} job of the user (no filter)"
    )
    command.add_argument(
        "--yes",
        action="store_true",
        help=f"{verb} the jobs the filters match; without it, only count them (a dry run)",
    )


JOBS_ACTIONS = ("list", "cancel", "retry")


def with_jobs_action(argv: Sequence[str]) -> list[str]:
    """The command line with `janus jobs USER_ID ...` read as `janus jobs list USER_ID ...`:
    listing was `janus jobs`'s only use before it had actions, and still works as it did."""
    words = list(argv)
    if len(words) > 1 and words[0] == "jobs" and words[1] not in (*JOBS_ACTIONS, "-h", "--help"):
        words.insert(1, "list")
    return words


def _key_name(text: str) -> str:
    if not 1 <= len(text) <= MAX_NAME_CHARS or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a key name (1 to {MAX_NAME_CHARS} printable characters)"
        )
    return text


def _key_id(text: str) -> str:
    if len(text) != KEY_ID_HEX or not all(c in "0123456789abcdef" for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a key id ({KEY_ID_HEX} hex digits, as `janus keys list` shows)"
        )
    return text


def _expiry_days(text: str) -> int:
    if not text.isascii() or not text.isdecimal() or not 1 <= int(text) <= 3650:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (1 to 3650)")
    return int(text)


def _keys_commands(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    """`janus keys create|list|revoke`."""
    keys = commands.add_parser("keys", help="make, list or revoke a user's API keys")
    actions = keys.add_subparsers(metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="make a key and print it (shown this once: only its hash is kept)"
    )
    create.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    create.add_argument("--name", required=True, type=_key_name, help="what the key is for")
    create.add_argument(
        "--scope",
        required=True,
        action="append",
        choices=[scope.value for scope in SCOPES],
        help="what the key may do; repeat for several (produce, work, read, admin)",
    )
    create.add_argument(
        "--expires-in-days", metavar="DAYS", type=_expiry_days, help="refused after DAYS days"
    )
    create.set_defaults(run=keys_create)
    list_ = actions.add_parser("list", help="list a user's keys, newest first (no secret)")
    list_.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    list_.add_argument("--json", action="store_true", help="print GET /dashboard/keys's JSON")
    list_.set_defaults(run=keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key: refused from its next request on")
    revoke.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    revoke.add_argument("key_id", metavar="KEY_ID", type=_key_id, help="the key's id")
    revoke.set_defaults(run=keys_revoke)


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
    tag = user_commands.add_parser(
        "tag", help="print the user's tag: how the request log names it (never by its id)"
    )
    tag.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    tag.set_defaults(run=user_tag_command)

    config = commands.add_parser(
        "config", help="set, show, list or roll back a user's config versions"
    )
    config_commands = config.add_subparsers(metavar="ACTION", required=True)
    set_ = config_commands.add_parser(
        "set", help="store and activate a new config version; print its number"
    )
    set_.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    set_.add_argument(
        "file",
        metavar="FILE",
        help="the config as JSON, or - for stdin ('config show' output too: its version and"
        " activated_at are left out)",
    )
    set_.set_defaults(run=config_set)
    show = config_commands.add_parser("show", help="print the active config as JSON")
    show.add_argument("user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)")
    show.set_defaults(run=config_show)
    versions = config_commands.add_parser(
        "versions", help="list the config versions, newest first (the active one marked)"
    )
    versions.add_argument(
        "user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)"
    )
    versions.add_argument(
        "--limit",
        metavar="N",
        type=_job_limit,
        default=DEFAULT_JOBS_SHOWN,
        help="show at most N versions, newest first (default %(default)s)",
    )
    versions.add_argument("--json", action="store_true", help="print JSON, as the API answers")
    versions.set_defaults(run=config_versions)
    activate = config_commands.add_parser(
        "activate", help="make an earlier version the active one again (roll back)"
    )
    activate.add_argument(
        "user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)"
    )
    activate.add_argument("version", metavar="VERSION", type=_version, help="a version number")
    activate.set_defaults(run=config_activate)

    for name, run, help_text in [
        ("pause", pause, "refuse every job of a user (403 service paused)"),
        ("resume", resume, "admit a paused user's jobs again"),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)"
        )
        command.set_defaults(run=run)

    quotas_command = commands.add_parser(
        "quotas",
        help="show a user's mode, token buckets and tenant buckets closest to their limit now",
    )
    quotas_command.add_argument(
        "user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)"
    )
    quotas_command.add_argument(
        "--json", action="store_true", help="print GET /dashboard/quotas's JSON instead"
    )
    quotas_command.set_defaults(run=quotas)

    jobs_command = commands.add_parser(
        "jobs",
        help="list a user's newest jobs with their state and attempts (`janus jobs USER_ID`), "
        "cancel queued or waiting ones (`janus jobs cancel`) or retry failed, expired or "
        "cancelled ones (`janus jobs retry`)",
    )
    jobs_actions = jobs_command.add_subparsers(metavar="ACTION", required=True)
    list_command = jobs_actions.add_parser(
        "list", help="list a user's newest jobs (the default: `janus jobs USER_ID` lists)"
    )
    list_command.add_argument(
        "user_id", metavar="USER_ID", type=_user_id, help="the user's id (a UUID)"
    )
    list_command.add_argument("--status", choices=STATUSES, help="only accepted or rejected jobs")
    list_command.add_argument(
        "--state", choices=STATES, help="only jobs in this state (rejected jobs have none)"
    )
    _job_filters(list_command)
    list_command.add_argument(
        "--limit",
        metavar="N",
        type=_job_limit,
        default=DEFAULT_JOBS_SHOWN,
        help="show at most N jobs, newest first (default %(default)s)",
    )
    list_command.add_argument(
        "--json",
        action="store_true",
        help='print one JSON document, {"jobs": [...]}, its items as GET /dashboard/jobs\'s',
    )
    list_command.set_defaults(run=jobs)

    cancel_command = jobs_actions.add_parser(
        "cancel",
        help="cancel queued or waiting jobs, by id or by filter (a dry run unless --yes), "
        "giving back the tokens of those no worker was handed",
    )
    _job_action_arguments(cancel_command, "cancel", "queued or waiting")
    cancel_command.set_defaults(run=jobs_cancel)

    retry_command = jobs_actions.add_parser(
        "retry",
        help="send failed, expired or cancelled jobs back to wait, by id or by filter (a dry "
        "run unless --yes): each is due at once, with a fresh max wait and set of attempts, "
        "and takes its tokens when a claim hands it out",
    )
    _job_action_arguments(retry_command, "retry", "failed, expired or cancelled")
    retry_command.add_argument(
        "--state",
        dest="retry_state",
        choices=RETRYABLE_STATES,
        help="only jobs in this state (default: failed, expired or cancelled)",
    )
    retry_command.set_defaults(run=jobs_retry)

    _keys_commands(commands)

    demo_command = commands.add_parser(
        "demo",
        help="create the demo user and config if missing, and a new API key of it; print "
        "lines for a second shell: JANUS_URL (on $PORT, else 8000), JANUS_API_KEY, a curl line",
    )
    demo_command.set_defaults(run=demo)

    prune_command = commands.add_parser(
        "prune",
        help="delete idempotency keys older than 24 hours, old rejected jobs, completed or "
        "failed jobs past their config's retention_days, and what of each user's rejected "
        "jobs, keys and history is beyond its newest N (safe to run any time, e.g. daily)",
    )
    prune_arguments(prune_command)

    maintain_command = commands.add_parser(
        "maintain",
        help="add the partitions of jobs ahead of need and drop those past the retention "
        "that hold no unfinished job (run every few minutes)",
    )
    maintain_arguments(maintain_command)
    return parser
