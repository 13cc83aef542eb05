-- refill_rate(): a bucket's effective refill rate p_elapsed seconds later.
--
-- An adaptive bucket's rate regains p_recovery tokens/s every second while no upstream
-- throttling is reported (additive increase), up to its configured p_refill; a non-adaptive
-- bucket (no p_recovery) keeps its rate. Exact numeric arithmetic. refill_tokens() integrates
-- the same rate over the same time, and its parameters are these: p_refill the configured
-- refill (tokens/s), p_effective the rate at the start (tokens/s, <= p_refill), p_recovery the
-- tokens/s the rate regains per second (NULL: not adaptive), p_elapsed seconds (>= 0).
--
-- The live definition is janus/db/sql/refill_rate.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION refill_rate(p_refill numeric, p_effective numeric, p_recovery numeric,
                                       p_elapsed numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_recovery IS NULL OR p_effective >= p_refill THEN p_effective
        ELSE least(p_refill, p_effective + p_recovery * p_elapsed)
    END
$fn$;
