"""`janus keys create|list|revoke`: a user's API keys, from a shell; and `janus user tag`,
how the request log names a user."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import TextIO

from janus.cli.failures import CommandError, UsageError
from janus.cli.text import aligned_table, moment
from janus.db import accounts
from janus.db.keys import create_key, list_keys, revoke_key
from janus.keys import MAX_KEYS, Scope, TooManyKeys, user_tag
from janus.schemas.keys import ApiKeySchema


def keys_create(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Create a key and print only the key itself, so a script can capture it: it is shown
    this once, and only its hash is kept."""
    scopes = tuple(dict.fromkeys(Scope(scope) for scope in args.scope))
    expires_at = None
    if args.expires_in_days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=args.expires_in_days)
    try:
        with accounts.operator_transaction(database_url) as conn:
            key, _ = create_key(conn, args.user_id, args.name, scopes, expires_at)
    except TooManyKeys:
        raise CommandError(
            f"user {args.user_id} already has {MAX_KEYS} keys in force: revoke one first"
        ) from None
    print(key.text, file=out)


def keys_list(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the user's keys, newest first, revoked ones included; never a secret."""
    with accounts.operator_transaction(database_url) as conn:
        keys = list_keys(conn, args.user_id)
    if args.json:
        print(json.dumps({"keys": ApiKeySchema(many=True).dump(keys)}, indent=2), file=out)
        return
    header = ("key_id", "name", "scopes", "created_at", "last_used_at", "expires_at", "revoked")
    rows = [
        (
            key.key_id,
            key.name if key.name.isprintable() else json.dumps(key.name),
            ",".join(scope.value for scope in key.scopes),
            moment(key.created_at),
            moment(key.last_used_at),
            moment(key.expires_at),
            moment(key.revoked_at),
        )
        for key in keys
    ]
    for line in aligned_table(header, rows, numeric_columns=()):
        print(line, file=out)


def keys_revoke(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Revoke a key: refused from its next request on."""
    with accounts.operator_transaction(database_url) as conn:
        revoked = revoke_key(conn, args.user_id, args.key_id)
    if revoked is None:
        raise UsageError(f"user {args.user_id} has no key {args.key_id}")
    said = "revoked" if revoked else "was already revoked"
    print(f"key {args.key_id} of user {args.user_id} {said}", file=out)


def user_tag_command(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Print the user's tag, the `user` of its request log lines (no database needed)."""
    print(user_tag(args.user_id), file=out)
