"""`janus demo`, what `make run` runs before serving: the demo user, its config, a fresh API
key, and lines ready to paste into a second shell."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any, TextIO

from janus.cli.failures import CommandError
from janus.db import accounts
from janus.db.keys import create_key, list_keys, revoke_key
from janus.keys import MAX_KEYS, Scope, TooManyKeys
from janus.openapi.examples import SEED_JOB
from janus.schemas.requests import ConfigSchema

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

# What the quickstart does with the key: submit, work the queue and watch on the dashboard.
# Not `admin`: a key pasted into shells and handed to a worker should not change the rules.
DEMO_KEY_SCOPES = (Scope.PRODUCE, Scope.WORK, Scope.READ)
DEMO_KEY_NAME = "demo (make run)"
# Only a key's hash is kept, so each run makes a new key. The last few stay good, so shells
# that pasted an earlier run's lines keep working across restarts; older ones are revoked, so
# restarts never fill the user's MAX_KEYS.
DEMO_KEYS_KEPT = 5


def service_url() -> str:
    """Where `make run` serves: loopback, on PORT as gunicorn.conf.py binds it."""
    return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"


def demo(args: argparse.Namespace, database_url: str, out: TextIO) -> None:
    """Make sure the demo user exists with a config, give it a new key, and print shell lines
    that export the service's URL and the key, then a curl line that uses them."""
    config = ConfigSchema().load(DEMO_CONFIG)
    with accounts.operator_transaction(database_url) as conn:
        accounts.lock_user_name(conn, DEMO_USER_NAME)
        user_id = accounts.find_user_by_name(conn, DEMO_USER_NAME)
        if user_id is None:
            user_id = accounts.create_user(conn, DEMO_USER_NAME)
        # An existing demo config, maybe changed by hand since, is left as it is.
        if accounts.active_config(conn, user_id) is None:
            accounts.activate_config(conn, user_id, config)
        earlier = [
            key.key_id
            for key in list_keys(conn, user_id)
            if key.name == DEMO_KEY_NAME and key.revoked_at is None
        ]
        for key_id in earlier[DEMO_KEYS_KEPT - 1 :]:
            revoke_key(conn, user_id, key_id)
        try:
            key, _ = create_key(conn, user_id, DEMO_KEY_NAME, DEMO_KEY_SCOPES, None)
        except TooManyKeys:
            raise CommandError(
                f"the demo user {user_id} already has {MAX_KEYS} keys in force: revoke one"
            ) from None
    url = service_url()
    scopes = ", ".join(DEMO_KEY_SCOPES)
    lines = [
        f"# The demo user ({user_id}) and a new API key of it ({scopes}).",
        "# Paste these lines into a second shell; the client and janus-worker read both:",
        f"export JANUS_URL={shlex.quote(url)}",
        f"export JANUS_API_KEY={shlex.quote(key.text)}",
        "# The seed API's example job: sent three times in a row, 202, 202, then 429.",
        'curl -i -X POST "$JANUS_URL/dashboard/jobs" -H "Authorization: Bearer $JANUS_API_KEY"'
        f" -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(SEED_JOB))}",
        f"# The dashboard: {url}/ (sign in with the key).",
    ]
    print("\n".join(lines), file=out)
