-- token_buckets_now: every dependency's bucket with its tokens and effective refill as of now,
-- for operators in psql and for GET /dashboard/quotas and `janus quotas` (queries.sql's
-- bucket_quotas).
--
-- Each row is read at one moment of the database clock (`now_at`), through the functions
-- admission refills with (bucket_tokens_at(), bucket_rate_at()), so the view shows what a
-- decision at that moment would find. A read takes no lock: a decision may write a row
-- meanwhile. `mode` is the user's active config's (shadow buckets are debited only by the jobs
-- enforcement would accept).
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
       bucket_rate_at(b.refill_per_second, b.effective_refill_per_second,
                      b.adaptive_recovery_per_second, b.refilled_at, n.now_at)
           AS effective_refill_per_second,
       bucket_tokens_at(b.capacity, b.tokens, b.refill_per_second, b.effective_refill_per_second,
                        b.adaptive_recovery_per_second, b.refilled_at, n.now_at) AS tokens_now,
       b.refilled_at,
       b.adaptive_decrease IS NOT NULL AS adaptive,
       b.throttled_at,
       c.mode
  FROM token_buckets b
  JOIN users u USING (user_id)
  LEFT JOIN configs c ON c.user_id = b.user_id AND c.is_active
 CROSS JOIN LATERAL (SELECT clock_timestamp() AS now_at) n;
