"""Bucket arithmetic written once, reason codes from the database, defaults only in Python.

Revision ID: 0015
Revises: 0014

Issue 22 ("one source of truth"), its SQL part. Nothing a client sees changes, but for the
new reason codes.

Bucket arithmetic once. "A bucket's tokens as of a moment" was written out at every place
that refilled a bucket: admit_jobs(), activate_version(), report_upstream_throttled(),
settle_costs(), the two *_now views and `janus prune`, with the elapsed seconds
(`greatest(0, extract(epoch ...))`) about fifteen times and "a tenant bucket without a row is
full" three times. They now call plain SQL functions, IMMUTABLE and of one expression, which
the planner inlines into the calling expression (no function is called at run time):
seconds_elapsed(), bucket_tokens_at() and bucket_rate_at() (a dependency's bucket, adaptive
refill included, built on refill_tokens() and refill_rate()), tenant_tokens_at() (a tenant's
bucket, full without a row), reserve_shortfall_x9() and reserve_wait() (the priority
reserve's check and the wait that cures it, which admit_jobs() made twice, for dependency and
tenant buckets). new_job_id() reads the Unix time through seconds_elapsed() too. The views
token_buckets_now and tenant_buckets_now, written inside 0007 and 0011, now have live files
of their own as the functions do (frozen copies here), and keep their columns.

Reason codes. admit_jobs() and admit_jobs_once() also return, beside each reason in the
contract's words, a code from a closed set (min_priority, unknown_dependency,
over_capacity, rate_limit, tenant_share, atomic_batch; NULL when accepted), and the same for
shadow mode's decision: new columns at the end of their results (a new return type, so both
are dropped and created again; the web process names the columns it reads, so the previous
release keeps working). jobs keeps them (reason_code, shadow_reason_code, nullable, each
CHECKed against the set by is_reason_code(), where the set is written once), and so do the
decisions an idempotency key remembers, so a replay answers the code. Rows and remembered
decisions stored before are classified once, from their words, below; no live SQL reads a
reason's words.

Defaults once. activate_config() no longer defaults max_attempts to 3 nor retention_days to
7 (janus/schemas.py holds both defaults, and Janus always passes both): CREATE OR REPLACE
cannot remove a default, so it is dropped and created again with the same argument types. The
previous release passes all eleven arguments. claim_jobs() and finish_jobs() read the active
config's max_attempts with no fallback through user_max_attempts(): a user with jobs always has
an active config. activate_config() and activate_version() take the user's lock through
lock_user().

Not blocking admissions: the new columns are nullable and their CHECKs are added NOT VALID, so
the transaction that holds jobs' lock does not scan it. The backfill and the validation run
after it commits, outside any long transaction (an UPDATE of old rows, which admissions do not
touch, and VALIDATE, which lets them write). They only fill what is still NULL, and the
statements before them are safe to run again, so an upgrade interrupted there can be rerun.
A decision still running the old admit_jobs() when this commits stores its job without a code.
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
    "reserve_shortfall_x9": "numeric, numeric, bigint, numeric, integer",
    "reserve_wait": "numeric, numeric, numeric, bigint, numeric, integer",
    "is_reason_code": "text",
    "lock_user": "uuid",
    "user_max_attempts": "uuid",
}

# Replaced in place (CREATE OR REPLACE): the frozen copy each downgrade restores.
REPLACED_FUNCTIONS = {
    "activate_version": "0011_activate_version.sql",
    "claim_jobs": "0006_claim_jobs.sql",
    "finish_jobs": "0012_finish_jobs.sql",
    "report_upstream_throttled": "0007_report_upstream_throttled.sql",
    "settle_costs": "0012_settle_costs.sql",
    "new_job_id": "0013_new_job_id.sql",
}

VIEWS = ("token_buckets_now", "tenant_buckets_now")

# A new return type (admit_jobs, admit_jobs_once) or defaults removed (activate_config):
# dropped first, both ways.
_DROP_CHANGED_SIGNATURES = """
    DROP FUNCTION IF EXISTS admit_jobs_once(uuid, text, text, text[], smallint[], jsonb[], json[],
                                            boolean, text, bytea, boolean);
    DROP FUNCTION IF EXISTS admit_jobs(uuid, text, text, text[], smallint[], jsonb[], json[],
                                       boolean, boolean);
    DROP FUNCTION IF EXISTS activate_config(uuid, boolean, smallint, numeric, text, json, integer,
                                            integer, text, numeric, jsonb);
"""

# The code of a reason in the contract's words, as admit_jobs() wrote them up to 0014 (NULL
# for '' and for anything else). Names may hold any character, so each reason is told by its
# fixed start and end.
_CODE_OF_REASON = """
    CASE WHEN {reason} = 'priority too low' THEN 'min_priority'
         WHEN {reason} = 'batch rejected atomically' THEN 'atomic_batch'
         WHEN {reason} ~ '^dependency ''.*'' is not configured$' THEN 'unknown_dependency'
         WHEN {reason} ~ '^dependency ''.*'' cost [0-9]+ exceeds capacity [0-9]+$'
              THEN 'over_capacity'
         WHEN {reason} ~ '^dependency ''.*'' rate limit exceeded$' THEN 'rate_limit'
         WHEN {reason} ~ '^tenant ''.*'' exceeded its share of dependency ''.*''$'
              THEN 'tenant_share'
    END"""

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
    op.execute(
        """
        ALTER TABLE jobs
            -- The code of `reason` (NULL: accepted), and of `shadow_reason` in shadow mode.
            ADD COLUMN IF NOT EXISTS reason_code text,
            ADD COLUMN IF NOT EXISTS shadow_reason_code text,
            DROP CONSTRAINT IF EXISTS jobs_reason_code_check,
            DROP CONSTRAINT IF EXISTS jobs_shadow_reason_code_check,
            -- NOT VALID: no scan under this transaction's lock; validated below.
            ADD CONSTRAINT jobs_reason_code_check
                CHECK (is_reason_code(reason_code)) NOT VALID,
            ADD CONSTRAINT jobs_shadow_reason_code_check
                CHECK (is_reason_code(shadow_reason_code)) NOT VALID;
        """
    )
    op.execute(_DROP_CHANGED_SIGNATURES)
    execute_sql_file("0015_admit_jobs.sql")
    execute_sql_file("0015_admit_jobs_once.sql")
    execute_sql_file("0015_activate_config.sql")
    for name in REPLACED_FUNCTIONS:
        execute_sql_file(f"0015_{name}.sql")
    for view in VIEWS:
        execute_sql_file(f"0015_{view}.sql")

    with op.get_context().autocommit_block():
        # Rows stored before the new admit_jobs(). No admission writes a stored job; a
        # settlement of a job that shadow mode let in waits for this statement's row lock.
        op.execute(
            "UPDATE jobs SET reason_code = "
            + _CODE_OF_REASON.format(reason="reason")
            + " WHERE status = 'Rejected' AND reason_code IS NULL"
        )
        op.execute(
            "UPDATE jobs SET shadow_reason_code = "
            + _CODE_OF_REASON.format(reason="shadow_reason")
            + " WHERE shadow_status = 'Rejected' AND shadow_reason_code IS NULL"
        )
        # The decisions of keys still answered; expired ones are never read again.
        op.execute(
            """
            UPDATE idempotency_keys k
               SET decisions = (
                   SELECT jsonb_agg(e.value || jsonb_build_object('reason_code', """
            + _CODE_OF_REASON.format(reason="(e.value ->> 'reason')")
            + """)
                                    ORDER BY e.n)
                     FROM jsonb_array_elements(k.decisions) WITH ORDINALITY AS e(value, n))
             WHERE k.expires_at > now()
               AND NOT jsonb_path_exists(k.decisions, '$[*].reason_code')
            """
        )
        op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_reason_code_check")
        op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT jobs_shadow_reason_code_check")


def downgrade() -> None:
    # The views first: they call the functions dropped below.
    op.execute(_VIEWS_OF_0011)
    op.execute(_DROP_CHANGED_SIGNATURES)
    execute_sql_file("0014_admit_jobs.sql")
    execute_sql_file("0014_admit_jobs_once.sql")
    execute_sql_file("0011_activate_config.sql")
    for file_name in REPLACED_FUNCTIONS.values():
        execute_sql_file(file_name)
    # The columns before the functions: their CHECKs call is_reason_code().
    op.execute(
        """
        UPDATE idempotency_keys k
           SET decisions = (SELECT jsonb_agg(e.value - 'reason_code' ORDER BY e.n)
                              FROM jsonb_array_elements(k.decisions) WITH ORDINALITY AS e(value, n))
         WHERE jsonb_path_exists(k.decisions, '$[*].reason_code');
        ALTER TABLE jobs DROP COLUMN reason_code, DROP COLUMN shadow_reason_code;
        """
    )
    for name, arguments in reversed(NEW_FUNCTIONS.items()):
        op.execute(f"DROP FUNCTION {name}({arguments})")
