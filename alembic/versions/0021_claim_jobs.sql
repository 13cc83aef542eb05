-- claim_jobs(): hand_out_jobs() without its last row of counts, for the release before it
-- (before migration 0021), which calls claim_jobs() while the migration's release takes
-- over. It goes with the next migration.
--
-- The live definition is janus/db/sql/claim_jobs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION claim_jobs(
    p_user_id       uuid,
    p_limit         integer,
    p_lease_seconds integer,
    p_tenant_id     text,
    p_batch_name    text,
    p_dependencies  text[]
)
RETURNS TABLE (job_id uuid, batch_name text, tenant_id text, priority smallint,
               dependencies jsonb, payload json, attempt integer, lease_token uuid,
               lease_expires_at timestamptz)
LANGUAGE sql
AS $fn$
    SELECT h.job_id, h.batch_name, h.tenant_id, h.priority, h.dependencies, h.payload,
           h.attempt, h.lease_token, h.lease_expires_at
      FROM hand_out_jobs(p_user_id, p_limit, p_lease_seconds, p_tenant_id, p_batch_name,
                         p_dependencies) h
     WHERE h.job_id IS NOT NULL
$fn$;
