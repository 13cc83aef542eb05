-- reserve_wait(): how long a job must wait for a bucket that is short of its cost and the
-- priority reserve (reserve_shortfall_x9() > 0), if nothing else takes from the bucket.
--
-- Returns NULL when the bucket is not short (p_shortfall_x9 <= 0, or NULL: no bucket);
-- 'Infinity' when waiting never cures it: the bucket never refills (p_rate 0), or the cost and
-- the reserve together exceed the capacity; otherwise the seconds until the bucket has
-- refilled the shortfall at p_rate, exact to numeric's division.
--
-- Asked only of a bucket short (admit_jobs()), for dependency and tenant buckets alike.
--
-- IMMUTABLE, plain SQL, one expression: the planner inlines it into the caller's expression.
--
-- The live definition is janus/db/sql/reserve_wait.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION reserve_wait(
    p_shortfall_x9 numeric,   -- reserve_shortfall_x9() of the bucket
    p_capacity     numeric,
    p_rate         numeric,   -- its refill now, tokens/s
    p_cost         bigint,
    p_reserve      numeric,
    p_priority     integer
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_shortfall_x9 IS NULL OR p_shortfall_x9 <= 0 THEN NULL
        WHEN p_rate = 0 OR 9 * p_cost + p_capacity * p_reserve * (10 - p_priority) > 9 * p_capacity
            THEN 'Infinity'
        ELSE p_shortfall_x9 / (9 * p_rate)
    END
$fn$;
