-- finish_jobs(): end the leases of one or more running jobs, each as completed or failed,
-- settle the real costs they report and record everything on the jobs, in one transaction.
--
-- One call serves POST /system/jobs/{id}/complete, .../fail and the batch
-- POST /system/jobs/complete. Items are parallel arrays, in request order; each gets its own
-- row back, in that order: outcome 'ok' with the job's new state and attempt, 'not_found'
-- (the user has no such job) or 'stale_lease' (the token is not the job's current, unexpired
-- lease; nothing of that item changes). A fail puts the job back in the queue while it has
-- attempts left and `retry` is true; otherwise it is failed. Back in the queue means waiting
-- (run_at) until the worker said to try again (p_retry_after_seconds: an upstream's
-- Retry-After, say), or else for the active config's retry_backoff (retry_backoff()); with
-- neither (the backoff's base 0), run_at is now. Once run_at has passed, hand_out_jobs() puts
-- it in its dependencies' line, and it takes its tokens again when it is handed out again:
-- every call to the upstream is paid for.
--
-- Locks: first the jobs' rows in job_id order, then the rows of every bucket any item names
-- (costs or throttling), in dependency-name order, then the clock is read. A claim skips
-- locked jobs, admit_jobs() and activate_config() lock buckets only, in the same name order:
-- so no two of them can deadlock, and a settlement refills a bucket exactly as admission does.
-- Raises J0U01 for an unknown user. A failed job's attempts are counted against the active
-- config's max_attempts (user_max_attempts(): a user with jobs always has one).
--
-- A job that only shadow mode let in (shadow_status 'Rejected') took no token when it was
-- admitted, and enforcement would never have run it: its reported costs are recorded but move
-- no token, so the buckets keep following what enforcement would have done. Its throttling
-- reports still count: they are the upstream's.
--
-- The live definition is janus/db/sql/finish_jobs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION finish_jobs(
    p_user_id            uuid,
    p_job_ids            uuid[],
    p_lease_tokens       uuid[],
    p_failed             boolean[],  -- false: complete, true: fail
    p_results            json[],     -- complete: the result as sent (null: none)
    p_errors             text[],     -- fail: what went wrong
    p_retry              boolean[],  -- fail: whether the job may be tried again
    p_actual_costs       jsonb[],    -- {dependency: tokens} (null: not reported)
    p_upstream_throttled jsonb[],    -- [dependency, ...] (null: none)
    -- fail: seconds before the job may be handed out again (null: at once); a default, so
    -- that the release before this argument, which leaves it out, calls this function too
    p_retry_after_seconds integer[] DEFAULT NULL
)
RETURNS TABLE (job_id uuid, outcome text, state text, attempt integer)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    v_max_attempts integer;
    v_backoff    record;
    v_wait       interval;
    bucket_names text[];
    throttled    text[];
    v_now  timestamptz;
    job          record;
    new_state    text;
    settled      jsonb;
    i            integer;
BEGIN
    v_max_attempts := user_max_attempts(p_user_id);
    SELECT c.retry_backoff_base_seconds AS base, c.retry_backoff_max_seconds AS max
      INTO v_backoff
      FROM configs c
     WHERE c.user_id = p_user_id AND c.is_active;

    PERFORM 1 FROM jobs j
     WHERE j.user_id = p_user_id AND j.job_id = ANY (p_job_ids)
     ORDER BY j.job_id
       FOR UPDATE;

    SELECT coalesce(array_agg(DISTINCT n.name ORDER BY n.name), '{}')
      INTO bucket_names
      FROM (SELECT k.name COLLATE "C" AS name
              FROM unnest(p_actual_costs) AS a(costs)
             CROSS JOIN LATERAL jsonb_object_keys(a.costs) AS k(name)
            UNION
            SELECT t.name COLLATE "C"
              FROM unnest(p_upstream_throttled) AS u(names)
             CROSS JOIN LATERAL jsonb_array_elements_text(u.names) AS t(name)) n;
    PERFORM 1 FROM token_buckets tb
     WHERE tb.user_id = p_user_id AND tb.dependency = ANY (bucket_names)
     ORDER BY tb.dependency
       FOR UPDATE;
    v_now := clock_timestamp();

    FOR i IN 1 .. coalesce(cardinality(p_job_ids), 0) LOOP
        SELECT j.state, j.lease_token, j.lease_expires_at, j.attempts, j.dependencies,
               j.actual_costs, j.shadow_status, j.tenant_id, j.paid
          INTO job
          FROM jobs j
         WHERE j.user_id = p_user_id AND j.job_id = p_job_ids[i];
        IF NOT FOUND THEN
            RETURN QUERY SELECT p_job_ids[i], 'not_found'::text, NULL::text, NULL::integer;
            CONTINUE;
        END IF;
        IF job.state IS DISTINCT FROM 'running' OR job.lease_token <> p_lease_tokens[i]
           OR job.lease_expires_at <= v_now THEN
            RETURN QUERY SELECT p_job_ids[i], 'stale_lease'::text, NULL::text, NULL::integer;
            CONTINUE;
        END IF;

        settled := NULL;
        IF p_actual_costs[i] IS NOT NULL THEN
            settled := settle_costs(p_user_id, job.dependencies, job.actual_costs,
                                    p_actual_costs[i], v_now, job.tenant_id,
                                    coalesce(job.paid,
                                             job.shadow_status IS DISTINCT FROM 'Rejected'));
        END IF;
        IF p_upstream_throttled[i] IS NOT NULL
           AND jsonb_array_length(p_upstream_throttled[i]) > 0 THEN
            SELECT array_agg(DISTINCT t.name COLLATE "C" ORDER BY t.name COLLATE "C")
              INTO throttled
              FROM jsonb_array_elements_text(p_upstream_throttled[i]) AS t(name);
            PERFORM report_upstream_throttled(p_user_id, throttled, v_now);
        END IF;

        IF NOT p_failed[i] THEN
            new_state := 'completed';
        ELSIF p_retry[i] AND job.attempts < v_max_attempts THEN
            v_wait := coalesce(make_interval(secs => p_retry_after_seconds[i]),
                               retry_backoff(v_backoff.base, v_backoff.max, job.attempts),
                               interval '0');
            new_state := 'waiting';
        ELSE
            new_state := 'failed';
        END IF;

        UPDATE jobs j
           SET state = new_state,
               lease_token = NULL,
               lease_expires_at = NULL,
               result = CASE WHEN p_failed[i] THEN j.result ELSE p_results[i] END,
               error = CASE WHEN p_failed[i] THEN p_errors[i] ELSE j.error END,
               actual_costs = coalesce(settled, j.actual_costs),
               settled_at = CASE WHEN settled IS NULL THEN j.settled_at ELSE v_now END,
               run_at = CASE WHEN new_state = 'waiting' THEN v_now + v_wait END,
               paid = CASE WHEN new_state = 'waiting' THEN false ELSE j.paid END,
               finished_at = CASE WHEN new_state IN ('queued', 'waiting') THEN NULL
                                  ELSE v_now END
         WHERE j.user_id = p_user_id AND j.job_id = p_job_ids[i];
        RETURN QUERY SELECT p_job_ids[i], 'ok'::text, new_state, job.attempts;
    END LOOP;
END
$fn$;
