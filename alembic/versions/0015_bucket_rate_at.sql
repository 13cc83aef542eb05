-- bucket_rate_at(): a dependency's bucket's effective refill at p_at, tokens/s.
--
-- Stored as of p_refilled_at, like the tokens: an adaptive bucket's rate has recovered since
-- (refill_rate()); any other bucket's is its configured refill. bucket_tokens_at() is the
-- tokens at the same moment, gained at this rate as it recovered.
--
-- IMMUTABLE, plain SQL, one expression: inlined by the planner (seconds_elapsed()).
--
-- The live definition is janus/db/sql/bucket_rate_at.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION bucket_rate_at(
    p_refill      numeric,      -- the configured refill, tokens/s
    p_effective   numeric,      -- the effective refill as of p_refilled_at, tokens/s
    p_recovery    numeric,      -- tokens/s the rate regains per second; NULL: not adaptive
    p_refilled_at timestamptz,
    p_at          timestamptz
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT refill_rate(p_refill, p_effective, p_recovery, seconds_elapsed(p_refilled_at, p_at))
$fn$;
