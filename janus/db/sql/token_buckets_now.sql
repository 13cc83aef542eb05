-- token_buckets_now: every dependency's bucket with its tokens and effective refill as of now,
-- for operators in psql and for GET /dashboard/quotas and `janus quotas` (queries.sql's
-- bucket_quotas).
--
-- Each row is brought up to the database clock as admission refills it (refill_tokens(),
-- refill_rate()). A read takes no lock: a decision may write a row meanwhile. `mode` is the
-- user's active config's (shadow buckets are debited only by the jobs enforcement would
-- accept).
--
-- The live definition is janus/db/sql/token_buckets_now.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README). CREATE OR REPLACE VIEW can only add
-- columns at the end: a change of the columns before drops the view first.

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
