-- hand_out_jobs(): lease up to p_limit jobs of a user to the calling worker, paying for the
-- waiting ones as they are handed out; POST /system/jobs/claim.
--
-- One row per job handed out, in hand-out order, then one last row with no job that counts
-- the leases taken back (leases_expired) and the waiting jobs that expired (jobs_expired)
-- during the call, for the metrics; job rows leave both NULL.
--
-- Two kinds of job can be handed out: a queued job, paid for when admission accepted it at
-- once, and a waiting job in its dependencies' line (jobs.in_line_at), which takes its tokens
-- now, under the buckets' row locks, with the priority reserve and its tenant's share applied
-- as admission applies them. Highest priority first, then first in line (a queued job's line
-- time is its created_at), then job id.
--
-- The line. A waiting job holds its place on each of its dependencies: no job of the same or
-- a lower priority on one of them is handed out (nor paid) before it. Admission keeps that
-- rule through token_buckets.line_jobs and line_tokens, counts per priority of the jobs in
-- each bucket's line (admit_requests.sql); here it is kept by walking the line in order: a
-- waiting job that cannot be paid blocks each of its buckets for every job after it. A claim
-- filtered by tenant, batch or dependency still walks the whole line: a waiting job outside
-- the filter is paid for in the walk's arithmetic only (its tokens stay in the bucket, but
-- nobody after it takes them), and blocks its buckets when it does not fit. Such a worker can
-- get fewer jobs than it asked for, or none, while jobs it would take wait behind others.
--
-- Before the hand-out, in order, each bounded to 1000 jobs a claim (the next claims do the
-- rest), and each before the buckets are locked, so that admissions wait for no more of a
-- claim than its walk:
--   1. jobs whose lease has expired (a worker died or stalled) are taken back: failed when
--      they have used the config's max_attempts, else waiting again, due after the config's
--      retry_backoff (retry_backoff(); at once when it is off). Every attempt is paid for: a
--      job handed out again takes its tokens again.
--   2. waiting jobs past their max wait (jobs.expires_at) end `expired`, leaving the line.
--   3. waiting jobs whose run_at has come (a retry's backoff, a worker's retry_after_seconds,
--      a job submitted with run_at) join the line, behind those already in it. A job that
--      names no configured dependency needs no tokens, and is queued at once; so is every
--      job under a shadow-mode config, which takes no token for a retry.
-- A job whose cost now exceeds its bucket's capacity (the config changed) can never be paid:
-- it is failed when the walk reaches it.
--
-- The walk merges the line, read through jobs_in_line, with the queued jobs the filter takes,
-- read through jobs_queued, each in its order, so it reads only as far as it goes: it stops
-- after p_limit hand-outs, and leaves the line after 1000 waiting jobs or once it holds
-- every bucket that has a line (only queued jobs can still go then). Rows are taken FOR
-- UPDATE SKIP LOCKED: a claim never waits for a job, and two claims never get the same one.
-- A user with nothing waiting due, expired or in line takes no bucket lock: its claims are
-- the queued jobs' one statement, as before pacing.
--
-- Lock order: the user's buckets in name order, then its tenant buckets (each after its
-- dependency's); a job row only with SKIP LOCKED. finish_jobs() and cancel_jobs() take job
-- rows and then buckets, admission buckets only: none waits for a job row a claim holds
-- while holding a bucket.
--
-- Partitions (migration 0024): every statement that looks for jobs by their state reads
-- only the partitions from the user's jobs_unfinished_from, the id below which none of its
-- jobs is queued, waiting or running (`janus maintain` raises it, retry_jobs() lowers it), to
-- the first id of a minute from now (unfinished_until()), so that a claim probes the one or
-- two partitions of now, however many the retention keeps and however many are made ahead.
--
-- Raises J0U01 for an unknown user. Claims go on while the user is paused (pausing stops
-- admission, not the draining of what was admitted). max_attempts is the active config's
-- (user_max_attempts(): a user with jobs always has one).
--
-- The live definition is janus/db/sql/hand_out_jobs.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION hand_out_jobs(
    p_user_id       uuid,
    p_limit         integer,
    p_lease_seconds integer,
    p_tenant_id     text,     -- null: any tenant
    p_batch_name    text,     -- null: any batch
    p_dependencies  text[]    -- null: any job; else only jobs that call none but these
)
RETURNS TABLE (job_id uuid, batch_name text, tenant_id text, priority smallint,
               dependencies jsonb, payload json, attempt integer, lease_token uuid,
               lease_expires_at timestamptz, leases_expired integer, jobs_expired integer)
LANGUAGE plpgsql
-- Each statement planned for the values of its call: the partitions of jobs outside the
-- user's bounds are left out while planning (a generic plan keeps every one, and guesses the
-- bounds' selectivity: 40 ms for a claim beside 100,000 waiting jobs, where this takes 0.05).
SET plan_cache_mode = force_custom_plan
AS $fn$
#variable_conflict use_column
DECLARE
    v_max_attempts   integer;
    cfg              record;
    claimed_at       timestamptz := clock_timestamp();
    lease_until      timestamptz;
    -- The user's buckets, in name order: the order their rows are locked in.
    bucket_name      text[];
    bucket_capacity  bigint[];
    bucket_refill    numeric[];
    bucket_effective numeric[];
    bucket_recovery  numeric[];
    bucket_tokens    numeric[];   -- real: what is written back
    bucket_avail     numeric[];   -- what the walk may still give (less what it set aside)
    bucket_refilled  timestamptz[];
    bucket_changed   boolean[];
    bucket_blocked   boolean[];
    -- Per bucket and priority, at (b - 1) * 10 + priority: its line.
    waiting_jobs     integer[];
    waiting_tokens   numeric[];
    -- Tenant buckets met by the walk, locked as they are met.
    tenant_dep       text[] := '{}';
    tenant_name      text[] := '{}';
    tenant_capacity  numeric[] := '{}';
    tenant_refill    numeric[] := '{}';
    tenant_tokens    numeric[] := '{}';
    tenant_avail     numeric[] := '{}';
    tenant_changed   boolean[] := '{}';
    shares_on        boolean;
    share            numeric;
    cand             record;
    dep              record;
    b                integer;
    t                integer;
    handed           integer := 0;
    walked           integer := 0;
    fits             boolean;
    queued_cursor    refcursor;
    line_cursor      refcursor;
    next_queued      record;
    next_in_line     record;
    has_queued       boolean;
    has_in_line      boolean;
    matches          boolean;
    cap              numeric;
    refill           numeric;
    have             numeric;
    too_big          text;
    picked_ids       uuid[] := '{}';
    -- What steps 2 and 3 take out of the lines or put in: per (dependency, priority).
    delta_dependency text[];
    delta_priority   integer[];
    delta_jobs       bigint[];
    delta_tokens     numeric[];
    bucket_lined     boolean[] := '{}';  -- a bucket with a line
    open_lines       integer;            -- buckets with a line that the walk has not held
    lines_at_start   integer;
    e                integer;
    k                integer;
    leases_back      integer;
    expired_now      integer := 0;
    -- No job of the user below v_from, or at v_until or above, is unfinished.
    v_from           uuid;
    v_until          uuid;
BEGIN
    v_max_attempts := user_max_attempts(p_user_id);
    SELECT u.jobs_unfinished_from INTO v_from FROM users u WHERE u.user_id = p_user_id;
    v_until := unfinished_until(v_from, claimed_at);
    SELECT c.retry_backoff_base_seconds AS backoff_base, c.retry_backoff_max_seconds AS backoff_max,
           c.mode, c.priority_reserve, c.tenant_share, c.tenant_overrides
      INTO cfg
      FROM configs c
     WHERE c.user_id = p_user_id AND c.is_active;

    -- 1. Expired leases, through the small partial index jobs_leased.
    UPDATE jobs j
       SET state = CASE WHEN j.attempts >= v_max_attempts THEN 'failed' ELSE 'waiting' END,
           run_at = CASE WHEN j.attempts < v_max_attempts
                         THEN claimed_at + coalesce(expired.wait, interval '0') END,
           finished_at = CASE WHEN j.attempts >= v_max_attempts THEN claimed_at END,
           error = 'lease expired',
           paid = CASE WHEN j.attempts >= v_max_attempts THEN j.paid ELSE false END,
           lease_token = NULL,
           lease_expires_at = NULL
      FROM (SELECT e.job_id,
                   retry_backoff(cfg.backoff_base, cfg.backoff_max, e.attempts) AS wait
              FROM jobs e
             WHERE e.user_id = p_user_id AND e.state = 'running'
               AND e.job_id >= v_from AND e.job_id < v_until
               AND e.lease_expires_at <= claimed_at
             ORDER BY e.lease_expires_at
             LIMIT 1000
               FOR UPDATE SKIP LOCKED) expired
     WHERE j.user_id = p_user_id AND j.job_id = expired.job_id
       AND j.job_id >= v_from AND j.job_id < v_until;
    GET DIAGNOSTICS leases_back = ROW_COUNT;

    -- Nothing in line, due or past its max wait: the queued jobs alone, in one statement.
    IF NOT EXISTS (SELECT 1 FROM jobs w
                    WHERE w.user_id = p_user_id AND w.state = 'waiting'
                      AND w.job_id >= v_from AND w.job_id < v_until
                      AND w.in_line_at IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM jobs w
                        WHERE w.user_id = p_user_id AND w.state = 'waiting'
                          AND w.job_id >= v_from AND w.job_id < v_until
                          AND w.run_at <= claimed_at)
       AND NOT EXISTS (SELECT 1 FROM jobs w
                        WHERE w.user_id = p_user_id AND w.state = 'waiting'
                          AND w.job_id >= v_from AND w.job_id < v_until
                          AND w.expires_at <= claimed_at) THEN
        RETURN QUERY
            SELECT q.job_id, q.batch_name, q.tenant_id, q.priority, q.dependencies, q.payload,
                   q.attempt, q.lease_token, q.lease_expires_at, NULL::integer, NULL::integer
              FROM claim_queued_jobs(p_user_id, p_limit, claimed_at, p_lease_seconds,
                                     p_tenant_id, p_batch_name, p_dependencies) q;
        RETURN QUERY SELECT NULL::uuid, NULL::text, NULL::text, NULL::smallint, NULL::jsonb,
                            NULL::json, NULL::integer, NULL::uuid, NULL::timestamptz,
                            leases_back, 0;
        RETURN;
    END IF;

    -- 2. Past their max wait: expired, out of the line; and 3. due: into the line (or queued,
    -- when no token is to be paid). Both before the buckets are locked, so that admissions
    -- wait for no more of a claim than its walk; each tells, by dependency and priority, what
    -- it takes out of the lines or puts in, which is applied to them under the locks below
    -- (nobody else sees either change before this transaction commits). Which dependencies
    -- have a bucket is read without a lock: only an activation changes that.
    SELECT coalesce(array_agg(tb.dependency), '{}') INTO bucket_name
      FROM token_buckets tb WHERE tb.user_id = p_user_id;
    WITH gone AS (
        UPDATE jobs j
           SET state = 'expired',
               finished_at = claimed_at,
               error = 'not handed out within its max wait',
               run_at = NULL,
               in_line_at = NULL,
               expires_at = NULL,
               estimated_start = NULL
          FROM (SELECT x.job_id, x.in_line_at IS NOT NULL AS was_in_line
                  FROM jobs x
                 WHERE x.user_id = p_user_id AND x.state = 'waiting'
                   AND x.job_id >= v_from AND x.job_id < v_until
                   AND x.expires_at <= claimed_at
                 ORDER BY x.expires_at
                 LIMIT 1000
                   FOR UPDATE SKIP LOCKED) e
         WHERE j.user_id = p_user_id AND j.job_id = e.job_id
           AND j.job_id >= v_from AND j.job_id < v_until
        RETURNING e.was_in_line, j.priority, j.dependencies
    ), left_line AS (
        SELECT d.key AS dependency, g.priority, -count(*) AS jobs, -sum(d.value::bigint) AS tokens
          FROM gone g
         CROSS JOIN LATERAL jsonb_each_text(g.dependencies) AS d
         WHERE g.was_in_line
         GROUP BY 1, 2
    )
    SELECT (SELECT count(*) FROM gone)::integer,
           coalesce((SELECT array_agg(l.dependency) FROM left_line l), '{}'),
           coalesce((SELECT array_agg(l.priority) FROM left_line l), '{}'),
           coalesce((SELECT array_agg(l.jobs) FROM left_line l), '{}'),
           coalesce((SELECT array_agg(l.tokens) FROM left_line l), '{}')
      INTO expired_now, delta_dependency, delta_priority, delta_jobs, delta_tokens;

    WITH lined AS (
        UPDATE jobs j
           SET state = CASE WHEN due.needs_tokens THEN 'waiting' ELSE 'queued' END,
               in_line_at = CASE WHEN due.needs_tokens THEN claimed_at END,
               expires_at = CASE WHEN due.needs_tokens THEN j.expires_at END,
               estimated_start = NULL,
               paid = false,
               run_at = NULL
          FROM (SELECT w.job_id,
                       coalesce(cfg.mode = 'enforce', false)
                       AND EXISTS (SELECT 1 FROM jsonb_object_keys(w.dependencies) AS k(name)
                                    WHERE k.name = ANY (bucket_name)) AS needs_tokens
                  FROM jobs w
                 WHERE w.user_id = p_user_id AND w.state = 'waiting'
                   AND w.job_id >= v_from AND w.job_id < v_until
                   AND w.run_at <= claimed_at
                 ORDER BY w.run_at, w.job_id
                 LIMIT 1000
                   FOR UPDATE SKIP LOCKED) due
         WHERE j.user_id = p_user_id AND j.job_id = due.job_id
           AND j.job_id >= v_from AND j.job_id < v_until
        RETURNING due.needs_tokens, j.priority, j.dependencies
    ), joined AS (
        SELECT d.key AS dependency, g.priority, count(*) AS jobs, sum(d.value::bigint) AS tokens
          FROM lined g
         CROSS JOIN LATERAL jsonb_each_text(g.dependencies) AS d
         WHERE g.needs_tokens
         GROUP BY 1, 2
    )
    SELECT delta_dependency || coalesce(array_agg(l.dependency), '{}'),
           delta_priority || coalesce(array_agg(l.priority), '{}'),
           delta_jobs || coalesce(array_agg(l.jobs), '{}'),
           delta_tokens || coalesce(array_agg(l.tokens), '{}')
      INTO delta_dependency, delta_priority, delta_jobs, delta_tokens
      FROM joined l;

    SELECT coalesce(array_agg(l.dependency ORDER BY l.dependency), '{}'),
           coalesce(array_agg(l.capacity ORDER BY l.dependency), '{}'),
           coalesce(array_agg(l.refill_per_second ORDER BY l.dependency), '{}'),
           coalesce(array_agg(l.effective_refill_per_second ORDER BY l.dependency), '{}'),
           coalesce(array_agg(l.adaptive_recovery_per_second ORDER BY l.dependency), '{}'),
           coalesce(array_agg(l.tokens ORDER BY l.dependency), '{}'),
           coalesce(array_agg(l.refilled_at ORDER BY l.dependency), '{}')
      INTO bucket_name, bucket_capacity, bucket_refill, bucket_effective, bucket_recovery,
           bucket_tokens, bucket_refilled
      FROM (SELECT tb.dependency, tb.capacity, tb.refill_per_second,
                   tb.effective_refill_per_second, tb.adaptive_recovery_per_second, tb.tokens,
                   tb.refilled_at
              FROM token_buckets tb
             WHERE tb.user_id = p_user_id
             ORDER BY tb.dependency
               FOR UPDATE) l;
    SELECT coalesce(array_agg(x.n ORDER BY tb.dependency, x.p), '{}'),
           coalesce(array_agg(x.tokens ORDER BY tb.dependency, x.p), '{}')
      INTO waiting_jobs, waiting_tokens
      FROM token_buckets tb
     CROSS JOIN LATERAL unnest(tb.line_jobs, tb.line_tokens) WITH ORDINALITY AS x(n, tokens, p)
     WHERE tb.user_id = p_user_id;

    -- The clock, read once the bucket locks are held (admit_requests.sql).
    claimed_at := clock_timestamp();
    lease_until := claimed_at + make_interval(secs => p_lease_seconds);
    FOR b IN 1 .. cardinality(bucket_name) LOOP
        bucket_tokens[b] := bucket_tokens_at(bucket_capacity[b], bucket_tokens[b],
                                             bucket_refill[b], bucket_effective[b],
                                             bucket_recovery[b], bucket_refilled[b], claimed_at);
        bucket_effective[b] := bucket_rate_at(bucket_refill[b], bucket_effective[b],
                                              bucket_recovery[b], bucket_refilled[b], claimed_at);
    END LOOP;
    bucket_avail := bucket_tokens;
    bucket_changed := array_fill(false, ARRAY[cardinality(bucket_name)]);
    bucket_blocked := array_fill(false, ARRAY[cardinality(bucket_name)]);
    shares_on := coalesce(cfg.tenant_share < 1 OR cfg.tenant_overrides <> '{}'::jsonb, false);

    -- The lines as steps 2 and 3 left them; and which buckets have one, for the walk.
    FOR k IN 1 .. cardinality(delta_dependency) LOOP
        b := array_position(bucket_name, delta_dependency[k]);
        CONTINUE WHEN b IS NULL;
        e := (b - 1) * 10 + delta_priority[k];
        waiting_jobs[e] := greatest(0, waiting_jobs[e] + delta_jobs[k]);
        waiting_tokens[e] := greatest(0, waiting_tokens[e] + delta_tokens[k]);
        bucket_changed[b] := true;
    END LOOP;
    open_lines := 0;
    FOR b IN 1 .. cardinality(bucket_name) LOOP
        bucket_lined[b] := 0 < ANY (waiting_jobs[(b - 1) * 10 + 1 : b * 10]);
        IF bucket_lined[b] THEN
            open_lines := open_lines + 1;
        END IF;
    END LOOP;
    lines_at_start := open_lines;

    -- The walk: the queued jobs the filter takes (jobs_queued) and the line (jobs_in_line),
    -- each read in its order by a cursor of its own and merged here, so that only what the
    -- walk reaches is read. (A UNION ALL of both, ordered, is sorted whole by the planner.)
    OPEN queued_cursor FOR
        SELECT q.job_id, q.priority, q.created_at AS line_at, q.tenant_id, q.batch_name,
               q.dependencies, false AS in_line
          FROM jobs q
         WHERE q.user_id = p_user_id AND q.state = 'queued'
           AND q.job_id >= v_from AND q.job_id < v_until
           AND (p_tenant_id IS NULL OR q.tenant_id = p_tenant_id)
           AND (p_batch_name IS NULL OR q.batch_name = p_batch_name)
           AND (p_dependencies IS NULL
                OR NOT EXISTS (SELECT 1 FROM jsonb_object_keys(q.dependencies) AS k(name)
                                WHERE k.name <> ALL (p_dependencies)))
         ORDER BY q.priority DESC, q.created_at, q.job_id;
    OPEN line_cursor FOR
        SELECT w.job_id, w.priority, w.in_line_at AS line_at, w.tenant_id, w.batch_name,
               w.dependencies, true AS in_line
          FROM jobs w
         WHERE w.user_id = p_user_id AND w.state = 'waiting' AND w.in_line_at IS NOT NULL
           AND w.job_id >= v_from AND w.job_id < v_until
         ORDER BY w.priority DESC, w.in_line_at, w.job_id;
    FETCH queued_cursor INTO next_queued;
    has_queued := FOUND;
    FETCH line_cursor INTO next_in_line;
    has_in_line := FOUND;

    <<walk>>
    LOOP
        EXIT walk WHEN handed >= p_limit OR NOT (has_queued OR has_in_line);
        IF has_in_line
           AND (NOT has_queued OR next_in_line.priority > next_queued.priority
                OR next_in_line.priority = next_queued.priority
                   AND (next_in_line.line_at, next_in_line.job_id)
                       < (next_queued.line_at, next_queued.job_id)) THEN
            cand := next_in_line;
            FETCH line_cursor INTO next_in_line;
            has_in_line := FOUND;
            walked := walked + 1;
            -- Past 1000 waiting jobs, or with every bucket that has a line held, the line is
            -- left for the next claims: only queued jobs can still go.
            IF walked > 1000 OR (lines_at_start > 0 AND open_lines = 0) THEN
                has_in_line := false;
                CONTINUE walk;
            END IF;
        ELSE
            cand := next_queued;
            FETCH queued_cursor INTO next_queued;
            has_queued := FOUND;
        END IF;
        IF cand.in_line THEN
            -- Outside the filter, it is walked past below, its place kept. (The queued
            -- cursor takes only what the filter takes.)
            matches := (p_tenant_id IS NULL OR cand.tenant_id = p_tenant_id)
                       AND (p_batch_name IS NULL OR cand.batch_name = p_batch_name)
                       AND (p_dependencies IS NULL
                            OR NOT EXISTS (SELECT 1
                                             FROM jsonb_object_keys(cand.dependencies) AS k(name)
                                            WHERE k.name <> ALL (p_dependencies)));
            -- Does it fit, behind everything before it?
            fits := true;
            too_big := NULL;
            FOR dep IN SELECT d.key COLLATE "C" AS name, d.value::bigint AS cost
                         FROM jsonb_each_text(cand.dependencies) AS d ORDER BY 1 LOOP
                b := array_position(bucket_name, dep.name);
                CONTINUE WHEN b IS NULL;
                IF dep.cost > bucket_capacity[b] THEN
                    too_big := format('dependency ''%s'' cost %s exceeds capacity %s',
                                      dep.name, dep.cost, bucket_capacity[b]);
                    EXIT;
                END IF;
                IF bucket_blocked[b]
                   OR reserve_shortfall_x9(bucket_capacity[b], bucket_avail[b], dep.cost,
                                           cfg.priority_reserve, cand.priority) > 0 THEN
                    fits := false;
                END IF;
                IF shares_on THEN
                    share := tenant_share_of(cfg.tenant_overrides, cfg.tenant_share,
                                             cand.tenant_id);
                    CONTINUE WHEN share >= 1;
                    t := NULL;
                    FOR k IN 1 .. cardinality(tenant_name) LOOP
                        IF tenant_dep[k] = dep.name AND tenant_name[k] = cand.tenant_id THEN
                            t := k;
                            EXIT;
                        END IF;
                    END LOOP;
                    IF t IS NULL THEN
                        t := cardinality(tenant_name) + 1;
                        tenant_dep[t] := dep.name;
                        tenant_name[t] := cand.tenant_id;
                        tenant_changed[t] := false;
                        SELECT tnt.capacity, tnt.refill_per_second,
                               tenant_tokens_at(tnt.capacity, tnt.tokens, tnt.refill_per_second,
                                                tnt.refilled_at, claimed_at)
                          INTO cap, refill, have
                          FROM tenant_buckets tnt
                         WHERE tnt.user_id = p_user_id AND tnt.dependency = dep.name
                           AND tnt.tenant_id = cand.tenant_id
                           FOR UPDATE;
                        IF NOT FOUND THEN
                            cap := share * bucket_capacity[b];
                            refill := share * bucket_refill[b];
                            have := cap;
                        END IF;
                        tenant_capacity[t] := cap;
                        tenant_refill[t] := refill;
                        tenant_tokens[t] := have;
                        tenant_avail[t] := have;
                    END IF;
                    IF reserve_shortfall_x9(tenant_capacity[t], tenant_avail[t], dep.cost,
                                            cfg.priority_reserve, cand.priority) > 0 THEN
                        fits := false;
                    END IF;
                END IF;
            END LOOP;

            IF too_big IS NOT NULL THEN
                -- Never payable: failed, out of the line.
                UPDATE jobs j
                   SET state = 'failed', finished_at = claimed_at, error = too_big,
                       in_line_at = NULL, expires_at = NULL, estimated_start = NULL
                 WHERE j.user_id = p_user_id AND j.job_id = cand.job_id
                   AND j.state = 'waiting' AND j.in_line_at IS NOT NULL;
                fits := false;
            ELSIF fits AND NOT matches THEN
                -- Outside the filter, and it fits: its tokens are set aside for it.
                NULL;
            ELSIF fits THEN
                -- Ours, if no one else holds it (a cancel, say).
                PERFORM 1 FROM jobs j
                  WHERE j.user_id = p_user_id AND j.job_id = cand.job_id
                    AND j.state = 'waiting' AND j.in_line_at IS NOT NULL
                    FOR UPDATE SKIP LOCKED;
                fits := FOUND;
                IF fits THEN
                    picked_ids := picked_ids || cand.job_id;
                    handed := handed + 1;
                END IF;
            END IF;

            IF too_big IS NULL AND NOT fits THEN
                FOR dep IN SELECT d.key AS name FROM jsonb_each_text(cand.dependencies) AS d LOOP
                    b := array_position(bucket_name, dep.name);
                    CONTINUE WHEN b IS NULL OR bucket_blocked[b];
                    bucket_blocked[b] := true;
                    IF bucket_lined[b] THEN
                        open_lines := open_lines - 1;
                    END IF;
                END LOOP;
                CONTINUE walk;
            END IF;

            -- Paid (or set aside): its tokens leave the walk's buckets; paid, they leave
            -- the buckets and the line.
            FOR dep IN SELECT d.key AS name, d.value::bigint AS cost
                         FROM jsonb_each_text(cand.dependencies) AS d LOOP
                b := array_position(bucket_name, dep.name);
                CONTINUE WHEN b IS NULL;
                IF too_big IS NULL THEN
                    bucket_avail[b] := bucket_avail[b] - dep.cost;
                END IF;
                IF too_big IS NOT NULL OR cand.job_id = ANY (picked_ids) THEN
                    IF too_big IS NULL THEN
                        bucket_tokens[b] := bucket_tokens[b] - dep.cost;
                    END IF;
                    waiting_jobs[(b - 1) * 10 + cand.priority] :=
                        greatest(0, waiting_jobs[(b - 1) * 10 + cand.priority] - 1);
                    waiting_tokens[(b - 1) * 10 + cand.priority] :=
                        greatest(0, waiting_tokens[(b - 1) * 10 + cand.priority] - dep.cost);
                    bucket_changed[b] := true;
                END IF;
                CONTINUE WHEN NOT shares_on OR too_big IS NOT NULL;
                FOR t IN 1 .. cardinality(tenant_name) LOOP
                    CONTINUE WHEN tenant_dep[t] <> dep.name OR tenant_name[t] <> cand.tenant_id;
                    tenant_avail[t] := tenant_avail[t] - dep.cost;
                    IF cand.job_id = ANY (picked_ids) THEN
                        tenant_tokens[t] := tenant_tokens[t] - dep.cost;
                        tenant_changed[t] := true;
                    END IF;
                END LOOP;
            END LOOP;
        ELSE
            PERFORM 1 FROM jobs j
              WHERE j.user_id = p_user_id AND j.job_id = cand.job_id AND j.state = 'queued'
                FOR UPDATE SKIP LOCKED;
            IF FOUND THEN
                picked_ids := picked_ids || cand.job_id;
                handed := handed + 1;
            END IF;
        END IF;
    END LOOP;

    UPDATE token_buckets tb
       SET tokens = bucket_tokens[u.b],
           effective_refill_per_second = bucket_effective[u.b],
           refilled_at = greatest(tb.refilled_at, claimed_at),
           line_jobs = waiting_jobs[(u.b - 1) * 10 + 1 : u.b * 10],
           line_tokens = waiting_tokens[(u.b - 1) * 10 + 1 : u.b * 10]
      FROM generate_subscripts(bucket_name, 1) AS u(b)
     WHERE tb.user_id = p_user_id AND tb.dependency = bucket_name[u.b] AND bucket_changed[u.b];

    INSERT INTO tenant_buckets AS tnt (user_id, dependency, tenant_id, capacity,
                                       refill_per_second, tokens, refilled_at)
    SELECT p_user_id, tenant_dep[k], tenant_name[k], tenant_capacity[k], tenant_refill[k],
           tenant_tokens[k], claimed_at
      FROM generate_subscripts(tenant_name, 1) AS k
     WHERE tenant_changed[k]
    ON CONFLICT (user_id, dependency, tenant_id) DO UPDATE
       SET tokens = excluded.tokens,
           refilled_at = greatest(tnt.refilled_at, excluded.refilled_at);

    -- Handed out: running, under a new lease; a new attempt, settled on its own.
    UPDATE jobs j
       SET state = 'running',
           attempts = j.attempts + 1,
           lease_token = gen_random_uuid(),
           lease_expires_at = lease_until,
           in_line_at = NULL,
           expires_at = NULL,
           estimated_start = NULL,
           paid = CASE WHEN j.state = 'waiting' THEN true ELSE j.paid END,
           actual_costs = CASE WHEN j.state = 'waiting' THEN NULL ELSE j.actual_costs END,
           settled_at = CASE WHEN j.state = 'waiting' THEN NULL ELSE j.settled_at END
     WHERE j.user_id = p_user_id AND j.job_id = ANY (picked_ids);

    RETURN QUERY
        SELECT j.job_id, j.batch_name, j.tenant_id, j.priority, j.dependencies, j.payload,
               j.attempts, j.lease_token, j.lease_expires_at, NULL::integer, NULL::integer
          FROM jobs j
         WHERE j.user_id = p_user_id AND j.job_id = ANY (picked_ids)
         ORDER BY array_position(picked_ids, j.job_id);

    RETURN QUERY SELECT NULL::uuid, NULL::text, NULL::text, NULL::smallint, NULL::jsonb,
                        NULL::json, NULL::integer, NULL::uuid, NULL::timestamptz, leases_back,
                        expired_now;
END
$fn$;
