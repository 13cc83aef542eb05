"""Users, versioned configs, token buckets, jobs, and the operators' bucket view.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE users (
            user_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- One row per version of a user's admission policy; at most one is active.
        CREATE TABLE configs (
            user_id              uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            version              integer NOT NULL CHECK (version >= 1),
            is_active            boolean NOT NULL DEFAULT false,
            paused               boolean NOT NULL DEFAULT false,
            min_priority         smallint NOT NULL DEFAULT 1 CHECK (min_priority BETWEEN 1 AND 10),
            priority_reserve     numeric NOT NULL DEFAULT 0.2
                                 CHECK (priority_reserve >= 0 AND priority_reserve < 1),
            unknown_dependencies text NOT NULL DEFAULT 'reject'
                                 CHECK (unknown_dependencies IN ('reject', 'allow')),
            created_at           timestamptz NOT NULL DEFAULT now(),
            activated_at         timestamptz,
            PRIMARY KEY (user_id, version)
        );
        CREATE UNIQUE INDEX configs_one_active_per_user ON configs (user_id) WHERE is_active;

        -- The budget of each external dependency in one config version.
        CREATE TABLE config_dependencies (
            user_id           uuid NOT NULL,
            version           integer NOT NULL,
            -- COLLATE "C": dependencies sort by code point, the order locks are taken and
            -- checks are made in, whatever the database's locale.
            dependency        text COLLATE "C" NOT NULL CHECK (length(dependency) BETWEEN 1 AND 100),
            capacity          bigint NOT NULL CHECK (capacity >= 1),
            refill_per_second numeric NOT NULL CHECK (refill_per_second >= 0),
            PRIMARY KEY (user_id, version, dependency),
            FOREIGN KEY (user_id, version) REFERENCES configs ON DELETE CASCADE
        );

        -- One bucket per (user, dependency) of the active config. capacity and refill are
        -- copied from it on activation so that admission reads one locked row per dependency.
        -- tokens is the level as of refilled_at; the view token_buckets_now adds the refill.
        CREATE TABLE token_buckets (
            user_id           uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            dependency        text COLLATE "C" NOT NULL,
            capacity          bigint NOT NULL CHECK (capacity >= 1),
            refill_per_second numeric NOT NULL CHECK (refill_per_second >= 0),
            tokens            numeric NOT NULL CHECK (tokens >= 0 AND tokens <= capacity),
            refilled_at       timestamptz NOT NULL,
            PRIMARY KEY (user_id, dependency)
        );

        CREATE TABLE jobs (
            job_id       uuid PRIMARY KEY,
            user_id      uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            source       text NOT NULL CHECK (source IN ('dashboard', 'system')),
            batch_name   text NOT NULL,
            tenant_id    text NOT NULL,
            priority     smallint NOT NULL CHECK (priority BETWEEN 1 AND 10),
            dependencies jsonb NOT NULL,
            -- json, not jsonb: the payload is handed to workers exactly as it was sent.
            payload      json NOT NULL,
            status       text NOT NULL CHECK (status IN ('Accepted', 'Rejected')),
            reason       text NOT NULL DEFAULT '',
            created_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX jobs_by_user_and_time ON jobs (user_id, created_at);

        CREATE VIEW token_buckets_now AS
        SELECT b.user_id,
               u.name AS user_name,
               b.dependency,
               b.capacity,
               b.refill_per_second,
               least(b.capacity,
                     b.tokens + b.refill_per_second
                                * greatest(0, extract(epoch FROM clock_timestamp() - b.refilled_at))
               ) AS tokens_now,
               b.refilled_at
          FROM token_buckets b
          JOIN users u USING (user_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP VIEW token_buckets_now;
        DROP TABLE jobs, token_buckets, config_dependencies, configs, users;
        """
    )
