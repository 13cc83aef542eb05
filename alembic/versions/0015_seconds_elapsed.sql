-- seconds_elapsed(): the seconds from p_since to p_until, never negative.
--
-- What every refill multiplies its rate by. Exact: the epoch of an interval is numeric, to the
-- microsecond. A moment read after a row lock is never before the moment its row was last
-- written at, unless the clock stepped backwards: then no time has passed, rather than a
-- negative refill.
--
-- IMMUTABLE, plain SQL, one expression: the planner inlines it (and the functions built on it:
-- bucket_tokens_at(), bucket_rate_at(), tenant_tokens_at()) into the statement that calls it.
-- The moments are arguments: callers read the clock, once, where their locks make it right.
--
-- The live definition is janus/db/sql/seconds_elapsed.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION seconds_elapsed(p_since timestamptz, p_until timestamptz)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT greatest(0, extract(epoch FROM p_until - p_since))
$fn$;
