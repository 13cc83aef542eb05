-- reserve_shortfall_x9(): how far a bucket is from giving a job its cost now and keeping the
-- priority reserve, multiplied by 9; > 0: the bucket is short.
--
-- The contract's priority reserve: a job of priority p may take its cost c from a bucket of
-- capacity C only while the bucket keeps at least C x f x (10 - p) / 9 tokens after it.
-- Multiplied by 9, the test is exact: C x f x (10 - p) - 9 x (tokens - c) > 0 is short.
-- NULL when there is no such bucket (p_capacity NULL). reserve_wait() tells how long a bucket
-- short keeps the job waiting.
--
-- One rule for both kinds of bucket: admit_jobs() asks it of each dependency's bucket and of
-- the tenant's bucket of that dependency.
--
-- IMMUTABLE, plain SQL, one expression: the planner inlines it into the caller's expression.
--
-- The live definition is janus/db/sql/reserve_shortfall_x9.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION reserve_shortfall_x9(
    p_capacity numeric,
    p_tokens   numeric,   -- the bucket's tokens now
    p_cost     bigint,    -- what the job would take
    p_reserve  numeric,   -- the config's priority_reserve, f
    p_priority integer    -- the job's, 1 to 10
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT p_capacity * p_reserve * (10 - p_priority) - 9 * (p_tokens - p_cost)
$fn$;
