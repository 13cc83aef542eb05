-- claim_jobs(): lease up to p_limit queued jobs of a user to the calling worker.
--
-- Highest priority first, then oldest first. Rows are picked FOR UPDATE SKIP LOCKED, so
-- concurrent claims never wait for each other and never get the same job. The candidates are
-- read through the partial index jobs_queued (only queued jobs are in it), so a claim costs
-- the same whether the table holds a thousand finished jobs or millions.
--
-- First, jobs of this user whose lease has expired (a worker died or stalled) are taken back:
-- queued again, or failed when they have used the config's max_attempts. A job's `attempts`
-- counts its claims, so a job claimed again after an expired lease or a failure comes back
-- with its attempt raised. The lease token is new on every claim: a worker whose lease
-- expired can no longer heartbeat, complete or fail the job (finish_jobs() checks it).
--
-- Then, before the claim picks its jobs, jobs of this user waiting for their run_at (a
-- worker's fail said when to try again: finish_jobs()) whose moment has come are queued
-- again, through the partial index jobs_waiting and bounded as the expired leases are; they
-- keep their place by priority and age, which they had before their failure. Waiting jobs
-- whose moment has not come cost a claim nothing.
--
-- Raises J0U01 for an unknown user. Claims go on while the user is paused (pausing stops
-- admission, not the draining of what was admitted). max_attempts is the active config's
-- (user_max_attempts(): a user with jobs always has one).
--
-- The live definition is janus/db/sql/claim_jobs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION claim_jobs(
    p_user_id       uuid,
    p_limit         integer,
    p_lease_seconds integer,
    p_tenant_id     text,     -- null: any tenant
    p_batch_name    text,     -- null: any batch
    p_dependencies  text[]    -- null: any job; else only jobs that call none but these
)
RETURNS TABLE (job_id uuid, batch_name text, tenant_id text, priority smallint,
               dependencies jsonb, payload json, attempt integer, lease_token uuid,
               lease_expires_at timestamptz)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    v_max_attempts integer;
    claimed_at   timestamptz := clock_timestamp();
BEGIN
    v_max_attempts := user_max_attempts(p_user_id);

    -- Expired leases, through the small partial index jobs_leased; bounded, so one claim
    -- never does an unbounded amount of this work (the next claims take the rest).
    UPDATE jobs j
       SET state = CASE WHEN j.attempts >= v_max_attempts THEN 'failed' ELSE 'queued' END,
           finished_at = CASE WHEN j.attempts >= v_max_attempts THEN claimed_at END,
           error = 'lease expired',
           lease_token = NULL,
           lease_expires_at = NULL
      FROM (SELECT e.job_id
              FROM jobs e
             WHERE e.user_id = p_user_id AND e.state = 'running'
               AND e.lease_expires_at <= claimed_at
             ORDER BY e.lease_expires_at
             LIMIT 1000
               FOR UPDATE SKIP LOCKED) expired
     WHERE j.user_id = p_user_id AND j.job_id = expired.job_id;

    UPDATE jobs j
       SET state = 'queued',
           run_at = NULL
      FROM (SELECT w.job_id
              FROM jobs w
             WHERE w.user_id = p_user_id AND w.state = 'waiting' AND w.run_at <= claimed_at
             ORDER BY w.run_at
             LIMIT 1000
               FOR UPDATE SKIP LOCKED) due
     WHERE j.user_id = p_user_id AND j.job_id = due.job_id;

    RETURN QUERY
        WITH picked AS (
            SELECT q.job_id
              FROM jobs q
             WHERE q.user_id = p_user_id AND q.state = 'queued'
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
                   lease_expires_at = claimed_at + make_interval(secs => p_lease_seconds)
              FROM picked
             WHERE j.user_id = p_user_id AND j.job_id = picked.job_id
            RETURNING j.job_id, j.batch_name, j.tenant_id, j.priority, j.dependencies,
                      j.payload, j.attempts, j.lease_token, j.lease_expires_at, j.created_at
        )
        SELECT c.job_id, c.batch_name, c.tenant_id, c.priority, c.dependencies, c.payload,
               c.attempts, c.lease_token, c.lease_expires_at
          FROM claimed c
         ORDER BY c.priority DESC, c.created_at, c.job_id;
END
$fn$;
