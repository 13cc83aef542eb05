-- refill_tokens(): the tokens a bucket gains over p_elapsed seconds, before clamping at capacity.
--
-- A bucket's refill rate is p_effective tokens/s at the start. A non-adaptive bucket (no
-- p_recovery) keeps it: the gain is p_effective * p_elapsed, exactly what every bucket gained
-- before adaptive refill existed. An adaptive bucket's rate rises by p_recovery tokens/s every
-- second (additive increase) until it reaches the configured p_refill, then stays there, so the
-- gain is the integral of that piecewise-linear rate:
--
--   while rising      e * t + a * t^2 / 2
--   once at p_refill  R * t - (R - e)^2 / (2 * a)   (the triangle it did not get)
--
-- Everything is numeric: the only rounding is the division of the second case, at numeric's
-- division precision (at least 16 significant digits). `* 0.5` rather than `/ 2` keeps the
-- first case exact. Clamping at capacity afterwards is exact too, since the rate is never
-- negative: a bucket that reached capacity stays there.
--
-- The live definition is janus/db/sql/refill_tokens.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION refill_tokens(
    p_refill    numeric,  -- the configured refill, tokens/s: the most the rate recovers to
    p_effective numeric,  -- the rate at the start, tokens/s (<= p_refill)
    p_recovery  numeric,  -- tokens/s the rate regains per second; NULL: not adaptive
    p_elapsed   numeric   -- seconds, >= 0
)
RETURNS numeric
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_recovery IS NULL OR p_recovery = 0 OR p_effective >= p_refill
            THEN p_effective * p_elapsed
        WHEN p_recovery * p_elapsed <= p_refill - p_effective
            THEN p_effective * p_elapsed + p_recovery * p_elapsed * p_elapsed * 0.5
        ELSE greatest(0, p_refill * p_elapsed
                         - (p_refill - p_effective) * (p_refill - p_effective) / (2 * p_recovery))
    END
$fn$;
