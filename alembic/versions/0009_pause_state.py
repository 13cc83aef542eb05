"""A pause belongs to the user and outlives config versions; rollback activates in place.

Revision ID: 0009
Revises: 0008

Until now `paused` lived on each config version, so a new config that left it out un-paused
the user, and a rollback to an older version restored whatever that version said. The
contract says a config that leaves `paused` out keeps the user's current state, so the state
moves to users.paused, and admit_jobs() reads it there (the row it already reads). What a
version said stays on the version (configs.paused, NULL now when it said nothing; versions
stored before this migration said false when they said nothing, and keep saying it).

Every change of the state is recorded in pause_changes: when, to what, and the config
version that made it (NULL for pause and resume), so a user can see when they were paused
and resumed. set_paused() changes and records it; activate_config() calls it only when the
config sets `paused`.

activate_config() is split: the new activate_version() makes any stored version the active
one and brings the buckets to it (the rules are unchanged). A rollback now calls it on the
old version itself, so the version that is active after a rollback to v1 is v1, rather than
a copy of it under a new number.

The users already paused are recorded as paused at the time of this migration: when they
were paused is not known.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE users
            -- Every job of a paused user is refused (403 service paused), whatever config
            -- version is active; set_paused() changes it.
            ADD COLUMN paused boolean NOT NULL DEFAULT false;
        UPDATE users u SET paused = true
          FROM configs c
         WHERE c.user_id = u.user_id AND c.is_active AND c.paused;

        -- What the version said of pausing when it was stored; NULL: it left `paused` out.
        ALTER TABLE configs ALTER COLUMN paused DROP NOT NULL, ALTER COLUMN paused DROP DEFAULT;

        -- Every change of a user's pause state, oldest first by change_id.
        CREATE TABLE pause_changes (
            user_id        uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            change_id      bigint GENERATED ALWAYS AS IDENTITY,
            paused         boolean NOT NULL,
            changed_at     timestamptz NOT NULL DEFAULT now(),
            -- The config version whose `paused` made the change; NULL: pause or resume.
            config_version integer,
            PRIMARY KEY (user_id, change_id),
            FOREIGN KEY (user_id, config_version) REFERENCES configs ON DELETE CASCADE
        );
        INSERT INTO pause_changes (user_id, paused) SELECT user_id, true FROM users WHERE paused;
        """
    )
    execute_sql_file("0009_set_paused.sql")
    execute_sql_file("0009_activate_version.sql")
    execute_sql_file("0009_activate_config.sql")
    execute_sql_file("0009_admit_jobs.sql")


def downgrade() -> None:
    execute_sql_file("0007_admit_jobs.sql")
    execute_sql_file("0007_activate_config.sql")
    op.execute(
        """
        DROP FUNCTION activate_version(uuid, integer);
        DROP FUNCTION set_paused(uuid, boolean, integer);
        DROP TABLE pause_changes;
        -- The pause goes back onto the active version; a version that said nothing said false.
        UPDATE configs c SET paused = u.paused
          FROM users u
         WHERE u.user_id = c.user_id AND c.is_active;
        UPDATE configs SET paused = false WHERE paused IS NULL;
        ALTER TABLE configs ALTER COLUMN paused SET DEFAULT false,
                            ALTER COLUMN paused SET NOT NULL;
        ALTER TABLE users DROP COLUMN paused;
        """
    )
