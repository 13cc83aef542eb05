-- admit_requests(): the whole admission decision, for one request or a group of one user's
-- requests, in one call; the only place a job is decided.
--
-- A group is what the web process sends when several of a user's single jobs and partial
-- batches arrived while its connections were busy (janus/grouping.py): they are decided in
-- one statement, one transaction and one commit, as if they had come one by one in the
-- group's order. Each request is decided in its turn, its jobs highest priority first (ties
-- in its own order), against the buckets as the requests before it left them, and gets the
-- decisions, reasons, Retry-After and budgets it would have got alone at that place. An atomic
-- batch and a quote are always a group of one (p_atomic, p_quote).
--
-- It refills the buckets (at their effective rate, which an adaptive bucket lowers on
-- upstream throttling and recovers over time: bucket_tokens_at(), bucket_rate_at(),
-- report_upstream_throttled()), runs the checks of the contract in their order, debits the
-- buckets of accepted jobs and stores the jobs with the config version that decided them and
-- the Retry-After they were given. Reasons are produced here, in the exact text of the
-- contract, each with its code for machines (reason_code, a closed set that jobs.reason_code
-- checks): min_priority, unknown_dependency, over_capacity, rate_limit (the priority reserve
-- included), tenant_share and atomic_batch; NULL for an accepted job.
--
-- Idempotency keys. A request with a key first takes a transaction-scoped advisory lock on
-- (user, key) without waiting: one that arrives while another transaction decides the same
-- key answers J0K09 (409). A remembered key answers from idempotency_keys, marked replayed
-- (J0K22, 422, when the request differs). Otherwise the request is decided and, when at least
-- one of its jobs was accepted, its decisions are remembered. A key used twice in one group
-- is answered as the second request would be alone, after the first: a replay of the first
-- (or J0K22) when the first was remembered, decided anew when it was not. The primary key of
-- idempotency_keys, not the advisory lock, is what guarantees one decision per key: a writer
-- that finds the key taken raises 40001, and the caller's retry loop then finds the
-- remembered answer. A replay decides nothing and reads no bucket, so it carries no budgets
-- and no Retry-After: the remembered answer is the decisions, not a moment long gone.
--
-- Errors that belong to a request, or to the user, answer each request they concern with one
-- row whose `error` is the SQLSTATE it would have raised alone (janus/db/errors.py): J0K09 key
-- in use, J0K22 key reused, J0U01 unknown user, J0C01 no active config, J0P01 service paused
-- (users.paused, set_paused()). A replay is answered before the user is looked at, as a
-- request with a remembered key always was.
--
-- Tenant shares: under a config with `tenant_share` s < 1 (or a `tenant_overrides` entry
-- below 1), a tenant also has its own bucket per dependency (tenant_buckets), of capacity
-- s x C and refill s x R, and a job takes its cost from both buckets or from neither. A
-- tenant bucket without a row is full: rows are written only when a job debits them, and
-- `janus prune` deletes the ones that are full again. Every tenant bucket is locked after
-- its dependency's bucket, so the dependency's lock serialises all writers of its tenant
-- buckets and the lock order (dependency buckets by name, then tenant buckets by dependency
-- and tenant) cannot deadlock.
--
-- Shadow mode (config `mode` shadow): every job is decided as in enforce mode, the buckets
-- are debited by the jobs enforcement would accept, and then every job is accepted and
-- stored, with enforcement's decision in shadow_status, shadow_reason and shadow_reason_code.
-- Nothing waits for tokens; a job that names a future run_at still waits for it, as it would
-- under enforcement.
--
-- jobs.paid says whether the job's current attempt has taken its tokens: here, a job queued
-- at once that the buckets let in (not one only shadow mode let in). Settlement and cancel
-- give tokens back only for a paid attempt (finish_jobs(), cancel_jobs()).
--
-- A quote (p_quote) decides the same way against the same rows and stores nothing, debits
-- nothing and remembers nothing; its locks go with its transaction, which the caller rolls
-- back. fits_at is, for a job rejected for tokens, when it would fit if nothing else took
-- any (Retry-After rounds the same wait up to whole seconds).
--
-- The first row of each decided request also carries `budgets`: every bucket the request
-- named, as its decisions left it, in whole numbers (the resource turns them into the
-- RateLimit headers). They come from this call, under its locks and on its clock, so they
-- cost no second round trip.
--
-- The live definition is janus/db/sql/admit_requests.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION admit_requests(
    p_user_id          uuid,
    -- One element per request, in the group's order.
    p_sources          text[],
    p_batch_names      text[],
    p_job_counts       integer[],  -- its jobs: the next that many of the per-job arrays
    p_idempotency_keys text[],     -- NULL: no key
    p_request_hashes   bytea[],
    -- One element per job, request after request, each request's in its order. Parallel
    -- arrays, not one JSON document, so that nothing is parsed twice; payloads are json, not
    -- jsonb, to be stored exactly as sent.
    p_tenants          text[],
    p_priorities       smallint[],
    p_dependencies     jsonb[],    -- {name: cost}
    p_payloads         json[],
    p_atomic           boolean,    -- true (one request): if any job is rejected, store nothing
    p_quote            boolean DEFAULT false,  -- true (one request): decide only
    -- Pacing, each NULL for "the config's": per request, 'reject' or 'wait' when limited,
    -- and the longest a waiting job may wait (seconds); per job, the moment before which it
    -- may not start. Defaulted, so the release before pacing calls this function too.
    p_when_limited     text[] DEFAULT NULL,
    p_max_wait_seconds integer[] DEFAULT NULL,
    p_run_at           timestamptz[] DEFAULT NULL
)
RETURNS TABLE (request integer, job_id uuid, status text, reason text, retry_after integer,
               replayed boolean, budgets json, shadow_status text, shadow_reason text,
               fits_at timestamptz, reason_code text, shadow_reason_code text, error text,
               state text, estimated_start timestamptz)
LANGUAGE plpgsql
-- Generic plans, made once per connection. With the default, Postgres re-planned most of its
-- statements on every call (their array parameters make custom plans look cheaper), which
-- cost about a third of a single job's time in the database.
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    cfg               record;
    request_count     integer := cardinality(p_job_counts);
    job_count         integer := cardinality(p_priorities);
    evaluation_order  integer[];
    any_rejected      boolean := false;
    -- Per request.
    req_first_job     integer[];
    req_last_job      integer[];
    -- 'decide'; 'decided'; 'replay' (req_replay holds the remembered decisions); 'replay_of'
    -- (an earlier request of this group's, req_replay_of); 'error' (req_error).
    req_outcome       text[];
    req_error         text[];
    req_replay        jsonb[];
    req_replay_of     integer[];
    req_accepted      boolean[];
    req_snapshot      integer[];  -- where its buckets' tokens start in snapshot_tokens
    req_budgets       json[];
    req_waits         boolean[];   -- whether a job limited only by tokens waits
    req_max_wait      integer[];   -- seconds
    snapshot_tokens   numeric[] := '{}';
    locked            boolean[];
    remembered_hash   bytea[];
    remembered        jsonb[];
    -- Per job, by position.
    job_request       integer[];
    job_first_dep     integer[];
    job_last_dep      integer[];
    job_ids           uuid[];
    job_status        text[];
    job_reason        text[];
    job_reason_code   text[];
    job_retry         integer[];
    job_fits_at       timestamptz[];
    job_share         numeric[];     -- the tenant's share; 1: no tenant bucket
    job_state         text[];        -- an accepted job's: 'queued' or 'waiting'
    job_in_line       boolean[];     -- waiting in its dependencies' line
    job_run_at        timestamptz[]; -- waiting for this moment (p_run_at)
    job_expires       timestamptz[]; -- expired unless handed out before
    job_estimated     timestamptz[]; -- a waiting job's estimated start
    shadow_statuses   text[];
    shadow_reasons    text[];
    shadow_codes      text[];
    -- Per (job, dependency), ordered by job then dependency name.
    dep_job           integer[];
    dep_name          text[];
    dep_cost          bigint[];
    dep_bucket        integer[];
    dep_tenant_bucket integer[];     -- NULL: the job's tenant has no bucket for it
    -- Per bucket, ordered by dependency name: the order their rows are locked in.
    bucket_name       text[];
    bucket_capacity   bigint[];
    bucket_refill     numeric[];
    bucket_effective  numeric[];   -- the effective refill, tokens/s, as of decided_at
    bucket_recovery   numeric[];   -- NULL: not adaptive
    bucket_tokens     numeric[];
    bucket_refilled   timestamptz[];
    bucket_debited    boolean[];
    bucket_undebited  numeric[];   -- the tokens refilled to decided_at, before any debit
    -- The line (hand_out_jobs.sql): the highest priority a job waits at (0: none), and the jobs
    -- and tokens this call adds to it, at (b - 1) * 10 + priority.
    bucket_line_top   integer[];
    line_added_jobs   integer[];
    line_added_tokens numeric[];
    bucket_line_changed boolean[];
    -- Per tenant bucket, ordered by dependency then tenant: the order their rows are locked in.
    tenant_dependency text[];
    tenant_name       text[];
    tenant_capacity   numeric[];
    tenant_refill     numeric[];
    tenant_tokens     numeric[];
    tenant_refilled   timestamptz[];
    tenant_debited    boolean[];
    tenant_undebited  numeric[];
    shares_on         boolean;
    store             boolean;
    keyed             boolean := array_remove(p_idempotency_keys, NULL) <> '{}';
    remembering       integer;
    refusal           text;        -- J0U01, J0C01 or J0P01: no decision for this user
    decided_at        timestamptz;
    r                 integer;
    e                 integer;
    p                 integer;
    i                 integer;
    k                 integer;
    b                 integer;
    t                 integer;     -- a tenant bucket's index
    this_reason       text;
    this_code         text;
    -- Seconds until the job fits (reserve_wait()): NULL, it fits; 'Infinity', it never will.
    this_wait         numeric;
    bucket_short      numeric;     -- reserve_shortfall_x9() of a dependency's bucket
    share_short       numeric;     -- and of its tenant's bucket (NULL: none)
    line_short        boolean;     -- a job waits in the dependency's line at this priority
    ahead             numeric;     -- the tokens the jobs in that line wait for
    scheduled         boolean;     -- the job waits for its run_at: no token is looked at
BEGIN
    -- Each request's jobs, and each job's request. (One request, the most common call, is
    -- spared the statements that only index several.)
    IF request_count = 1 THEN
        req_first_job := '{1}';
        req_last_job := ARRAY[job_count];
        job_request := array_fill(1, ARRAY[job_count]);
    ELSE
        req_first_job := array_fill(NULL::integer, ARRAY[request_count]);
        req_last_job := array_fill(NULL::integer, ARRAY[request_count]);
        p := 0;
        FOR r IN 1 .. request_count LOOP
            req_first_job[r] := p + 1;
            p := p + p_job_counts[r];
            req_last_job[r] := p;
        END LOOP;
        SELECT array_agg(c.r ORDER BY c.r, s.n)
          INTO job_request
          FROM unnest(p_job_counts) WITH ORDINALITY AS c(jobs, r)
         CROSS JOIN LATERAL generate_series(1, c.jobs) AS s(n);
    END IF;
    req_outcome := array_fill('decide'::text, ARRAY[request_count]);
    req_error := array_fill(NULL::text, ARRAY[request_count]);
    req_replay := array_fill(NULL::jsonb, ARRAY[request_count]);
    req_replay_of := array_fill(NULL::integer, ARRAY[request_count]);
    req_accepted := array_fill(false, ARRAY[request_count]);
    req_snapshot := array_fill(NULL::integer, ARRAY[request_count]);
    req_budgets := array_fill(NULL::json, ARRAY[request_count]);

    -- The keys: each locked (one statement), then looked up (the next, whose snapshot sees
    -- what was committed before the locks were granted).
    IF keyed THEN
        SELECT array_agg(k.key IS NULL
                         OR pg_try_advisory_xact_lock(
                                hashtextextended(p_user_id::text || '/' || k.key, 0))
                         ORDER BY k.r)
          INTO locked
          FROM unnest(p_idempotency_keys) WITH ORDINALITY AS k(key, r);
        SELECT array_agg(m.request_hash ORDER BY k.r), array_agg(m.decisions ORDER BY k.r)
          INTO remembered_hash, remembered
          FROM unnest(p_idempotency_keys) WITH ORDINALITY AS k(key, r)
          LEFT JOIN idempotency_keys m
            ON m.user_id = p_user_id AND m.idempotency_key = k.key AND m.expires_at > now();
        FOR r IN 1 .. request_count LOOP
            IF NOT locked[r] THEN
                req_outcome[r] := 'error';
                req_error[r] := 'J0K09';
            ELSIF remembered[r] IS NULL THEN
                CONTINUE;
            ELSIF remembered_hash[r] <> p_request_hashes[r] THEN
                req_outcome[r] := 'error';
                req_error[r] := 'J0K22';
            ELSE
                req_outcome[r] := 'replay';
                req_replay[r] := remembered[r];
            END IF;
        END LOOP;
    END IF;

    -- The decision, unless every request was answered above; left early (EXIT deciding) when
    -- the user cannot be decided for.
    <<deciding>>
    BEGIN
        EXIT deciding WHEN 'decide' <> ALL (req_outcome);

        -- Highest priority first within each request, ties in its order; requests in turn.
        IF job_count = 1 THEN
            evaluation_order := '{1}';
        ELSE
            SELECT array_agg(n ORDER BY job_request[n], p_priorities[n] DESC, n)
              INTO evaluation_order
              FROM generate_series(1, job_count) AS n;
        END IF;

        -- The dependencies of the jobs of requests still to decide.
        SELECT coalesce(array_agg(d.ord ORDER BY d.ord, d.name), '{}'),
               coalesce(array_agg(d.name ORDER BY d.ord, d.name), '{}'),
               coalesce(array_agg(d.cost ORDER BY d.ord, d.name), '{}')
          INTO dep_job, dep_name, dep_cost
          FROM (SELECT j.ord::integer AS ord, e.key COLLATE "C" AS name,
                       e.value::bigint AS cost
                  FROM unnest(p_dependencies) WITH ORDINALITY AS j(dependencies, ord)
                 CROSS JOIN LATERAL jsonb_each_text(j.dependencies) AS e
                 WHERE req_outcome[job_request[j.ord]] = 'decide'
               ) d;

        -- A job's dependencies are dep_*[first..last]; one without any (or not decided) gets
        -- the empty range 1..0.
        IF job_count = 1 THEN
            job_first_dep := '{1}';
            job_last_dep := ARRAY[cardinality(dep_name)];
        ELSE
            SELECT array_agg(coalesce(r.first_dep, 1) ORDER BY n),
                   array_agg(coalesce(r.last_dep, 0) ORDER BY n)
              INTO job_first_dep, job_last_dep
              FROM generate_series(1, job_count) AS n
              LEFT JOIN (SELECT dep_job[s] AS ord, min(s) AS first_dep, max(s) AS last_dep
                           FROM generate_subscripts(dep_job, 1) AS s
                          GROUP BY 1) r ON r.ord = n;
        END IF;

        -- Lock every bucket the request touches, in dependency-name order, so that two requests
        -- sharing buckets always lock them in the same order and cannot deadlock. The sort runs
        -- below the row locking, so rows are locked in the order they are sorted.
        SELECT coalesce(array_agg(l.dependency ORDER BY l.dependency), '{}'),
               coalesce(array_agg(l.capacity ORDER BY l.dependency), '{}'),
               coalesce(array_agg(l.refill_per_second ORDER BY l.dependency), '{}'),
               coalesce(array_agg(l.effective_refill_per_second ORDER BY l.dependency), '{}'),
               coalesce(array_agg(l.adaptive_recovery_per_second ORDER BY l.dependency), '{}'),
               coalesce(array_agg(l.tokens ORDER BY l.dependency), '{}'),
               coalesce(array_agg(l.refilled_at ORDER BY l.dependency), '{}'),
               coalesce(array_agg(CASE WHEN l.line_jobs = '{0,0,0,0,0,0,0,0,0,0}' THEN 0
                                       ELSE (SELECT max(x.p) FROM unnest(l.line_jobs)
                                                  WITH ORDINALITY AS x(n, p) WHERE x.n > 0)
                                  END ORDER BY l.dependency), '{}')
          INTO bucket_name, bucket_capacity, bucket_refill, bucket_effective, bucket_recovery,
               bucket_tokens, bucket_refilled, bucket_line_top
          FROM (SELECT tb.dependency, tb.capacity, tb.refill_per_second,
                       tb.effective_refill_per_second, tb.adaptive_recovery_per_second, tb.tokens,
                       tb.refilled_at, tb.line_jobs
                  FROM token_buckets tb
                 WHERE tb.user_id = p_user_id AND tb.dependency = ANY (dep_name)
                 ORDER BY tb.dependency
                   FOR UPDATE) l;

        -- The user and its config, read once the buckets are locked: an activation holds them
        -- until it commits (activate_version()), so a request that waited for one is decided
        -- by the version the buckets and tenant buckets were brought to. A user unknown,
        -- without a config or paused answers each request still to decide as it would have
        -- alone, and locked no bucket, or only for the length of this call.
        SELECT c.version, u.paused, c.min_priority, c.priority_reserve, c.unknown_dependencies,
               c.mode, c.tenant_share, c.tenant_overrides, c.when_limited, c.max_wait_seconds
          INTO cfg
          FROM users u
          LEFT JOIN configs c ON c.user_id = u.user_id AND c.is_active
         WHERE u.user_id = p_user_id;
        refusal := CASE WHEN NOT FOUND THEN 'J0U01'
                        WHEN cfg.min_priority IS NULL THEN 'J0C01'
                        WHEN cfg.paused THEN 'J0P01' END;
        IF refusal IS NOT NULL THEN
            FOR r IN 1 .. request_count LOOP
                CONTINUE WHEN req_outcome[r] <> 'decide';
                req_outcome[r] := 'error';
                req_error[r] := refusal;
            END LOOP;
            EXIT deciding;
        END IF;

        dep_bucket := array_fill(NULL::integer, ARRAY[coalesce(array_length(dep_name, 1), 0)]);
        FOR k IN 1 .. coalesce(array_length(dep_name, 1), 0) LOOP
            dep_bucket[k] := array_position(bucket_name, dep_name[k]);
        END LOOP;

        -- Tenant buckets, only under a config that shares: each job's tenant share, then every
        -- (dependency, tenant) bucket a job of the request needs, locked after the dependency
        -- buckets. A bucket without a row has no tokens here (NULL) and the capacity and refill of
        -- its share of its dependency's bucket: tenant_tokens_at() makes it full.
        shares_on := cfg.tenant_share < 1 OR cfg.tenant_overrides <> '{}'::jsonb;
        IF shares_on THEN
            SELECT array_agg(tenant_share_of(cfg.tenant_overrides, cfg.tenant_share, u.tenant)
                             ORDER BY u.n)
              INTO job_share
              FROM unnest(p_tenants) WITH ORDINALITY AS u(tenant, n);

            SELECT coalesce(array_agg(w.dependency ORDER BY w.dependency, w.tenant_id), '{}'),
                   coalesce(array_agg(w.tenant_id ORDER BY w.dependency, w.tenant_id), '{}'),
                   coalesce(array_agg(coalesce(l.capacity, w.share * bucket_capacity[w.b])
                                      ORDER BY w.dependency, w.tenant_id), '{}'),
                   coalesce(array_agg(coalesce(l.refill_per_second, w.share * bucket_refill[w.b])
                                      ORDER BY w.dependency, w.tenant_id), '{}'),
                   coalesce(array_agg(l.tokens ORDER BY w.dependency, w.tenant_id), '{}'),
                   coalesce(array_agg(l.refilled_at ORDER BY w.dependency, w.tenant_id), '{}')
              INTO tenant_dependency, tenant_name, tenant_capacity, tenant_refill, tenant_tokens,
                   tenant_refilled
              FROM (SELECT DISTINCT dep_name[k] COLLATE "C" AS dependency,
                           p_tenants[dep_job[k]] COLLATE "C" AS tenant_id,
                           dep_bucket[k] AS b, job_share[dep_job[k]] AS share
                      FROM generate_subscripts(dep_name, 1) AS k
                     WHERE dep_bucket[k] IS NOT NULL AND job_share[dep_job[k]] < 1) w
              LEFT JOIN (SELECT t.dependency, t.tenant_id, t.capacity, t.refill_per_second,
                                t.tokens, t.refilled_at
                           FROM tenant_buckets t
                          WHERE t.user_id = p_user_id AND t.dependency = ANY (bucket_name)
                            AND t.tenant_id = ANY (p_tenants)
                          ORDER BY t.dependency, t.tenant_id
                            FOR UPDATE) l
                ON l.dependency = w.dependency AND l.tenant_id = w.tenant_id;

            SELECT coalesce(array_agg(x.n ORDER BY k), '{}')
              INTO dep_tenant_bucket
              FROM generate_subscripts(dep_name, 1) AS k
              LEFT JOIN unnest(tenant_dependency, tenant_name) WITH ORDINALITY
                        AS x(dependency, tenant_id, n)
                ON x.dependency = dep_name[k] AND x.tenant_id = p_tenants[dep_job[k]];
        ELSE
            dep_tenant_bucket := array_fill(NULL::integer,
                                            ARRAY[coalesce(array_length(dep_name, 1), 0)]);
        END IF;

        -- The database clock, read once the locks are held: no later writer can have refilled
        -- these rows past it (seconds_elapsed() still guards against a clock step backwards).
        decided_at := clock_timestamp();
        bucket_debited := array_fill(false, ARRAY[coalesce(array_length(bucket_name, 1), 0)]);
        -- Tokens and the effective rate are both stored as of refilled_at: bring both to
        -- decided_at (the rate last: the tokens are gained at the rate as it was at refilled_at).
        FOR b IN 1 .. coalesce(array_length(bucket_name, 1), 0) LOOP
            bucket_tokens[b] := bucket_tokens_at(bucket_capacity[b], bucket_tokens[b],
                                                 bucket_refill[b], bucket_effective[b],
                                                 bucket_recovery[b], bucket_refilled[b],
                                                 decided_at);
            bucket_effective[b] := bucket_rate_at(bucket_refill[b], bucket_effective[b],
                                                  bucket_recovery[b], bucket_refilled[b],
                                                  decided_at);
        END LOOP;
        bucket_undebited := bucket_tokens;

        tenant_debited := array_fill(false, ARRAY[coalesce(array_length(tenant_name, 1), 0)]);
        FOR b IN 1 .. coalesce(array_length(tenant_name, 1), 0) LOOP
            tenant_tokens[b] := tenant_tokens_at(tenant_capacity[b], tenant_tokens[b],
                                                 tenant_refill[b], tenant_refilled[b], decided_at);
        END LOOP;
        tenant_undebited := tenant_tokens;

        job_ids := array_fill(NULL::uuid, ARRAY[job_count]);
        job_status := array_fill(NULL::text, ARRAY[job_count]);
        job_reason := array_fill(NULL::text, ARRAY[job_count]);
        job_reason_code := array_fill(NULL::text, ARRAY[job_count]);
        job_retry := array_fill(NULL::integer, ARRAY[job_count]);
        job_fits_at := array_fill(NULL::timestamptz, ARRAY[job_count]);
        job_state := array_fill(NULL::text, ARRAY[job_count]);
        job_in_line := array_fill(false, ARRAY[job_count]);
        job_run_at := array_fill(NULL::timestamptz, ARRAY[job_count]);
        job_expires := array_fill(NULL::timestamptz, ARRAY[job_count]);
        job_estimated := array_fill(NULL::timestamptz, ARRAY[job_count]);
        bucket_line_changed := array_fill(false,
                                          ARRAY[coalesce(array_length(bucket_name, 1), 0)]);
        -- Shadow mode accepts every job at once: nothing waits. (One request, the most
        -- common call, is spared the statement.)
        IF request_count = 1 THEN
            req_waits := ARRAY[coalesce(p_when_limited[1], cfg.when_limited) = 'wait'
                               AND cfg.mode = 'enforce'];
            req_max_wait := ARRAY[coalesce(p_max_wait_seconds[1], cfg.max_wait_seconds)];
        ELSE
            SELECT array_agg(coalesce(p_when_limited[r], cfg.when_limited) = 'wait'
                             AND cfg.mode = 'enforce' ORDER BY r),
                   array_agg(coalesce(p_max_wait_seconds[r], cfg.max_wait_seconds) ORDER BY r)
              INTO req_waits, req_max_wait
              FROM generate_series(1, request_count) AS r;
        END IF;

        FOR r IN 1 .. request_count LOOP
            CONTINUE WHEN req_outcome[r] <> 'decide';
            -- A key an earlier request of the group used: that request's answer is this one's
            -- when it was remembered (at least one job accepted, or shadow mode).
            IF p_idempotency_keys[r] IS NOT NULL THEN
                e := NULL;
                FOR p IN REVERSE r - 1 .. 1 LOOP
                    IF p_idempotency_keys[p] = p_idempotency_keys[r] AND req_accepted[p] THEN
                        e := p;
                        EXIT;
                    END IF;
                END LOOP;
                IF e IS NOT NULL AND p_request_hashes[e] <> p_request_hashes[r] THEN
                    req_outcome[r] := 'error';
                    req_error[r] := 'J0K22';
                    CONTINUE;
                ELSIF e IS NOT NULL THEN
                    req_outcome[r] := 'replay_of';
                    req_replay_of[r] := e;
                    CONTINUE;
                END IF;
            END IF;

            FOR p IN req_first_job[r] .. req_last_job[r] LOOP
                i := evaluation_order[p];
                job_ids[i] := new_job_id();
                this_reason := NULL;
                this_code := NULL;
                this_wait := NULL;
                scheduled := coalesce(p_run_at[i] > decided_at, false);

                IF p_priorities[i] < cfg.min_priority THEN
                    this_reason := 'priority too low';
                    this_code := 'min_priority';
                END IF;

                IF this_reason IS NULL AND cfg.unknown_dependencies = 'reject' THEN
                    FOR k IN job_first_dep[i] .. job_last_dep[i] LOOP
                        CONTINUE WHEN dep_bucket[k] IS NOT NULL;
                        this_reason := format('dependency ''%s'' is not configured', dep_name[k]);
                        this_code := 'unknown_dependency';
                        EXIT;
                    END LOOP;
                END IF;

                IF this_reason IS NULL THEN
                    FOR k IN job_first_dep[i] .. job_last_dep[i] LOOP
                        b := dep_bucket[k];
                        IF b IS NOT NULL AND dep_cost[k] > bucket_capacity[b] THEN
                            this_reason := format('dependency ''%s'' cost %s exceeds capacity %s',
                                                  dep_name[k], dep_cost[k], bucket_capacity[b]);
                            this_code := 'over_capacity';
                            EXIT;
                        END IF;
                    END LOOP;
                END IF;

                IF this_reason IS NULL AND NOT scheduled THEN
                    -- The priority reserve (reserve_shortfall_x9(), reserve_wait()), of each
                    -- dependency's bucket and of the tenant's own share of it; a dependency or
                    -- a tenant without a bucket (a NULL index) has no shortfall. A job refused
                    -- by a dependency's bucket names the first such dependency; one refused by
                    -- its tenant's buckets alone names the tenant and the first of them. The
                    -- wait covers every bucket short.
                    --
                    -- A dependency's Retry-After uses its effective rate as of now, though an
                    -- adaptive bucket's rate may recover while the client waits: unless
                    -- upstream throttling is reported again, the wait told is never too short.
                    -- The effective rate is 0 only when the configured one is (the floor is a
                    -- share above 0).
                    --
                    -- The line: while a job of this priority or a higher one waits on the
                    -- dependency, this one is short there too (it does not overtake them), and
                    -- its wait is for the tokens they wait for and its own.
                    FOR k IN job_first_dep[i] .. job_last_dep[i] LOOP
                        b := dep_bucket[k];
                        line_short := bucket_line_top[b] >= p_priorities[i];
                        IF line_short THEN
                            SELECT coalesce(sum(x.tokens), 0) INTO ahead
                              FROM token_buckets tb
                             CROSS JOIN LATERAL unnest(tb.line_tokens) WITH ORDINALITY
                                   AS x(tokens, p)
                             WHERE tb.user_id = p_user_id AND tb.dependency = bucket_name[b]
                               AND x.p >= p_priorities[i];
                            IF line_added_tokens IS NOT NULL THEN
                                ahead := ahead + (SELECT coalesce(sum(a), 0)
                                                    FROM unnest(line_added_tokens[
                                                             (b - 1) * 10 + p_priorities[i]
                                                             : b * 10]) AS a);
                            END IF;
                            bucket_short := reserve_shortfall_x9(bucket_capacity[b],
                                                                 bucket_tokens[b] - ahead,
                                                                 dep_cost[k],
                                                                 cfg.priority_reserve,
                                                                 p_priorities[i]);
                        ELSE
                            bucket_short := reserve_shortfall_x9(bucket_capacity[b],
                                                                 bucket_tokens[b], dep_cost[k],
                                                                 cfg.priority_reserve,
                                                                 p_priorities[i]);
                        END IF;
                        -- Tenant buckets only under a config that shares (else share_short is
                        -- NULL): PL/pgSQL compiles each expression it evaluates anew in every
                        -- transaction, so a single job pays for every call it makes, even one
                        -- that finds nothing.
                        IF shares_on THEN
                            t := dep_tenant_bucket[k];
                            share_short := reserve_shortfall_x9(tenant_capacity[t],
                                                                tenant_tokens[t], dep_cost[k],
                                                                cfg.priority_reserve,
                                                                p_priorities[i]);
                        END IF;
                        CONTINUE WHEN coalesce(bucket_short, 0) <= 0
                                      AND coalesce(share_short, 0) <= 0
                                      AND line_short IS NOT TRUE;
                        this_wait := greatest(this_wait,
                                              reserve_wait(bucket_short, bucket_capacity[b],
                                                           bucket_effective[b], dep_cost[k],
                                                           cfg.priority_reserve, p_priorities[i]),
                                              CASE WHEN line_short THEN 0 END);
                        IF shares_on THEN
                            this_wait := greatest(this_wait,
                                                  reserve_wait(share_short, tenant_capacity[t],
                                                               tenant_refill[t], dep_cost[k],
                                                               cfg.priority_reserve,
                                                               p_priorities[i]));
                        END IF;
                        IF bucket_short > 0 OR line_short THEN
                            -- The first dependency short, over any tenant short before it.
                            IF this_code IS DISTINCT FROM 'rate_limit' THEN
                                this_reason := format('dependency ''%s'' rate limit exceeded',
                                                      dep_name[k]);
                                this_code := 'rate_limit';
                            END IF;
                        ELSIF this_reason IS NULL THEN
                            this_reason := format(
                                'tenant ''%s'' exceeded its share of dependency ''%s''',
                                p_tenants[i], dep_name[k]);
                            this_code := 'tenant_share';
                        END IF;
                    END LOOP;
                END IF;

                IF this_reason IS NULL AND scheduled THEN
                    -- Waits for its run_at, then joins the line (hand_out_jobs()).
                    job_status[i] := 'Accepted';
                    job_reason[i] := '';
                    job_state[i] := 'waiting';
                    job_run_at[i] := p_run_at[i];
                    job_expires[i] := p_run_at[i] + make_interval(secs => req_max_wait[r]);
                    job_estimated[i] := p_run_at[i];
                ELSIF this_reason IS NULL THEN
                    FOR k IN job_first_dep[i] .. job_last_dep[i] LOOP
                        b := dep_bucket[k];
                        CONTINUE WHEN b IS NULL;
                        bucket_tokens[b] := bucket_tokens[b] - dep_cost[k];
                        bucket_debited[b] := true;
                        b := dep_tenant_bucket[k];
                        CONTINUE WHEN b IS NULL;
                        tenant_tokens[b] := tenant_tokens[b] - dep_cost[k];
                        tenant_debited[b] := true;
                    END LOOP;
                    job_status[i] := 'Accepted';
                    job_reason[i] := '';
                    job_state[i] := 'queued';
                ELSIF req_waits[r] AND this_code IN ('rate_limit', 'tenant_share')
                      AND this_wait < 'Infinity' THEN
                    -- Limited by tokens alone, in wait mode: accepted, to wait in the line of
                    -- each of its dependencies, and paid for when it is handed out.
                    IF line_added_jobs IS NULL THEN
                        line_added_jobs := array_fill(0, ARRAY[10 * cardinality(bucket_name)]);
                        line_added_tokens := array_fill(0::numeric,
                                                        ARRAY[10 * cardinality(bucket_name)]);
                    END IF;
                    FOR k IN job_first_dep[i] .. job_last_dep[i] LOOP
                        b := dep_bucket[k];
                        CONTINUE WHEN b IS NULL;
                        e := (b - 1) * 10 + p_priorities[i];
                        line_added_jobs[e] := line_added_jobs[e] + 1;
                        line_added_tokens[e] := line_added_tokens[e] + dep_cost[k];
                        bucket_line_top[b] := greatest(bucket_line_top[b], p_priorities[i]);
                        bucket_line_changed[b] := true;
                    END LOOP;
                    job_status[i] := 'Accepted';
                    job_reason[i] := '';
                    job_state[i] := 'waiting';
                    job_in_line[i] := true;
                    job_expires[i] := decided_at + make_interval(secs => req_max_wait[r]);
                    job_estimated[i] := decided_at + least(this_wait, 2147483647)
                                                     * interval '1 second';
                ELSE
                    any_rejected := true;
                    job_status[i] := 'Rejected';
                    job_reason[i] := this_reason;
                    job_reason_code[i] := this_code;
                    -- A wait that ends (NULL: not refused for tokens; 'Infinity': waiting never
                    -- cures it).
                    IF this_wait < 'Infinity' THEN
                        -- Clamped: a refill of 1e-9 tokens/s would otherwise overflow an integer.
                        this_wait := least(this_wait, 2147483647);
                        job_retry[i] := greatest(1, ceil(this_wait))::integer;
                        IF p_quote THEN
                            job_fits_at[i] := decided_at + ceil(this_wait * 1000000)
                                                           * interval '1 microsecond';
                        END IF;
                    END IF;
                END IF;
                req_accepted[r] := req_accepted[r] OR job_status[i] = 'Accepted'
                                   OR cfg.mode = 'shadow';
            END LOOP;
            req_outcome[r] := 'decided';
            -- The buckets as this request left them: its budgets.
            req_snapshot[r] := cardinality(snapshot_tokens) + 1;
            snapshot_tokens := snapshot_tokens || bucket_tokens;
        END LOOP;

        IF p_atomic AND any_rejected THEN
            FOR i IN 1 .. job_count LOOP
                IF job_status[i] = 'Accepted' THEN
                    job_status[i] := 'Rejected';
                    job_reason[i] := 'batch rejected atomically';
                    job_reason_code[i] := 'atomic_batch';
                END IF;
                job_retry[i] := NULL;
                job_fits_at[i] := NULL;
                job_state[i] := NULL;
                job_in_line[i] := false;
                job_run_at[i] := NULL;
                job_expires[i] := NULL;
                job_estimated[i] := NULL;
            END LOOP;
            -- Nothing is taken, and nothing joins a line: the buckets are left as the refill
            -- alone leaves them.
            bucket_line_changed := array_fill(false,
                                              ARRAY[coalesce(array_length(bucket_name, 1), 0)]);
            bucket_tokens := bucket_undebited;
            bucket_debited := array_fill(false,
                                         ARRAY[coalesce(array_length(bucket_name, 1), 0)]);
            tenant_tokens := tenant_undebited;
            tenant_debited := array_fill(false,
                                         ARRAY[coalesce(array_length(tenant_name, 1), 0)]);
            snapshot_tokens := bucket_tokens;
            req_accepted[1] := cfg.mode = 'shadow';
        END IF;

        -- Shadow mode: what enforcement decided is kept aside, and every job is accepted.
        IF cfg.mode = 'shadow' THEN
            shadow_statuses := job_status;
            shadow_reasons := job_reason;
            shadow_codes := job_reason_code;
            job_status := array_fill('Accepted'::text, ARRAY[job_count]);
            job_reason := array_fill(''::text, ARRAY[job_count]);
            job_reason_code := array_fill(NULL::text, ARRAY[job_count]);
            job_retry := array_fill(NULL::integer, ARRAY[job_count]);
            job_fits_at := array_fill(NULL::timestamptz, ARRAY[job_count]);
            -- Nothing waits for tokens; a job that names a run_at still waits for it.
            FOR i IN 1 .. job_count LOOP
                IF p_run_at[i] > decided_at THEN
                    job_state[i] := 'waiting';
                    job_run_at[i] := p_run_at[i];
                    job_expires[i] := p_run_at[i]
                                      + make_interval(secs => req_max_wait[job_request[i]]);
                    job_estimated[i] := p_run_at[i];
                ELSE
                    job_state[i] := 'queued';
                END IF;
            END LOOP;
        END IF;

        -- An enforced atomic rejection stores nothing; a quote never does.
        store := NOT p_quote AND NOT (p_atomic AND any_rejected AND cfg.mode = 'enforce');
        IF store THEN
            UPDATE token_buckets tb
               SET tokens = u.tokens,
                   effective_refill_per_second = u.effective,
                   refilled_at = greatest(tb.refilled_at, decided_at),
                   line_jobs = CASE WHEN u.line_changed THEN
                                   (SELECT array_agg(x.n + line_added_jobs[(u.b - 1) * 10 + x.p]
                                                     ORDER BY x.p)
                                      FROM unnest(tb.line_jobs) WITH ORDINALITY AS x(n, p))
                               ELSE tb.line_jobs END,
                   line_tokens = CASE WHEN u.line_changed THEN
                                     (SELECT array_agg(x.n + line_added_tokens[(u.b - 1) * 10 + x.p]
                                                       ORDER BY x.p)
                                        FROM unnest(tb.line_tokens) WITH ORDINALITY AS x(n, p))
                                 ELSE tb.line_tokens END
              FROM unnest(bucket_name, bucket_tokens, bucket_effective, bucket_debited,
                          bucket_line_changed) WITH ORDINALITY
                   AS u(dependency, tokens, effective, debited, line_changed, b)
             WHERE tb.user_id = p_user_id AND tb.dependency = u.dependency
               AND (u.debited OR u.line_changed);

            -- A tenant bucket gets its row on its first debit (its dependency's lock is held,
            -- so no one else can be writing it).
            IF shares_on THEN
                INSERT INTO tenant_buckets AS t (user_id, dependency, tenant_id, capacity,
                                                 refill_per_second, tokens, refilled_at)
                SELECT p_user_id, u.dependency, u.tenant_id, u.capacity, u.refill, u.tokens,
                       decided_at
                  FROM unnest(tenant_dependency, tenant_name, tenant_capacity, tenant_refill,
                              tenant_tokens, tenant_debited)
                       AS u(dependency, tenant_id, capacity, refill, tokens, debited)
                 WHERE u.debited
                ON CONFLICT (user_id, dependency, tenant_id) DO UPDATE
                   SET tokens = excluded.tokens,
                       refilled_at = greatest(t.refilled_at, excluded.refilled_at);
            END IF;

            -- An accepted job enters the queue (state queued) or waits (state waiting: in
            -- its dependencies' line, or for its run_at); a rejected one has no state.
            INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority,
                              dependencies, payload, status, reason, retry_after,
                              config_version, state, shadow_status, shadow_reason, reason_code,
                              shadow_reason_code, run_at, in_line_at, expires_at,
                              estimated_start, paid)
            SELECT job_ids[n], p_user_id, p_sources[job_request[n]],
                   p_batch_names[job_request[n]], p_tenants[n], p_priorities[n],
                   p_dependencies[n], p_payloads[n], job_status[n], job_reason[n],
                   job_retry[n], cfg.version, job_state[n], shadow_statuses[n],
                   shadow_reasons[n], job_reason_code[n], shadow_codes[n], job_run_at[n],
                   CASE WHEN job_in_line[n] THEN decided_at END, job_expires[n],
                   CASE WHEN job_in_line[n] THEN job_estimated[n] END,
                   -- Took its tokens now: queued, and let in by the buckets (not only by
                   -- shadow mode).
                   coalesce(job_state[n] = 'queued', false)
                   AND shadow_statuses[n] IS DISTINCT FROM 'Rejected'
              FROM generate_series(1, job_count) AS n
             WHERE req_outcome[job_request[n]] = 'decided';

            -- Remembered: the decisions of each request with a key and a job accepted.
            -- Rejections are not remembered: nothing was taken, so a retry is decided anew.
            IF keyed THEN
                INSERT INTO idempotency_keys AS k (user_id, idempotency_key, request_hash,
                                                   decisions, expires_at)
                SELECT p_user_id, p_idempotency_keys[r], p_request_hashes[r],
                       (SELECT jsonb_agg(jsonb_build_object('job_id', job_ids[n],
                                                            'status', job_status[n],
                                                            'reason', job_reason[n],
                                                            'reason_code', job_reason_code[n],
                                                            'state', job_state[n],
                                                            'estimated_start',
                                                            job_estimated[n])
                                         ORDER BY n)
                          FROM generate_series(req_first_job[r], req_last_job[r]) AS n),
                       now() + interval '24 hours'
                  FROM generate_series(1, request_count) AS r
                 WHERE p_idempotency_keys[r] IS NOT NULL AND req_outcome[r] = 'decided'
                   AND req_accepted[r]
                ON CONFLICT (user_id, idempotency_key) DO UPDATE
                   SET request_hash = excluded.request_hash,
                       decisions = excluded.decisions,
                       created_at = excluded.created_at,
                       expires_at = excluded.expires_at
                 WHERE k.expires_at <= now();
                GET DIAGNOSTICS remembering = ROW_COUNT;
                IF remembering < (SELECT count(*) FROM generate_series(1, request_count) AS r
                                   WHERE p_idempotency_keys[r] IS NOT NULL
                                     AND req_outcome[r] = 'decided' AND req_accepted[r]) THEN
                    -- Someone remembered one of these keys after our snapshot: roll back, and
                    -- let the retry answer from what they stored.
                    RAISE EXCEPTION 'idempotency key remembered concurrently'
                          USING ERRCODE = '40001';
                END IF;
            END IF;
        END IF;

        -- Each request's budgets: every bucket it named, as its decisions left it, in name
        -- order. `quota` is the capacity; `window` the seconds a full refill takes at the
        -- configured refill (NULL: it never refills); `remaining` its whole tokens; `reset`
        -- the seconds until its next whole token at the effective refill of now (0 when full;
        -- NULL when it never refills). Rounded so that a client is never told of more tokens,
        -- or of a token sooner, than there will be.
        SELECT array_agg(CASE WHEN req_outcome[r] = 'decided' THEN coalesce(budget.named, '[]')
                         END ORDER BY r)
          INTO req_budgets
          FROM generate_series(1, request_count) AS r
          LEFT JOIN LATERAL (
                SELECT json_agg(json_build_object(
                           'dependency', bucket_name[u.b],
                           'quota', bucket_capacity[u.b],
                           'window', CASE WHEN bucket_refill[u.b] > 0
                                          THEN ceil(bucket_capacity[u.b] / bucket_refill[u.b])
                                     END,
                           'remaining', floor(u.tokens),
                           'reset', CASE WHEN u.tokens >= bucket_capacity[u.b] THEN 0
                                         WHEN bucket_effective[u.b] > 0
                                         THEN ceil((floor(u.tokens) + 1 - u.tokens)
                                                   / bucket_effective[u.b]) END)
                           ORDER BY u.b) AS named
                  FROM (SELECT b, snapshot_tokens[req_snapshot[r] + b - 1] AS tokens
                          FROM generate_subscripts(bucket_name, 1) AS b
                         WHERE request_count = 1
                            OR b = ANY (SELECT dep_bucket[k]
                                          FROM generate_subscripts(dep_name, 1) AS k
                                         WHERE job_request[dep_job[k]] = r)) u
               ) budget ON true;
    END deciding;

    -- One row per job of each request in the group's order, in its own order; the budgets on
    -- a decided request's first row; one row for a request answered by an error. When every
    -- request was decided (the common case), its jobs are the rows, already in that order.
    IF 'decided' = ALL (req_outcome) THEN
        RETURN QUERY
            SELECT job_request[n], job_ids[n], job_status[n], job_reason[n], job_retry[n], false,
                   CASE WHEN n = req_first_job[job_request[n]]
                        THEN req_budgets[job_request[n]] END,
                   shadow_statuses[n], shadow_reasons[n], job_fits_at[n], job_reason_code[n],
                   shadow_codes[n], NULL::text, job_state[n], job_estimated[n]
              FROM generate_series(1, job_count) AS n
             ORDER BY n;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT a.request, a.job_id, a.status, a.reason, a.retry_after, a.replayed, a.budgets,
               a.shadow_status, a.shadow_reason, a.fits_at, a.reason_code,
               a.shadow_reason_code, a.error, a.state, a.estimated_start
          FROM (SELECT job_request[n] AS request, n AS position, job_ids[n] AS job_id,
                       job_status[n] AS status, job_reason[n] AS reason,
                       job_retry[n] AS retry_after, false AS replayed,
                       CASE WHEN n = req_first_job[job_request[n]]
                            THEN req_budgets[job_request[n]] END AS budgets,
                       shadow_statuses[n] AS shadow_status, shadow_reasons[n] AS shadow_reason,
                       job_fits_at[n] AS fits_at, job_reason_code[n] AS reason_code,
                       shadow_codes[n] AS shadow_reason_code, NULL::text AS error,
                       job_state[n] AS state, job_estimated[n] AS estimated_start
                  FROM generate_series(1, job_count) AS n
                 WHERE req_outcome[job_request[n]] = 'decided'
                UNION ALL
                SELECT r, n, job_ids[n], job_status[n], job_reason[n], NULL, true, NULL, NULL,
                       NULL, NULL, job_reason_code[n], NULL, NULL, job_state[n],
                       job_estimated[n]
                  FROM generate_series(1, request_count) AS r
                 CROSS JOIN LATERAL generate_series(req_first_job[req_replay_of[r]],
                                                    req_last_job[req_replay_of[r]]) AS n
                 WHERE req_outcome[r] = 'replay_of'
                UNION ALL
                SELECT r, m.n::integer, (m.value ->> 'job_id')::uuid, m.value ->> 'status',
                       m.value ->> 'reason', NULL, true, NULL, NULL, NULL, NULL,
                       m.value ->> 'reason_code', NULL, NULL, m.value ->> 'state',
                       (m.value ->> 'estimated_start')::timestamptz
                  FROM generate_series(1, request_count) AS r
                 CROSS JOIN LATERAL jsonb_array_elements(req_replay[r])
                       WITH ORDINALITY AS m(value, n)
                 WHERE req_outcome[r] = 'replay'
                UNION ALL
                SELECT r, 0, NULL, NULL, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL,
                       req_error[r], NULL, NULL
                  FROM generate_series(1, request_count) AS r
                 WHERE req_outcome[r] = 'error'
               ) a
         ORDER BY a.request, a.position;
END
$fn$;
