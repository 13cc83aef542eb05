-- heartbeat_job(): extend the lease of a running job, fenced by its lease token.
--
-- Returns one row: outcome 'ok' with the new lease_expires_at; 'not_found' when the user has
-- no such job; 'stale_lease' when the token is not the job's current lease (wrong, expired,
-- superseded by a later claim, or the job is no longer running), and nothing changes.
-- Raises J0U01 for an unknown user.
--
-- The live definition is janus/db/sql/heartbeat_job.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION heartbeat_job(
    p_user_id       uuid,
    p_job_id        uuid,
    p_lease_token   uuid,
    p_lease_seconds integer
)
RETURNS TABLE (outcome text, lease_expires_at timestamptz)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    job record;
    now_at timestamptz;
BEGIN
    PERFORM 1 FROM users u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;

    SELECT j.state, j.lease_token, j.lease_expires_at
      INTO job
      FROM jobs j
     WHERE j.user_id = p_user_id AND j.job_id = p_job_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::timestamptz;
        RETURN;
    END IF;
    -- Read once the row lock is held, as every lease check is.
    now_at := clock_timestamp();
    IF job.state IS DISTINCT FROM 'running' OR job.lease_token <> p_lease_token
          OR job.lease_expires_at <= now_at THEN
        RETURN QUERY SELECT 'stale_lease'::text, NULL::timestamptz;
    ELSE
        RETURN QUERY
            UPDATE jobs j
               SET lease_expires_at = now_at + make_interval(secs => p_lease_seconds)
             WHERE j.user_id = p_user_id AND j.job_id = p_job_id
            RETURNING 'ok'::text, j.lease_expires_at;
    END IF;
END
$fn$;
