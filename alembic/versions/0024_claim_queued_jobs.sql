-- claim_queued_jobs(): lease up to p_limit of a user's queued jobs, which admission paid for
-- when it accepted them: hand_out_jobs()'s one statement when nothing waits in line, and its
-- last, for the slots its walk of the line left.
--
-- Highest priority first, then oldest first, through the partial index jobs_queued (only
-- queued jobs are in it), so a claim costs the same whether the table holds a thousand
-- finished jobs or millions. Rows are picked FOR UPDATE SKIP LOCKED: concurrent claims never
-- wait for each other and never get the same job. A job's `attempts` counts its claims; the
-- lease token is new on every claim (finish_jobs() checks it). Only the partitions of jobs
-- from the user's jobs_unfinished_from to a minute from now are read (hand_out_jobs() says
-- why). PL/pgSQL, not
-- SQL: its plan is kept from one call to the next, where a SQL function's statement is
-- planned again at each call, over every partition of jobs (100 ms a claim with 175).
--
-- The live definition is janus/db/sql/claim_queued_jobs.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION claim_queued_jobs(
    p_user_id       uuid,
    p_limit         integer,
    p_at            timestamptz,  -- the claim's moment: the lease runs from it
    p_lease_seconds integer,
    p_tenant_id     text,     -- null: any tenant
    p_batch_name    text,     -- null: any batch
    p_dependencies  text[]    -- null: any job; else only jobs that call none but these
)
RETURNS TABLE (job_id uuid, batch_name text, tenant_id text, priority smallint,
               dependencies jsonb, payload json, attempt integer, lease_token uuid,
               lease_expires_at timestamptz)
LANGUAGE plpgsql
-- Each statement planned for the values of its call: the partitions of jobs outside the
-- user's bounds are left out while planning (a generic plan keeps every one, and guesses the
-- bounds' selectivity: 40 ms for a claim beside 100,000 waiting jobs, where this takes 0.05).
SET plan_cache_mode = force_custom_plan
AS $fn$
#variable_conflict use_column
DECLARE
    -- No job of the user below v_from, or at v_until or above, is unfinished
    -- (hand_out_jobs()).
    v_from  uuid;
    v_until uuid;
BEGIN
    SELECT u.jobs_unfinished_from INTO v_from FROM users u WHERE u.user_id = p_user_id;
    v_until := unfinished_until(v_from, p_at);
    RETURN QUERY
    WITH picked AS (
        SELECT q.job_id
          FROM jobs q
         WHERE q.user_id = p_user_id AND q.state = 'queued'
           AND q.job_id >= v_from AND q.job_id < v_until
           AND (p_tenant_id IS NULL OR q.tenant_id = p_tenant_id)
           AND (p_batch_name IS NULL OR q.batch_name = p_batch_name)
           AND (p_dependencies IS NULL
                OR NOT EXISTS (SELECT 1 FROM jsonb_object_keys(q.dependencies) AS k(name)
                                WHERE k.name <> ALL (p_dependencies)))
         ORDER BY q.priority DESC, q.created_at, q.job_id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE jobs j
           SET state = 'running',
               attempts = j.attempts + 1,
               lease_token = gen_random_uuid(),
               lease_expires_at = p_at + make_interval(secs => p_lease_seconds)
          FROM picked
         WHERE j.user_id = p_user_id AND j.job_id = picked.job_id
           AND j.job_id >= v_from AND j.job_id < v_until
        RETURNING j.job_id, j.batch_name, j.tenant_id, j.priority, j.dependencies,
                  j.payload, j.attempts, j.lease_token, j.lease_expires_at, j.created_at
    )
    SELECT c.job_id, c.batch_name, c.tenant_id, c.priority, c.dependencies, c.payload,
           c.attempts, c.lease_token, c.lease_expires_at
      FROM claimed c
     ORDER BY c.priority DESC, c.created_at, c.job_id;
END
$fn$;
