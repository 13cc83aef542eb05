-- admit_jobs(): the whole admission decision for a job or a batch, in one call.
--
-- Called by admit_jobs_once(). It refills the buckets (at their effective rate, which an
-- adaptive bucket lowers on upstream throttling and recovers over time: bucket_tokens_at(),
-- bucket_rate_at(), report_upstream_throttled()), runs the checks of the contract in their
-- order, debits the buckets of accepted jobs and stores the jobs with the config version
-- that decided them and the Retry-After they were given. Reasons are produced here, in the
-- exact text of the contract, each with its code for machines (reason_code, a closed set that
-- jobs.reason_code checks): min_priority, unknown_dependency, over_capacity, rate_limit (the
-- priority reserve included), tenant_share and atomic_batch; NULL for an accepted job.
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
--
-- A quote (p_quote) decides the same way against the same rows and stores nothing, debits
-- nothing and remembers nothing; its locks go with its transaction, which the caller rolls
-- back. fits_at is, for a job rejected for tokens, when it would fit if nothing else took
-- any (Retry-After rounds the same wait up to whole seconds).
--
-- The first row also carries `budgets`: every bucket the request named, as the decision left
-- it, in whole numbers (the resource turns them into the RateLimit headers). They come from
-- this call, under its locks and on its clock, so they cost no second round trip.
--
-- Custom SQLSTATEs (class J0) tell the caller why there was no decision at all:
-- J0U01 unknown user, J0C01 no active config, J0P01 service paused (users.paused, set_paused()).
--
-- The live definition is janus/db/sql/admit_jobs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION admit_jobs(
    p_user_id    uuid,
    p_source     text,
    p_batch_name text,
    -- One element per job, in request order. Parallel arrays, not one JSON document, so that
    -- nothing is parsed twice; payloads are json, not jsonb, to be stored exactly as sent.
    p_tenants      text[],
    p_priorities   smallint[],
    p_dependencies jsonb[],   -- {name: cost}
    p_payloads     json[],
    p_atomic       boolean,   -- true: if any job is rejected, take nothing and store nothing
    p_quote        boolean DEFAULT false  -- true: decide only; store and take nothing
)
RETURNS TABLE (job_id uuid, status text, reason text, retry_after integer, budgets json,
               shadow_status text, shadow_reason text, fits_at timestamptz, reason_code text,
               shadow_reason_code text)
LANGUAGE plpgsql
-- Generic plans, made once per connection. With the default, Postgres re-planned most of its
-- statements on every call (their array parameters make custom plans look cheaper), which
-- cost about a third of a single job's time in the database.
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    cfg               record;
    job_count         integer := cardinality(p_priorities);
    evaluation_order  integer[];
    any_rejected      boolean := false;
    -- Per job, by request position.
    job_first_dep     integer[];
    job_last_dep      integer[];
    job_ids           uuid[];
    job_status        text[];
    job_reason        text[];
    job_reason_code   text[];
    job_retry         integer[];
    job_fits_at       timestamptz[];
    job_share         numeric[];     -- the tenant's share; 1: no tenant bucket
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
    request_budgets   json;
    decided_at        timestamptz;
    i                 integer;
    k                 integer;
    b                 integer;
    this_reason       text;
    this_code         text;
    -- Seconds until the job fits (reserve_wait()): NULL, it fits; 'Infinity', it never will.
    this_wait         numeric;
    bucket_short      numeric;     -- reserve_shortfall_x9() of a dependency's bucket
    share_short       numeric;     -- and of its tenant's bucket (NULL: none)
BEGIN
    -- Highest priority first, ties in request order. (One job, the most common request, is
    -- spared the statements that only order and index several.)
    IF job_count = 1 THEN
        evaluation_order := '{1}';
    ELSE
        SELECT array_agg(n ORDER BY p_priorities[n] DESC, n)
          INTO evaluation_order
          FROM generate_series(1, job_count) AS n;
    END IF;

    SELECT coalesce(array_agg(d.ord ORDER BY d.ord, d.name), '{}'),
           coalesce(array_agg(d.name ORDER BY d.ord, d.name), '{}'),
           coalesce(array_agg(d.cost ORDER BY d.ord, d.name), '{}')
      INTO dep_job, dep_name, dep_cost
      FROM (SELECT j.ord::integer AS ord, e.key COLLATE "C" AS name, e.value::bigint AS cost
              FROM unnest(p_dependencies) WITH ORDINALITY AS j(dependencies, ord)
             CROSS JOIN LATERAL jsonb_each_text(j.dependencies) AS e
           ) d;

    -- A job's dependencies are dep_*[first..last]; a job without any gets the empty range 1..0.
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
           coalesce(array_agg(l.refilled_at ORDER BY l.dependency), '{}')
      INTO bucket_name, bucket_capacity, bucket_refill, bucket_effective, bucket_recovery,
           bucket_tokens, bucket_refilled
      FROM (SELECT tb.dependency, tb.capacity, tb.refill_per_second,
                   tb.effective_refill_per_second, tb.adaptive_recovery_per_second, tb.tokens,
                   tb.refilled_at
              FROM token_buckets tb
             WHERE tb.user_id = p_user_id AND tb.dependency = ANY (dep_name)
             ORDER BY tb.dependency
               FOR UPDATE) l;

    -- The user and its config, read once the buckets are locked: an activation holds them
    -- until it commits (activate_version()), so a request that waited for one is decided by
    -- the version the buckets and tenant buckets were brought to. A user unknown, without a
    -- config or paused locked no bucket, or only for the length of this failed call.
    SELECT c.version, u.paused, c.min_priority, c.priority_reserve, c.unknown_dependencies,
           c.mode, c.tenant_share, c.tenant_overrides
      INTO cfg
      FROM users u
      LEFT JOIN configs c ON c.user_id = u.user_id AND c.is_active
     WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    ELSIF cfg.min_priority IS NULL THEN
        RAISE EXCEPTION 'no active config' USING ERRCODE = 'J0C01';
    ELSIF cfg.paused THEN
        RAISE EXCEPTION 'service paused' USING ERRCODE = 'J0P01';
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
    -- Tokens and the effective rate are both stored as of refilled_at: bring both to decided_at
    -- (the rate last: the tokens are gained at the rate as it was at refilled_at).
    FOR b IN 1 .. coalesce(array_length(bucket_name, 1), 0) LOOP
        bucket_tokens[b] := bucket_tokens_at(bucket_capacity[b], bucket_tokens[b],
                                             bucket_refill[b], bucket_effective[b],
                                             bucket_recovery[b], bucket_refilled[b], decided_at);
        bucket_effective[b] := bucket_rate_at(bucket_refill[b], bucket_effective[b],
                                              bucket_recovery[b], bucket_refilled[b], decided_at);
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

    FOREACH i IN ARRAY evaluation_order LOOP
        job_ids[i] := new_job_id();
        this_reason := NULL;
        this_code := NULL;
        this_wait := NULL;

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

        IF this_reason IS NULL THEN
            -- The priority reserve (reserve_shortfall_x9(), reserve_wait()), of each
            -- dependency's bucket and of the tenant's own share of it; a dependency or a
            -- tenant without a bucket (a NULL index) has no shortfall. A job refused by a
            -- dependency's bucket names the first such dependency; one refused by its tenant's
            -- buckets alone names the tenant and the first of them. The wait covers every
            -- bucket short.
            --
            -- A dependency's Retry-After uses its effective rate as of now, though an adaptive
            -- bucket's rate may recover while the client waits: unless upstream throttling is
            -- reported again, the wait told is never too short. The effective rate is 0 only
            -- when the configured one is (the floor is a share above 0).
            FOR k IN job_first_dep[i] .. job_last_dep[i] LOOP
                bucket_short := reserve_shortfall_x9(bucket_capacity[dep_bucket[k]],
                                                     bucket_tokens[dep_bucket[k]], dep_cost[k],
                                                     cfg.priority_reserve, p_priorities[i]);
                -- Tenant buckets only under a config that shares (else share_short is NULL):
                -- PL/pgSQL compiles each expression it evaluates anew in every transaction,
                -- so a single job pays for every call it makes, even one that finds nothing.
                IF shares_on THEN
                    share_short := reserve_shortfall_x9(tenant_capacity[dep_tenant_bucket[k]],
                                                        tenant_tokens[dep_tenant_bucket[k]],
                                                        dep_cost[k], cfg.priority_reserve,
                                                        p_priorities[i]);
                END IF;
                CONTINUE WHEN coalesce(bucket_short, 0) <= 0 AND coalesce(share_short, 0) <= 0;
                b := dep_bucket[k];
                this_wait := greatest(this_wait,
                                      reserve_wait(bucket_short, bucket_capacity[b],
                                                   bucket_effective[b], dep_cost[k],
                                                   cfg.priority_reserve, p_priorities[i]));
                IF shares_on THEN
                    this_wait := greatest(this_wait,
                                          reserve_wait(share_short,
                                                       tenant_capacity[dep_tenant_bucket[k]],
                                                       tenant_refill[dep_tenant_bucket[k]],
                                                       dep_cost[k], cfg.priority_reserve,
                                                       p_priorities[i]));
                END IF;
                IF bucket_short > 0 THEN
                    -- The first dependency short, over any tenant short before it.
                    IF this_code IS DISTINCT FROM 'rate_limit' THEN
                        this_reason := format('dependency ''%s'' rate limit exceeded',
                                              dep_name[k]);
                        this_code := 'rate_limit';
                    END IF;
                ELSIF this_reason IS NULL THEN
                    this_reason := format('tenant ''%s'' exceeded its share of dependency ''%s''',
                                          p_tenants[i], dep_name[k]);
                    this_code := 'tenant_share';
                END IF;
            END LOOP;
        END IF;

        IF this_reason IS NULL THEN
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
        ELSE
            any_rejected := true;
            job_status[i] := 'Rejected';
            job_reason[i] := this_reason;
            job_reason_code[i] := this_code;
            -- A wait that ends (NULL: not refused for tokens; 'Infinity': waiting never cures it).
            IF this_wait < 'Infinity' THEN
                -- Clamped: a refill of 1e-9 tokens/s would otherwise overflow an integer.
                this_wait := least(this_wait, 2147483647);
                job_retry[i] := greatest(1, ceil(this_wait))::integer;
                IF p_quote THEN
                    job_fits_at[i] := decided_at
                                      + ceil(this_wait * 1000000) * interval '1 microsecond';
                END IF;
            END IF;
        END IF;
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
        END LOOP;
        -- Nothing is taken: the buckets are left as the refill alone leaves them.
        bucket_tokens := bucket_undebited;
        bucket_debited := array_fill(false, ARRAY[coalesce(array_length(bucket_name, 1), 0)]);
        tenant_tokens := tenant_undebited;
        tenant_debited := array_fill(false, ARRAY[coalesce(array_length(tenant_name, 1), 0)]);
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
    END IF;

    -- An enforced atomic rejection stores nothing; a quote never does.
    store := NOT p_quote AND NOT (p_atomic AND any_rejected AND cfg.mode = 'enforce');
    IF store THEN
        UPDATE token_buckets tb
           SET tokens = u.tokens,
               effective_refill_per_second = u.effective,
               refilled_at = greatest(tb.refilled_at, decided_at)
          FROM unnest(bucket_name, bucket_tokens, bucket_effective, bucket_debited)
               AS u(dependency, tokens, effective, debited)
         WHERE tb.user_id = p_user_id AND tb.dependency = u.dependency AND u.debited;

        -- A tenant bucket gets its row on its first debit (its dependency's lock is held, so
        -- no one else can be writing it).
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

        -- An accepted job enters the queue (state queued); a rejected one has no state.
        INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority,
                          dependencies, payload, status, reason, retry_after, config_version,
                          state, shadow_status, shadow_reason, reason_code, shadow_reason_code)
        SELECT job_ids[n], p_user_id, p_source, p_batch_name, p_tenants[n], p_priorities[n],
               p_dependencies[n], p_payloads[n], job_status[n], job_reason[n], job_retry[n],
               cfg.version, CASE WHEN job_status[n] = 'Accepted' THEN 'queued' END,
               shadow_statuses[n], shadow_reasons[n], job_reason_code[n], shadow_codes[n]
          FROM generate_series(1, job_count) AS n;
    END IF;

    -- Each bucket's budget after the decision, in name order: `quota` its capacity; `window`
    -- the seconds a full refill takes at the configured refill (NULL: it never refills);
    -- `remaining` its whole tokens; `reset` the seconds until its next whole token at the
    -- effective refill of now (0 when full; NULL when it never refills). Rounded so that a
    -- client is never told of more tokens, or of a token sooner, than there will be.
    SELECT coalesce(json_agg(json_build_object(
               'dependency', u.dependency,
               'quota', u.capacity,
               'window', CASE WHEN u.refill > 0 THEN ceil(u.capacity / u.refill) END,
               'remaining', floor(u.tokens),
               'reset', CASE WHEN u.tokens >= u.capacity THEN 0
                             WHEN u.effective > 0
                             THEN ceil((floor(u.tokens) + 1 - u.tokens) / u.effective) END)
               ORDER BY u.n), '[]')
      INTO request_budgets
      FROM unnest(bucket_name, bucket_capacity, bucket_refill, bucket_effective, bucket_tokens)
           WITH ORDINALITY AS u(dependency, capacity, refill, effective, tokens, n);

    -- The budgets describe the request, not a job: on the first row only.
    RETURN QUERY
        SELECT job_ids[n], job_status[n], job_reason[n], job_retry[n],
               CASE WHEN n = 1 THEN request_budgets END, shadow_statuses[n], shadow_reasons[n],
               job_fits_at[n], job_reason_code[n], shadow_codes[n]
          FROM generate_series(1, job_count) AS n
         ORDER BY n;
END
$fn$;
