"""Adaptive refill: buckets slow down when workers report upstream throttling, then recover.

Revision ID: 0007
Revises: 0006

A dependency of a config may be `adaptive` (decrease, floor, recovery_per_minute; see
docs/api.md). Its bucket then has an effective refill beside the configured one: each report
of upstream throttling (report_upstream_throttled()) multiplies it by the decrease factor,
never below floor x refill, and it regains recovery_per_minute x refill per minute while none
comes, up to the configured refill (AIMD, as TCP does). Like tokens, the effective refill is
stored as of refilled_at and brought up to the database clock lazily and exactly under the
row lock: refill_rate() is the rate, refill_tokens() the tokens gained (the integral of that
piecewise-linear rate). admit_jobs() refills with it and computes Retry-After from it;
activate_config() stores the adaptive settings and starts every bucket at its configured
refill. The view token_buckets_now shows the effective refill beside the configured one.

A bucket without `adaptive` keeps effective = configured (a CHECK holds it), so it refills
exactly as before. token_buckets is rewritten once by the UPDATE below, under the migration's
lock: it holds one row per (user, dependency), small beside jobs.

settle_costs() (0006's settlement of real costs) refills at the effective rate too, and
report_upstream_throttled(), a stub in 0006 that finish_jobs() already calls, gets its body
(and a return type, so it is dropped and created again).
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The view as 0001 created it (0006 left it alone), restored by the downgrade.
_VIEW_BEFORE = """
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


def upgrade() -> None:
    op.execute(
        """
        -- The config's shares, as the operator wrote them; all three or none (not adaptive).
        ALTER TABLE config_dependencies
            ADD COLUMN adaptive_decrease numeric
                CHECK (adaptive_decrease > 0 AND adaptive_decrease < 1),
            ADD COLUMN adaptive_floor numeric
                CHECK (adaptive_floor > 0 AND adaptive_floor <= 1),
            ADD COLUMN adaptive_recovery_per_minute numeric
                CHECK (adaptive_recovery_per_minute > 0 AND adaptive_recovery_per_minute <= 60),
            ADD CONSTRAINT config_dependencies_adaptive_all_or_none
                CHECK (num_nulls(adaptive_decrease, adaptive_floor,
                                 adaptive_recovery_per_minute) IN (0, 3));

        -- The bucket's copy, in the units refilling needs (tokens/s, and tokens/s per second).
        -- effective_refill_per_second is the rate as of refilled_at, like tokens.
        ALTER TABLE token_buckets
            ADD COLUMN effective_refill_per_second numeric,
            ADD COLUMN adaptive_decrease numeric
                CHECK (adaptive_decrease > 0 AND adaptive_decrease < 1),
            ADD COLUMN adaptive_floor_per_second numeric
                CHECK (adaptive_floor_per_second >= 0),
            ADD COLUMN adaptive_recovery_per_second numeric
                CHECK (adaptive_recovery_per_second >= 0),
            -- The last report of upstream throttling, for operators (NULL since activation).
            ADD COLUMN throttled_at timestamptz;
        UPDATE token_buckets SET effective_refill_per_second = refill_per_second;
        ALTER TABLE token_buckets
            ALTER COLUMN effective_refill_per_second SET NOT NULL,
            ADD CONSTRAINT token_buckets_adaptive_all_or_none
                CHECK (num_nulls(adaptive_decrease, adaptive_floor_per_second,
                                 adaptive_recovery_per_second) IN (0, 3)),
            -- Between the floor and the configured refill; a bucket that is not adaptive has
            -- no floor, so its effective refill is its configured one.
            ADD CONSTRAINT token_buckets_effective_refill_in_range
                CHECK (effective_refill_per_second <= refill_per_second
                       AND effective_refill_per_second
                           >= coalesce(adaptive_floor_per_second, refill_per_second));
        """
    )
    execute_sql_file("0007_refill_tokens.sql")
    execute_sql_file("0007_refill_rate.sql")
    execute_sql_file("0007_admit_jobs.sql")
    execute_sql_file("0007_activate_config.sql")
    execute_sql_file("0007_settle_costs.sql")
    # 0006's stub returned void; this one returns the buckets it slowed down.
    op.execute("DROP FUNCTION report_upstream_throttled(uuid, text[], timestamptz)")
    execute_sql_file("0007_report_upstream_throttled.sql")
    op.execute(
        """
        DROP VIEW token_buckets_now;
        -- Dropped and created rather than replaced: the effective refill sits beside the
        -- configured one, and CREATE OR REPLACE VIEW can only add columns at the end.
        CREATE VIEW token_buckets_now AS
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
               b.throttled_at
          FROM token_buckets b
          JOIN users u USING (user_id)
         CROSS JOIN LATERAL (
               SELECT greatest(0, extract(epoch FROM clock_timestamp() - b.refilled_at)) AS elapsed
               ) e;
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW token_buckets_now;" + _VIEW_BEFORE)
    op.execute("DROP FUNCTION report_upstream_throttled(uuid, text[], timestamptz)")
    # The functions this migration replaced, as 0006 installed them.
    execute_sql_file("0006_report_upstream_throttled.sql")
    execute_sql_file("0006_admit_jobs.sql")
    execute_sql_file("0006_activate_config.sql")
    execute_sql_file("0006_settle_costs.sql")
    op.execute(
        """
        DROP FUNCTION refill_tokens(numeric, numeric, numeric, numeric);
        DROP FUNCTION refill_rate(numeric, numeric, numeric, numeric);
        ALTER TABLE token_buckets
            DROP CONSTRAINT token_buckets_effective_refill_in_range,
            DROP CONSTRAINT token_buckets_adaptive_all_or_none,
            DROP COLUMN effective_refill_per_second,
            DROP COLUMN adaptive_decrease,
            DROP COLUMN adaptive_floor_per_second,
            DROP COLUMN adaptive_recovery_per_second,
            DROP COLUMN throttled_at;
        ALTER TABLE config_dependencies
            DROP CONSTRAINT config_dependencies_adaptive_all_or_none,
            DROP COLUMN adaptive_decrease,
            DROP COLUMN adaptive_floor,
            DROP COLUMN adaptive_recovery_per_minute;
        """
    )
