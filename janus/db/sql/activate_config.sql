-- activate_config(): store a new config version and make it the active one, buckets included.
--
-- Returns the new version. Raises J0U01 for an unknown user.
--
-- A dependency's optional "adaptive" {"decrease", "floor", "recovery_per_minute"} (shares,
-- validated by janus/schemas.py, checked again by the tables) makes its bucket adaptive: see
-- report_upstream_throttled(). Every bucket of the new version starts at its configured
-- refill, a kept one included: a new config is the operator's new word on the upstream limit,
-- and a cut measured against the old limit says nothing about the new one.
--
-- The live definition is janus/db/sql/activate_config.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION activate_config(
    p_user_id              uuid,
    p_paused               boolean,
    p_min_priority         smallint,
    p_priority_reserve     numeric,
    p_unknown_dependencies text,
    -- {name: {"capacity": int, "refill_per_second": number, "adaptive"?: {"decrease": number,
    --         "floor": number, "recovery_per_minute": number}}}
    p_dependencies         json,
    -- Defaults as the config schema's, so a caller that predates them keeps working.
    p_max_attempts         integer DEFAULT 3,  -- claims a job gets before it is failed
    p_retention_days       integer DEFAULT 7   -- days finished jobs are kept (janus prune)
)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    new_version integer;
    activated   timestamptz;
BEGIN
    -- The user row lock serialises activations of one user, so versions never collide.
    PERFORM 1 FROM users WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;

    SELECT coalesce(max(version), 0) + 1 INTO new_version FROM configs WHERE user_id = p_user_id;

    UPDATE configs SET is_active = false WHERE user_id = p_user_id AND is_active;
    INSERT INTO configs (user_id, version, is_active, paused, min_priority, priority_reserve,
                         unknown_dependencies, max_attempts, retention_days, activated_at)
    VALUES (p_user_id, new_version, true, p_paused, p_min_priority, p_priority_reserve,
            p_unknown_dependencies, p_max_attempts, p_retention_days, now());
    INSERT INTO config_dependencies (user_id, version, dependency, capacity, refill_per_second,
                                     adaptive_decrease, adaptive_floor,
                                     adaptive_recovery_per_minute)
    SELECT p_user_id, new_version, d.key, (d.value ->> 'capacity')::bigint,
           (d.value ->> 'refill_per_second')::numeric,
           (d.value -> 'adaptive' ->> 'decrease')::numeric,
           (d.value -> 'adaptive' ->> 'floor')::numeric,
           (d.value -> 'adaptive' ->> 'recovery_per_minute')::numeric
      FROM json_each(p_dependencies) AS d;

    -- Same lock order as admit_jobs (dependency name), so activation cannot deadlock with it.
    PERFORM 1 FROM token_buckets WHERE user_id = p_user_id ORDER BY dependency FOR UPDATE;
    activated := clock_timestamp();

    DELETE FROM token_buckets tb
     WHERE tb.user_id = p_user_id
       AND NOT EXISTS (SELECT 1 FROM config_dependencies cd
                        WHERE cd.user_id = p_user_id AND cd.version = new_version
                          AND cd.dependency = tb.dependency);

    -- A kept bucket is refilled at its old (effective) rate up to now, then clamped to the new
    -- capacity; a new bucket starts full. Both start at the configured refill. The floor and
    -- the recovery are kept in tokens/s (per second): f x refill, and r x refill / 60 (the only
    -- division, at numeric's precision), so that refilling never divides by 60.
    INSERT INTO token_buckets AS tb (user_id, dependency, capacity, refill_per_second, tokens,
                                     refilled_at, effective_refill_per_second, adaptive_decrease,
                                     adaptive_floor_per_second, adaptive_recovery_per_second,
                                     throttled_at)
    SELECT cd.user_id, cd.dependency, cd.capacity, cd.refill_per_second, cd.capacity, activated,
           cd.refill_per_second, cd.adaptive_decrease,
           cd.adaptive_floor * cd.refill_per_second,
           cd.adaptive_recovery_per_minute * cd.refill_per_second / 60,
           NULL
      FROM config_dependencies cd
     WHERE cd.user_id = p_user_id AND cd.version = new_version
    ON CONFLICT (user_id, dependency) DO UPDATE
       SET tokens = least(excluded.capacity,
                          tb.capacity,
                          tb.tokens + refill_tokens(
                              tb.refill_per_second, tb.effective_refill_per_second,
                              tb.adaptive_recovery_per_second,
                              greatest(0, extract(epoch FROM activated - tb.refilled_at)))),
           capacity = excluded.capacity,
           refill_per_second = excluded.refill_per_second,
           refilled_at = greatest(tb.refilled_at, activated),
           effective_refill_per_second = excluded.effective_refill_per_second,
           adaptive_decrease = excluded.adaptive_decrease,
           adaptive_floor_per_second = excluded.adaptive_floor_per_second,
           adaptive_recovery_per_second = excluded.adaptive_recovery_per_second,
           throttled_at = NULL;

    RETURN new_version;
END
$fn$;
