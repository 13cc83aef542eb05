"""Tenant shares, shadow mode and quotes: configs gain `mode`, `tenant_share`, `tenant_overrides`.

Revision ID: 0011
Revises: 0010

Tenant shares. A config's `tenant_share` s (0 < s <= 1, 1: no limit) and its
`tenant_overrides` {tenant_id: share} give each tenant its own bucket per dependency, of
capacity s x C and refill s x R, in the new table tenant_buckets. A job takes its cost from
the dependency's bucket and from its tenant's, both or neither. A tenant bucket has a row
only once a job has debited it (a missing row is a full bucket), and `janus prune` deletes the
rows that are full again. Its key leads with user_id, then the dependency: its rows go with
their dependency's bucket (ON DELETE CASCADE), and they are locked after it.

Shadow mode. A config's `mode` is `enforce` (the default) or `shadow`: every job is decided as
it would be, then accepted, and jobs.shadow_status and jobs.shadow_reason keep what
enforcement would have decided (NULL for jobs decided in enforce mode).

Quotes. admit_jobs() and admit_jobs_once() take p_quote (default false): decide, but store
nothing and take nothing. They also return shadow_status, shadow_reason and fits_at, a new
return type, so both are dropped and created again; activate_config() takes the three new
settings (a new signature, dropped and created again too), and activate_version() brings the
tenant buckets to the version it activates.

The view tenant_buckets_now shows every tenant bucket's tokens as of now, and
token_buckets_now gains the mode of the user's active config as its last column.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_DROP_ADMISSION = """
    DROP FUNCTION admit_jobs_once(uuid, text, text, text[], smallint[], jsonb[], json[], boolean,
                                  text, bytea{quote});
    DROP FUNCTION admit_jobs(uuid, text, text, text[], smallint[], jsonb[], json[], boolean
                             {quote});
"""
_DROP_ACTIVATE_CONFIG = """
    DROP FUNCTION activate_config(uuid, boolean, smallint, numeric, text, json, integer, integer
                                  {settings});
"""

# token_buckets_now as 0007 created it; the upgrade adds `mode` at the end.
_BUCKETS_VIEW = """
CREATE OR REPLACE VIEW token_buckets_now AS
SELECT b.user_id,
       u.name AS user_name,
       b.dependency,
       b.capacity,
       b.refill_per_second,
       refill_rate(b.refill_per_second, b.effective_refill_per_second,
                   b.adaptive_recovery_per_second, e.elapsed)
           AS effective_refill_per_second,
       least(b.capacity,
             b.tokens + refill_tokens(b.refill_per_second, b.effective_refill_per_second,
                                      b.adaptive_recovery_per_second, e.elapsed)
       ) AS tokens_now,
       b.refilled_at,
       b.adaptive_decrease IS NOT NULL AS adaptive,
       b.throttled_at{mode_column}
  FROM token_buckets b
  JOIN users u USING (user_id){mode_join}
 CROSS JOIN LATERAL (
       SELECT greatest(0, extract(epoch FROM clock_timestamp() - b.refilled_at)) AS elapsed
       ) e;
"""


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE configs
            -- enforce: refuse what does not fit; shadow: decide, record, and accept anyway.
            ADD COLUMN mode text NOT NULL DEFAULT 'enforce'
                CHECK (mode IN ('enforce', 'shadow')),
            -- Each tenant's share of every bucket; 1: tenants are not limited apart.
            ADD COLUMN tenant_share numeric NOT NULL DEFAULT 1
                CHECK (tenant_share > 0 AND tenant_share <= 1),
            -- {tenant_id: share}, each share as tenant_share's.
            ADD COLUMN tenant_overrides jsonb NOT NULL DEFAULT '{}'
                CHECK (jsonb_typeof(tenant_overrides) = 'object');

        -- One bucket per (user, dependency, tenant) under a config with shares below 1, at
        -- the tenant's share of its dependency's bucket. No row: the bucket is full.
        CREATE TABLE tenant_buckets (
            user_id           uuid NOT NULL,
            dependency        text COLLATE "C" NOT NULL,
            tenant_id         text COLLATE "C" NOT NULL,
            capacity          numeric NOT NULL CHECK (capacity > 0),
            refill_per_second numeric NOT NULL CHECK (refill_per_second >= 0),
            tokens            numeric NOT NULL CHECK (tokens >= 0 AND tokens <= capacity),
            refilled_at       timestamptz NOT NULL,
            PRIMARY KEY (user_id, dependency, tenant_id),
            FOREIGN KEY (user_id, dependency) REFERENCES token_buckets ON DELETE CASCADE
        );

        -- What enforcement would have decided, for jobs decided in shadow mode.
        ALTER TABLE jobs
            ADD COLUMN shadow_status text CHECK (shadow_status IN ('Accepted', 'Rejected')),
            ADD COLUMN shadow_reason text;

        CREATE VIEW tenant_buckets_now AS
        SELECT t.user_id,
               u.name AS user_name,
               t.dependency,
               t.tenant_id,
               t.capacity,
               t.refill_per_second,
               least(t.capacity,
                     t.tokens + t.refill_per_second
                                * greatest(0, extract(epoch FROM clock_timestamp() - t.refilled_at))
               ) AS tokens_now,
               t.refilled_at
          FROM tenant_buckets t
          JOIN users u USING (user_id);
        """
    )
    op.execute(
        _BUCKETS_VIEW.format(
            mode_column=",\n       c.mode",
            mode_join="\n  LEFT JOIN configs c ON c.user_id = b.user_id AND c.is_active",
        )
    )
    op.execute(_DROP_ADMISSION.format(quote=""))
    op.execute(_DROP_ACTIVATE_CONFIG.format(settings=""))
    execute_sql_file("0011_tenant_share_of.sql")
    execute_sql_file("0011_admit_jobs.sql")
    execute_sql_file("0011_admit_jobs_once.sql")
    execute_sql_file("0011_activate_version.sql")
    execute_sql_file("0011_activate_config.sql")


def downgrade() -> None:
    op.execute(_DROP_ADMISSION.format(quote=", boolean"))
    op.execute(_DROP_ACTIVATE_CONFIG.format(settings=", text, numeric, jsonb"))
    execute_sql_file("0010_admit_jobs.sql")
    execute_sql_file("0010_admit_jobs_once.sql")
    execute_sql_file("0009_activate_version.sql")
    execute_sql_file("0009_activate_config.sql")
    op.execute(
        "DROP FUNCTION tenant_share_of(jsonb, numeric, text);"
        "DROP VIEW tenant_buckets_now; DROP VIEW token_buckets_now;"
        + _BUCKETS_VIEW.format(mode_column="", mode_join="")
        + """
        DROP TABLE tenant_buckets;
        ALTER TABLE jobs DROP COLUMN shadow_status, DROP COLUMN shadow_reason;
        ALTER TABLE configs DROP COLUMN mode, DROP COLUMN tenant_share,
                            DROP COLUMN tenant_overrides;
        """
    )
