-- admit_jobs(): one request without an idempotency key, through admit_jobs_once().
--
-- Kept, as admit_jobs_once() is, while the release before group admission still serves; a
-- later migration drops it. Same arguments and columns as it had; what decides is
-- admit_requests().
--
-- The live definition is janus/db/sql/admit_jobs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION admit_jobs(
    p_user_id      uuid,
    p_source       text,
    p_batch_name   text,
    p_tenants      text[],
    p_priorities   smallint[],
    p_dependencies jsonb[],
    p_payloads     json[],
    p_atomic       boolean,
    p_quote        boolean DEFAULT false
)
RETURNS TABLE (job_id uuid, status text, reason text, retry_after integer, budgets json,
               shadow_status text, shadow_reason text, fits_at timestamptz, reason_code text,
               shadow_reason_code text)
LANGUAGE sql
AS $fn$
    SELECT a.job_id, a.status, a.reason, a.retry_after, a.budgets, a.shadow_status,
           a.shadow_reason, a.fits_at, a.reason_code, a.shadow_reason_code
      FROM admit_jobs_once(p_user_id, p_source, p_batch_name, p_tenants, p_priorities,
                           p_dependencies, p_payloads, p_atomic, NULL, NULL, p_quote) a
$fn$;
