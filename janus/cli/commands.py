"""The commands: each takes the parsed arguments, a database URL and where to print.

Every command opens its own connection to DATABASE_URL and runs in one transaction.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, TextIO

from marshmallow import Schema, ValidationError, fields, validate

from janus import json_text
from janus.admission import ConfigMode, NoActiveConfig
from janus.cli.failures import CommandError, UsageError
from janus.cli.text import aligned_table, moment, one_line, printable
from janus.configs import UnknownVersion, in_force
from janus.db import accounts, configs
from janus.db.history import user_quotas
from janus.quotas import TENANT_QUOTAS_SHOWN, BucketQuota, TenantQuota
from janus.schemas.answers import (
    ActiveConfigSchema,
    ConfigVersionSchema,
    QuotasAnswerSchema,
)
from janus.schemas.requests import ConfigSchema


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
    for line in aligned_table(header, rows, numeric_columns=(3,)):
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
    config = load_config(args.file)
    with accounts.operator_transaction(database_url) as conn:
        version = accounts.activate_config(conn, args.user_id, config)
    print(version, file=out)


def config_show(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the config in force as JSON, as GET /dashboard/config answers it."""
    with accounts.operator_transaction(database_url) as conn:
        active = configs.active_version(conn, args.user_id)
    if active is None:
        raise NoActiveConfig("no active config")
    print(json.dumps(ActiveConfigSchema().dump(in_force(active)), indent=2), file=out)


def config_versions(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the user's config versions newest first, as a table or (--json) as the API does."""
    with accounts.operator_transaction(database_url) as conn:
        page = configs.list_versions(conn, args.user_id, args.limit, None)
    if args.json:
        versions = ConfigVersionSchema(many=True).dump(page)
        print(json.dumps({"versions": versions}, indent=2), file=out)
        return
    header = ("version", "created_at", "activated_at", "active", "paused", "dependencies")
    rows = [
        (
            str(one.version),
            moment(one.created_at),
            moment(one.activated_at),
            "yes" if one.is_active else "",
            # What the version said; "-" when it left the user's pause state as it was.
            {True: "yes", False: "no", None: "-"}[one.config.get("paused")],
            ", ".join(printable(name) for name in one.config["dependencies"]) or "-",
        )
        for one in page
    ]
    for line in aligned_table(header, rows, numeric_columns=(0,)):
        print(line, file=out)


def config_activate(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Make a stored version the active one again (a rollback), as it is; print it."""
    try:
        with accounts.operator_transaction(database_url) as conn:
            stored = configs.roll_back(conn, args.user_id, args.version)
    except UnknownVersion:
        raise CommandError(f"the user has no config version {args.version}") from None
    print(f"config version {stored.version} is active", file=out)


def pause(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Pause the user: every job is refused with 403 until `janus resume`."""
    with accounts.operator_transaction(database_url) as conn:
        since = accounts.set_paused(conn, args.user_id, True)
    print(f"paused since {moment(since)}", file=out)


def resume(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Resume a paused user."""
    with accounts.operator_transaction(database_url) as conn:
        since = accounts.set_paused(conn, args.user_id, False)
    print("not paused" if since is None else f"resumed since {moment(since)}", file=out)


def quotas(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the active config's mode, the user's token buckets as of now, and the tenant
    buckets closest to their limit, as aligned tables or (--json) as JSON.

    When any bucket is adaptive, an `effective/s` column shows the rate each refills at now
    beside its configured `refill/s`; without adaptive buckets the table is as it always was.
    The tenant table follows only when a tenant bucket has a row (a tenant without one is
    full). The JSON is GET /dashboard/quotas's answer.
    """
    with accounts.operator_transaction(database_url) as conn:
        found = user_quotas(conn, args.user_id)
    if found.mode is None:
        raise NoActiveConfig("no active config")
    if args.json:
        print(json_text.dumps(QuotasAnswerSchema().dump(found)), file=out)
        return
    # Said at once: in shadow mode the levels below refuse nothing.
    shadow_note = " (every job is accepted; refusals are only recorded)"
    print(f"mode: {found.mode}{shadow_note if found.mode == ConfigMode.SHADOW else ''}", file=out)
    levels = found.buckets
    adaptive = any(level.adaptive for level in levels)
    header = ("dependency", "capacity", "refill/s", *(["effective/s"] if adaptive else []))
    rows = [
        (
            level.dependency,
            str(level.capacity),
            str(level.refill_per_second),
            *([effective_text(level)] if adaptive else []),
            f"{level.tokens:.2f}",
        )
        for level in levels
    ]
    for line in aligned_table((*header, "tokens now"), rows):
        print(line, file=out)
    if found.tenants:
        print(file=out)
        for line in tenant_table(found.tenants):
            print(line, file=out)


def tenant_table(tenants: list[TenantQuota]) -> list[str]:
    """The tenant buckets as `janus quotas` prints them, closest to their limit first, with a
    last line saying so when only the first TENANT_QUOTAS_SHOWN are shown."""
    header = ("tenant", "dependency", "share", "capacity", "refill/s", "tokens now")
    rows = [
        (
            printable(tenant.tenant_id),
            printable(tenant.dependency),
            str(tenant.share),
            str(tenant.capacity),
            rate_text(tenant.refill_per_second),
            f"{tenant.tokens:.2f}",
        )
        for tenant in tenants
    ]
    lines = aligned_table(header, rows, numeric_columns=(2, 3, 4, 5))
    if len(tenants) >= TENANT_QUOTAS_SHOWN:
        lines.append(f"(the {len(tenants)} closest to their limit; the other tenants are fuller)")
    return lines


def effective_text(level: BucketQuota) -> str:
    """The effective refill as the table shows it: as configured when it is the configured one."""
    if level.effective_refill_per_second == level.refill_per_second:
        return str(level.refill_per_second)
    return rate_text(level.effective_refill_per_second)


def rate_text(rate: Decimal) -> str:
    """A refill rate for a table: 6 significant digits, no trailing zeros (`2.5`, `0.00833333`).

    A recovering rate carries many decimals (it gains a share of the refill per microsecond);
    a person reading the table needs the first few, and a tiny rate must not show as 0.
    """
    with localcontext() as context:
        context.prec = 6
        text = f"{+rate:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class ShownOnlyFields(Schema):
    """What `config show` prints beside the config: where it came from, read-only.

    `config set` takes a shown config as it is: these are checked and left out, so the file is
    stored as the next version whatever version is active by then (a stale one changes nothing).
    """

    version = fields.Integer(strict=True, validate=validate.Range(min=1))
    activated_at = fields.AwareDateTime(allow_none=True)


def load_config(file: str) -> dict[str, Any]:
    """The config in `file` (- for stdin), parsed and validated; UsageError saying what is wrong.

    What `config show` printed is a config too: its ShownOnlyFields are checked and dropped.
    """
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
    shown_only = ShownOnlyFields()
    shown = {name: document.pop(name) for name in shown_only.fields if name in document}
    errors = shown_only.validate(shown)
    try:
        config: dict[str, Any] = ConfigSchema().load(document)
    except ValidationError as error:
        errors = {**errors, **error.normalized_messages()}
    if errors:
        raise UsageError(f"invalid config in {source}: {one_line(errors)}")
    return config
