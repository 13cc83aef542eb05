-- activate_config(): store a new config version and make it the active one, buckets included.
--
-- Returns the new version. Raises J0U01 for an unknown user (lock_user(), which serialises
-- activations of one user, so versions never collide).
--
-- p_paused NULL (the config leaves `paused` out) keeps the user's pause state; true or false
-- sets it through set_paused(), recorded as this version's doing. The version itself keeps
-- what it said (configs.paused, NULL when it said nothing). activate_version() then makes it
-- the active one and brings the buckets to it.
--
-- The live definition is janus/db/sql/activate_config.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION activate_config(
    p_user_id              uuid,
    p_paused               boolean,  -- NULL: keep the user's pause state
    p_min_priority         smallint,
    p_priority_reserve     numeric,
    p_unknown_dependencies text,
    -- {name: {"capacity": int, "refill_per_second": number, "adaptive"?: {"decrease": number,
    --         "floor": number, "recovery_per_minute": number}}}
    p_dependencies         json,
    -- No defaults: the config schema's (janus/schemas/requests.py) are the only ones, and Janus passes
    -- both.
    p_max_attempts         integer,  -- claims a job gets before it is failed
    p_retention_days       integer,  -- days finished jobs are kept (janus prune)
    p_mode                 text DEFAULT 'enforce',  -- or 'shadow': decide, then accept all
    p_tenant_share         numeric DEFAULT 1,       -- each tenant's share of every bucket
    p_tenant_overrides     jsonb DEFAULT '{}',      -- {tenant_id: share}
    -- a retried job's wait before its next attempt (retry_backoff()); 0: none
    p_retry_backoff_base_seconds numeric DEFAULT 0,
    p_retry_backoff_max_seconds  numeric DEFAULT 0,
    -- a job limited by tokens alone: 'reject' it, or accept it to 'wait' (admit_requests());
    -- and the longest it may wait before it is handed out, seconds
    p_when_limited               text DEFAULT 'reject',
    p_max_wait_seconds           integer DEFAULT 3600
)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    new_version integer;
BEGIN
    PERFORM lock_user(p_user_id);

    SELECT coalesce(max(version), 0) + 1 INTO new_version FROM configs WHERE user_id = p_user_id;

    INSERT INTO configs (user_id, version, is_active, paused, min_priority, priority_reserve,
                         unknown_dependencies, max_attempts, retention_days, activated_at,
                         mode, tenant_share, tenant_overrides, retry_backoff_base_seconds,
                         retry_backoff_max_seconds, when_limited, max_wait_seconds)
    VALUES (p_user_id, new_version, false, p_paused, p_min_priority, p_priority_reserve,
            p_unknown_dependencies, p_max_attempts, p_retention_days, NULL,
            p_mode, p_tenant_share, p_tenant_overrides, p_retry_backoff_base_seconds,
            p_retry_backoff_max_seconds, p_when_limited, p_max_wait_seconds);
    INSERT INTO config_dependencies (user_id, version, dependency, capacity, refill_per_second,
                                     adaptive_decrease, adaptive_floor,
                                     adaptive_recovery_per_minute)
    SELECT p_user_id, new_version, d.key, (d.value ->> 'capacity')::bigint,
           (d.value ->> 'refill_per_second')::numeric,
           (d.value -> 'adaptive' ->> 'decrease')::numeric,
           (d.value -> 'adaptive' ->> 'floor')::numeric,
           (d.value -> 'adaptive' ->> 'recovery_per_minute')::numeric
      FROM json_each(p_dependencies) AS d;

    IF p_paused IS NOT NULL THEN
        PERFORM set_paused(p_user_id, p_paused, new_version);
    END IF;
    PERFORM activate_version(p_user_id, new_version);
    RETURN new_version;
END
$fn$;
