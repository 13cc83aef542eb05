-- retry_jobs(): send one or more failed, expired or cancelled jobs of a user back to wait, in
-- one transaction.
--
-- Items are the ids, in request order; each gets its own row back, in that order, with the
-- job's state after the call: outcome 'retried' (it was failed, expired or cancelled, and now
-- waits), 'not_found' (the user has no such job) or 'not_retryable' (queued, waiting or
-- running: it has not ended; completed: it has succeeded; rejected: state null, it was never
-- admitted; nothing changes, and its state is returned).
--
-- A retried job waits as a job failed with attempts left does (finish_jobs()), through the
-- same pacing: due at once (run_at now), so the next claim puts it in its dependencies' line
-- (or queues it, when it needs no token) and it takes its tokens when it is handed out, with
-- the priority reserve and its tenant's share applied. Nothing is paid or given back here. It
-- gets a fresh max wait from now (the active config's max_wait_seconds: not handed out by
-- then, it ends expired again) and a fresh set of attempts (attempts 0: the next hand-out is
-- attempt 1, and the config's max_attempts counts from there).
--
-- What the ended run left is cleared, so that the job no longer reads as finished:
-- finished_at, result and error (the run that failed is over; the new run writes its own),
-- and actual_costs and settled_at (the new run settles its own costs against what its
-- hand-out takes, as hand_out_jobs() makes every waiting job do when it hands it out). The
-- job keeps its id, payload, dependencies, priority, tenant, batch and admission decision.
--
-- A retried job is unfinished again: the user's jobs_unfinished_from, below which claims do
-- not look (hand_out_jobs()), is lowered to its id, under the user's row lock, which `janus
-- maintain` takes too before it raises it.
--
-- Locks: the jobs' rows in job_id order, as cancel_jobs() and finish_jobs() take them, then
-- the clock is read; then the user's row, for each job retried. No bucket: nothing is paid
-- here, and the job joins no line (hand_out_jobs() lines it up under the buckets' locks once
-- it is due). No claim touches an ended job, so a claim never waits for one; a claim that
-- reads the job after this commits sees it waiting.
-- Raises J0U01 for an unknown user.
--
-- The live definition is janus/db/sql/retry_jobs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION retry_jobs(p_user_id uuid, p_job_ids uuid[])
RETURNS TABLE (job_id uuid, outcome text, state text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    v_now      timestamptz;
    v_max_wait integer;
    v_state    text;
    i          integer;
BEGIN
    PERFORM 1 FROM users u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;
    SELECT c.max_wait_seconds INTO v_max_wait
      FROM configs c
     WHERE c.user_id = p_user_id AND c.is_active;

    PERFORM 1 FROM jobs j
     WHERE j.user_id = p_user_id AND j.job_id = ANY (p_job_ids)
     ORDER BY j.job_id
       FOR UPDATE;
    v_now := clock_timestamp();

    FOR i IN 1 .. coalesce(cardinality(p_job_ids), 0) LOOP
        SELECT j.state INTO v_state
          FROM jobs j
         WHERE j.user_id = p_user_id AND j.job_id = p_job_ids[i];
        IF NOT FOUND THEN
            RETURN QUERY SELECT p_job_ids[i], 'not_found'::text, NULL::text;
            CONTINUE;
        END IF;
        IF v_state IS NULL OR v_state NOT IN ('failed', 'expired', 'cancelled') THEN
            RETURN QUERY SELECT p_job_ids[i], 'not_retryable'::text, v_state;
            CONTINUE;
        END IF;

        UPDATE jobs j
           SET state = 'waiting',
               run_at = v_now,
               in_line_at = NULL,
               estimated_start = NULL,
               paid = false,
               expires_at = v_now + make_interval(secs => v_max_wait),
               attempts = 0,
               finished_at = NULL,
               result = NULL,
               error = NULL,
               actual_costs = NULL,
               settled_at = NULL,
               lease_token = NULL,
               lease_expires_at = NULL
         WHERE j.user_id = p_user_id AND j.job_id = p_job_ids[i];
        -- Unfinished again, however old its id: a claim looks for it from there on; for a job
        -- of random id, from the lowest id on, without bound (unfinished_until()). The queue
        -- view's ended jobs are looked for from there too, once it ends again
        -- (mark_unfinished_from in queries.sql: jobs_ended_from, jobs_unfinished_low).
        UPDATE users u
           SET jobs_unfinished_from = f.v_from,
               jobs_ended_from = least(u.jobs_ended_from, f.v_from),
               jobs_unfinished_low = least(u.jobs_unfinished_low, f.v_from)
          FROM (SELECT CASE WHEN job_id_version(p_job_ids[i]) = 7 THEN p_job_ids[i]
                            ELSE '00000000-0000-0000-0000-000000000000'::uuid END) AS f(v_from)
         WHERE u.user_id = p_user_id AND u.jobs_unfinished_from > f.v_from;
        RETURN QUERY SELECT p_job_ids[i], 'retried'::text, 'waiting'::text;
    END LOOP;
END
$fn$;
