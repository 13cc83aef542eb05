-- cancel_jobs(): cancel one or more queued or waiting jobs of a user, in one transaction.
--
-- Items are the ids, in request order; each gets its own row back, in that order, with the
-- job's state after the call: outcome 'cancelled' (it was queued or waiting, and is now),
-- 'already_cancelled' (nothing changes), 'not_found' (the user has no such job) or
-- 'not_cancellable' (running, completed or failed: its state; rejected: state null; nothing
-- changes). A running job's worker holds a lease on it and may be calling the upstream, so
-- it is never cancelled under it.
--
-- A cancelled job is finished (finished_at), kept and pruned as completed and failed jobs
-- are. One that was never handed out gets back the tokens admission took for it: it is settled
-- as a job that cost 0 on each of its dependencies (settle_costs(), its actual_costs become
-- 0 each), as a worker reporting actual_costs of 0 would settle it. A waiting job has taken
-- no token (it pays when it is handed out), so nothing moves; one in its dependencies' line
-- leaves it (leave_line()). A queued job handed out before (under the release before pacing,
-- a failure or an expired lease queued it again) called the upstream with those tokens, so
-- nothing moves either. A job that only shadow mode let in took none (settle_costs() moves
-- nothing).
--
-- Locks, as finish_jobs(): first the jobs' rows in job_id order, then the buckets of the
-- jobs to settle or take out of the line in dependency-name order, then the clock is read. A claim skips jobs locked
-- here; a claim that locked a job first has made it running before this reads it.
-- Raises J0U01 for an unknown user.
--
-- The live definition is janus/db/sql/cancel_jobs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION cancel_jobs(p_user_id uuid, p_job_ids uuid[])
RETURNS TABLE (job_id uuid, outcome text, state text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    v_now   timestamptz;
    job     record;
    settled jsonb;
    i       integer;
BEGIN
    PERFORM 1 FROM users u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;

    PERFORM 1 FROM jobs j
     WHERE j.user_id = p_user_id AND j.job_id = ANY (p_job_ids)
     ORDER BY j.job_id
       FOR UPDATE;

    PERFORM 1 FROM token_buckets tb
     WHERE tb.user_id = p_user_id
       AND tb.dependency IN (SELECT k.name
                               FROM jobs j
                              CROSS JOIN LATERAL jsonb_object_keys(j.dependencies) AS k(name)
                              WHERE j.user_id = p_user_id AND j.job_id = ANY (p_job_ids)
                                AND (j.state = 'queued' AND j.attempts = 0
                                     OR j.state = 'waiting' AND j.in_line_at IS NOT NULL))
     ORDER BY tb.dependency
       FOR UPDATE;
    v_now := clock_timestamp();

    FOR i IN 1 .. coalesce(cardinality(p_job_ids), 0) LOOP
        SELECT j.state, j.attempts, j.dependencies, j.actual_costs, j.shadow_status,
               j.tenant_id, j.priority, j.in_line_at, j.paid
          INTO job
          FROM jobs j
         WHERE j.user_id = p_user_id AND j.job_id = p_job_ids[i];
        IF NOT FOUND THEN
            RETURN QUERY SELECT p_job_ids[i], 'not_found'::text, NULL::text;
            CONTINUE;
        END IF;
        IF job.state = 'cancelled' THEN
            RETURN QUERY SELECT p_job_ids[i], 'already_cancelled'::text, job.state;
            CONTINUE;
        END IF;
        IF job.state IS NULL OR job.state NOT IN ('queued', 'waiting') THEN
            RETURN QUERY SELECT p_job_ids[i], 'not_cancellable'::text, job.state;
            CONTINUE;
        END IF;

        settled := NULL;
        IF job.in_line_at IS NOT NULL THEN
            PERFORM leave_line(p_user_id, job.priority, job.dependencies);
        ELSIF job.state = 'queued' AND job.attempts = 0 THEN
            settled := settle_costs(
                p_user_id, job.dependencies, job.actual_costs,
                (SELECT jsonb_object_agg(k.name, 0)
                   FROM jsonb_object_keys(job.dependencies) AS k(name)),
                v_now, job.tenant_id,
                coalesce(job.paid, job.shadow_status IS DISTINCT FROM 'Rejected'));
        END IF;

        UPDATE jobs j
           SET state = 'cancelled',
               run_at = NULL,
               in_line_at = NULL,
               expires_at = NULL,
               estimated_start = NULL,
               finished_at = v_now,
               actual_costs = coalesce(settled, j.actual_costs),
               settled_at = CASE WHEN settled IS NULL THEN j.settled_at ELSE v_now END
         WHERE j.user_id = p_user_id AND j.job_id = p_job_ids[i];
        RETURN QUERY SELECT p_job_ids[i], 'cancelled'::text, 'cancelled'::text;
    END LOOP;
END
$fn$;
