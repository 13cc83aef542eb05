-- activate_version(): make a stored config version the user's active one, buckets included.
--
-- Called by activate_config() for a new version, and on its own to roll back to an older
-- one (POST /dashboard/config/versions/{version}/activate, `janus config activate`): the
-- version becomes active again as it is, with a new activated_at; no version is copied.
-- Raises J0U01 for an unknown user and J0V01 for a version the user does not have. The
-- user's pause state is not a version's to change here (set_paused()).
--
-- A dependency's optional "adaptive" {"decrease", "floor", "recovery_per_minute"} (shares,
-- validated by janus/schemas/requests.py, checked again by the tables) makes its bucket adaptive: see
-- report_upstream_throttled(). Every bucket of the version starts at its configured refill,
-- a kept one included: an activation is the operator's new word on the upstream limit, and a
-- cut measured against the old limit says nothing about the new one.
--
-- Tenant buckets follow as dependency buckets do: those of a removed dependency go with its
-- bucket (ON DELETE CASCADE), those of a tenant whose share is now 1 are dropped (no limit),
-- those full again are dropped (a tenant without a row is full whatever the version), and the
-- others are refilled up to now, then take their share of the new capacity and refill, their
-- tokens clamped to it.
--
-- The live definition is janus/db/sql/activate_version.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION activate_version(
    p_user_id uuid,
    p_version integer
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    activated timestamptz;
BEGIN
    -- The user row lock serialises activations of one user (activate_config() holds it too).
    PERFORM lock_user(p_user_id);
    PERFORM 1 FROM configs WHERE user_id = p_user_id AND version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown config version' USING ERRCODE = 'J0V01';
    END IF;

    -- Two statements: the unique index on the active version is checked row by row.
    UPDATE configs SET is_active = false WHERE user_id = p_user_id AND is_active;
    UPDATE configs SET is_active = true, activated_at = now()
     WHERE user_id = p_user_id AND version = p_version;

    -- Same lock order as admit_jobs (dependency name), so activation cannot deadlock with it.
    PERFORM 1 FROM token_buckets WHERE user_id = p_user_id ORDER BY dependency FOR UPDATE;
    activated := clock_timestamp();

    DELETE FROM token_buckets tb
     WHERE tb.user_id = p_user_id
       AND NOT EXISTS (SELECT 1 FROM config_dependencies cd
                        WHERE cd.user_id = p_user_id AND cd.version = p_version
                          AND cd.dependency = tb.dependency);

    -- A kept bucket is refilled at its old (effective) rate up to now (bucket_tokens_at()),
    -- then clamped to the new capacity; a new bucket starts full. Both start at the configured
    -- refill. The floor and the recovery are kept in tokens/s (per second): f x refill, and
    -- r x refill / 60 (the only division, at numeric's precision), so that refilling never
    -- divides by 60.
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
     WHERE cd.user_id = p_user_id AND cd.version = p_version
    ON CONFLICT (user_id, dependency) DO UPDATE
       SET tokens = least(excluded.capacity,
                          bucket_tokens_at(tb.capacity, tb.tokens, tb.refill_per_second,
                                           tb.effective_refill_per_second,
                                           tb.adaptive_recovery_per_second, tb.refilled_at,
                                           activated)),
           capacity = excluded.capacity,
           refill_per_second = excluded.refill_per_second,
           refilled_at = greatest(tb.refilled_at, activated),
           effective_refill_per_second = excluded.effective_refill_per_second,
           adaptive_decrease = excluded.adaptive_decrease,
           adaptive_floor_per_second = excluded.adaptive_floor_per_second,
           adaptive_recovery_per_second = excluded.adaptive_recovery_per_second,
           throttled_at = NULL;

    -- Their dependency buckets are locked above, so these rows have no other writer now. A row
    -- full again goes too, as `janus prune` would delete it: without a row a tenant bucket is
    -- full at its new capacity, so a tenant full before is full after, pruned or not.
    DELETE FROM tenant_buckets t
     USING configs c
     WHERE t.user_id = p_user_id AND c.user_id = p_user_id AND c.version = p_version
       AND (tenant_share_of(c.tenant_overrides, c.tenant_share, t.tenant_id) >= 1
            OR tenant_tokens_at(t.capacity, t.tokens, t.refill_per_second, t.refilled_at,
                                activated) >= t.capacity);
    -- What is left was not full at the activation: refilled up to it at the old rate, then
    -- clamped to the new capacity.
    UPDATE tenant_buckets t
       SET tokens = least(tenant_share_of(c.tenant_overrides, c.tenant_share, t.tenant_id)
                          * tb.capacity,
                          tenant_tokens_at(t.capacity, t.tokens, t.refill_per_second,
                                           t.refilled_at, activated)),
           capacity = tenant_share_of(c.tenant_overrides, c.tenant_share, t.tenant_id)
                      * tb.capacity,
           refill_per_second = tenant_share_of(c.tenant_overrides, c.tenant_share, t.tenant_id)
                               * tb.refill_per_second,
           refilled_at = greatest(t.refilled_at, activated)
      FROM token_buckets tb, configs c
     WHERE t.user_id = p_user_id AND tb.user_id = p_user_id AND tb.dependency = t.dependency
       AND c.user_id = p_user_id AND c.version = p_version;
END
$fn$;
