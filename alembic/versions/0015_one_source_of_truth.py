"""Bucket arithmetic written once.

Revision ID: 0015
Revises: 0014

Issue 22 ("one source of truth"), its SQL part. Nothing a client sees changes.

"A bucket's tokens as of a moment" was written out at every place that refilled a bucket:
admit_jobs(), activate_version(), report_upstream_throttled(), settle_costs(), the two *_now
views and `janus prune`, with the elapsed seconds (`greatest(0, extract(epoch ...))`) about
fifteen times and "a tenant bucket without a row is full" three times. They now call plain
SQL functions, IMMUTABLE and of one expression, which the planner inlines into the calling
expression (so a decision costs what it did): seconds_elapsed(), bucket_tokens_at() and
bucket_rate_at() (a dependency's bucket, adaptive refill included, built on refill_tokens()
and refill_rate()), tenant_tokens_at() (a tenant's bucket, full without a row), and
reserve_wait() (the priority reserve's check and the wait that cures it, which admit_jobs()
made twice, for dependency and tenant buckets). new_job_id() reads the Unix time through
seconds_elapsed() too. The views token_buckets_now and tenant_buckets_now, written inside
0007 and 0011, now have live files of their own as the functions do (frozen copies here),
and keep their columns.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# In the order they are installed: each after the functions its body calls.
NEW_FUNCTIONS = {
    "seconds_elapsed": "timestamptz, timestamptz",
    "bucket_tokens_at": "bigint, numeric, numeric, numeric, numeric, timestamptz, timestamptz",
    "bucket_rate_at": "numeric, numeric, numeric, timestamptz, timestamptz",
    "tenant_tokens_at": "numeric, numeric, numeric, timestamptz, timestamptz",
    "reserve_wait": "numeric, numeric, numeric, bigint, numeric, integer",
}

# Replaced in place (CREATE OR REPLACE): the frozen copy each downgrade restores.
REPLACED_FUNCTIONS = {
    "admit_jobs": "0014_admit_jobs.sql",
    "activate_version": "0011_activate_version.sql",
    "report_upstream_throttled": "0007_report_upstream_throttled.sql",
    "settle_costs": "0012_settle_costs.sql",
    "new_job_id": "0013_new_job_id.sql",
}

VIEWS = ("token_buckets_now", "tenant_buckets_now")

# The views as 0011 left them, which the downgrade restores (their columns are unchanged).
_VIEWS_OF_0011 = """
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
       b.throttled_at,
       c.mode
  FROM token_buckets b
  JOIN users u USING (user_id)
  LEFT JOIN configs c ON c.user_id = b.user_id AND c.is_active
 CROSS JOIN LATERAL (
       SELECT greatest(0, extract(epoch FROM clock_timestamp() - b.refilled_at)) AS elapsed
       ) e;

CREATE OR REPLACE VIEW tenant_buckets_now AS
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


def upgrade() -> None:
    for name in NEW_FUNCTIONS:
        execute_sql_file(f"0015_{name}.sql")
    for name in REPLACED_FUNCTIONS:
        execute_sql_file(f"0015_{name}.sql")
    for view in VIEWS:
        execute_sql_file(f"0015_{view}.sql")


def downgrade() -> None:
    # The views first: they call the functions dropped below.
    op.execute(_VIEWS_OF_0011)
    for file_name in REPLACED_FUNCTIONS.values():
        execute_sql_file(file_name)
    for name, arguments in reversed(NEW_FUNCTIONS.items()):
        op.execute(f"DROP FUNCTION {name}({arguments})")
