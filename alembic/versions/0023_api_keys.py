"""API keys: credentials per user, scoped and revocable (issue 25).

Revision ID: 0023
Revises: 0022

- api_keys (user_id, key_id, ...): a user's keys, each with a name, its scopes (produce,
  work, admin, read), the SHA-256 of its secret (the secret itself is never stored), when it
  was created and last used, and when it expires and was revoked, if ever. The primary key
  leads with user_id, as every user table's does: a key is always looked up by its user and
  id, which the key's text carries.
- users.keys_since: when the user's first key was created. From then on the user's
  X-User-ID alone is refused; revoking every key does not change that.
- authenticate(), create_api_key(), revoke_api_key(), new.

The previous release reads neither and authenticates as before; users of this release make
keys only once it serves.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

FUNCTIONS = {
    "authenticate": "uuid, text, bytea",
    "create_api_key": "uuid, text, text, text[], bytea, timestamptz, integer",
    "revoke_api_key": "uuid, text",
}


def upgrade() -> None:
    op.execute("ALTER TABLE users ADD COLUMN keys_since timestamptz")
    op.execute(
        """
        CREATE TABLE api_keys (
            user_id       uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            key_id        text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
            name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
            scopes        text[] NOT NULL
                          CHECK (cardinality(scopes) >= 1
                                 AND scopes <@ ARRAY['produce', 'work', 'admin', 'read']),
            secret_sha256 bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
            created_at    timestamptz NOT NULL DEFAULT now(),
            last_used_at  timestamptz,
            expires_at    timestamptz,
            revoked_at    timestamptz,
            PRIMARY KEY (user_id, key_id)
        )
        """
    )
    for function in FUNCTIONS:
        execute_sql_file(f"0023_{function}.sql")


def downgrade() -> None:
    for function, arguments in FUNCTIONS.items():
        op.execute(f"DROP FUNCTION {function}({arguments})")
    op.execute("DROP TABLE api_keys")
    op.execute("ALTER TABLE users DROP COLUMN keys_since")
