-- tenant_buckets_now: every tenant bucket that has a row, with its tokens as of now, for
-- operators in psql and for GET /dashboard/quotas and `janus quotas` (queries.sql's
-- tenant_quotas).
--
-- Read through tenant_tokens_at(), as admission reads them. A tenant bucket without a row is
-- full and not listed.
--
-- The live definition is janus/db/sql/tenant_buckets_now.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README). CREATE OR REPLACE VIEW can only add
-- columns at the end: a change of the columns before drops the view first.

CREATE OR REPLACE VIEW tenant_buckets_now AS
SELECT t.user_id,
       u.name AS user_name,
       t.dependency,
       t.tenant_id,
       t.capacity,
       t.refill_per_second,
       tenant_tokens_at(t.capacity, t.tokens, t.refill_per_second, t.refilled_at,
                        clock_timestamp()) AS tokens_now,
       t.refilled_at
  FROM tenant_buckets t
  JOIN users u USING (user_id);
