-- reserve_wait(): whether a bucket can give a job its cost now and keep the priority reserve,
-- and if not, how long the job must wait.
--
-- The contract's priority reserve: a job of priority p may take its cost c from a bucket of
-- capacity C only while the bucket keeps at least C x f x (10 - p) / 9 tokens after it. The
-- test is made multiplied by 9, so it is exact: the shortfall x 9 is
-- C x f x (10 - p) - 9 x (tokens - c). Returns
--
--   NULL        no shortfall: the bucket can give the cost now (or there is no such bucket:
--               p_capacity NULL);
--   'Infinity'  waiting never cures it: the bucket never refills (p_rate 0), or the cost and
--               the reserve together exceed the capacity;
--   otherwise   the seconds until the bucket refills enough, at p_rate, if nothing else
--               takes from it: the shortfall x 9 / (9 x p_rate), exact to numeric's division.
--
-- One rule for both kinds of bucket: admit_jobs() asks it of each dependency's bucket (at its
-- effective refill) and of the tenant's bucket of that dependency (at its share's refill).
--
-- IMMUTABLE, plain SQL, one expression: the planner inlines it into the caller's expression.
--
-- The live definition is janus/db/sql/reserve_wait.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION reserve_wait(
    p_capacity numeric,
    p_tokens   numeric,   -- the bucket's tokens now
    p_rate     numeric,   -- its refill now, tokens/s
    p_cost     bigint,    -- what the job would take
    p_reserve  numeric,   -- the config's priority_reserve, f
    p_priority integer    -- the job's, 1 to 10
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN p_capacity IS NULL THEN NULL
        WHEN p_capacity * p_reserve * (10 - p_priority) <= 9 * (p_tokens - p_cost) THEN NULL
        WHEN p_rate = 0 OR 9 * p_cost + p_capacity * p_reserve * (10 - p_priority) > 9 * p_capacity
            THEN 'Infinity'
        ELSE (p_capacity * p_reserve * (10 - p_priority) - 9 * (p_tokens - p_cost)) / (9 * p_rate)
    END
$fn$;
