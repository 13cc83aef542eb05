-- settle_costs(): give back to (or take from) a job's buckets the difference between what
-- admission charged and what the worker says the job really cost; returns the job's new
-- `actual_costs`, the sum of every cost reported for it so far.
--
-- Called by finish_jobs(), which already holds the job's row lock and the row locks of every
-- bucket named in p_reported (taken in dependency-name order), and read p_at after taking
-- them: so the refill below is exactly admit_jobs()'s, and no other transaction can change
-- these rows between the read and the write.
--
-- The first report of a dependency is settled against the admission charge (charged 2,
-- reported 5: 3 more are taken; reported 0: 2 are given back). A dependency already reported
-- by an earlier attempt was settled then, so a later report is all extra cost (taken whole).
-- A bucket never goes above its capacity nor below zero; a dependency without a bucket (not
-- configured, or removed since) is recorded but moves no tokens.
--
-- The job's tenant bucket of each dependency (tenant shares) moves with the dependency's: it
-- was debited with it. A tenant bucket without a row is full (tenant_tokens_at()), so it gains
-- nothing, and one charged more gets its row, at its share of the bucket under the active
-- config (finish_jobs() holds the dependency bucket's lock, which every writer of its tenant
-- buckets takes first).
--
-- p_taken false: admission took nothing for this job (shadow mode let in a job enforcement
-- would have refused), so nothing is settled: the costs are only added up.
--
-- The live definition is janus/db/sql/settle_costs.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION settle_costs(
    p_user_id  uuid,
    p_charged  jsonb,        -- the job's dependencies, {name: cost}, as admission charged them
    p_settled  jsonb,        -- the job's actual_costs so far (null: never reported)
    p_reported jsonb,        -- {name: tokens}, tokens >= 0
    p_at       timestamptz,
    p_tenant   text,         -- the job's tenant
    p_taken    boolean       -- false: admission took no token for this job
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    reported record;
    delta    numeric;
BEGIN
    FOR reported IN
        SELECT e.key COLLATE "C" AS name, e.value::bigint AS tokens
          FROM jsonb_each_text(p_reported) AS e
         WHERE p_taken
         ORDER BY 1
    LOOP
        IF p_settled -> reported.name IS NOT NULL THEN
            delta := -reported.tokens;
        ELSE
            delta := coalesce((p_charged ->> reported.name)::bigint, 0) - reported.tokens;
        END IF;
        CONTINUE WHEN delta = 0;
        -- Refilled to p_at first, exactly as admit_jobs() does (at the effective rate, which
        -- is brought to p_at with the tokens), then moved and clamped.
        UPDATE token_buckets tb
           SET tokens = greatest(0, least(tb.capacity,
                   bucket_tokens_at(tb.capacity, tb.tokens, tb.refill_per_second,
                                    tb.effective_refill_per_second,
                                    tb.adaptive_recovery_per_second, tb.refilled_at, p_at)
                   + delta)),
               effective_refill_per_second = bucket_rate_at(
                   tb.refill_per_second, tb.effective_refill_per_second,
                   tb.adaptive_recovery_per_second, tb.refilled_at, p_at),
               refilled_at = greatest(tb.refilled_at, p_at)
         WHERE tb.user_id = p_user_id AND tb.dependency = reported.name;
        CONTINUE WHEN NOT FOUND;

        UPDATE tenant_buckets t
           SET tokens = greatest(0, least(t.capacity,
                   tenant_tokens_at(t.capacity, t.tokens, t.refill_per_second, t.refilled_at,
                                    p_at)
                   + delta)),
               refilled_at = greatest(t.refilled_at, p_at)
         WHERE t.user_id = p_user_id AND t.dependency = reported.name AND t.tenant_id = p_tenant;
        -- No row: the bucket is full, at its share of the dependency's (tokens NULL).
        IF NOT FOUND AND delta < 0 THEN
            INSERT INTO tenant_buckets (user_id, dependency, tenant_id, capacity,
                                        refill_per_second, tokens, refilled_at)
            SELECT p_user_id, tb.dependency, p_tenant, s.share * tb.capacity,
                   s.share * tb.refill_per_second,
                   greatest(0, tenant_tokens_at(s.share * tb.capacity, NULL, NULL, NULL, p_at)
                               + delta),
                   p_at
              FROM token_buckets tb
              JOIN configs c ON c.user_id = p_user_id AND c.is_active
             CROSS JOIN LATERAL (SELECT tenant_share_of(c.tenant_overrides, c.tenant_share,
                                                        p_tenant) AS share) s
             WHERE tb.user_id = p_user_id AND tb.dependency = reported.name AND s.share < 1;
        END IF;
    END LOOP;

    RETURN (SELECT jsonb_object_agg(s.name, s.tokens)
              FROM (SELECT e.key AS name, sum(e.value::bigint) AS tokens
                      FROM (SELECT * FROM jsonb_each_text(coalesce(p_settled, '{}'))
                            UNION ALL
                            SELECT * FROM jsonb_each_text(p_reported)) AS e
                     GROUP BY e.key) AS s);
END
$fn$;
