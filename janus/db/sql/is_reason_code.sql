-- is_reason_code(): whether a text is one of the reason codes admit_jobs() gives, the closed
-- set of janus/reasons.py's ReasonCode: min_priority, unknown_dependency, over_capacity,
-- rate_limit, tenant_share, atomic_batch. NULL for NULL (STRICT): an accepted job has none.
--
-- The CHECKs of jobs.reason_code and jobs.shadow_reason_code call it, so the set is written
-- once in SQL. PL/pgSQL rather than SQL, and a call rather than an IN list in each CHECK:
-- Postgres reads and prepares a table's CHECK expressions anew for every INSERT statement,
-- and two IN lists of six strings cost a single admission about 5% more backend
-- instructions; a PL/pgSQL call is small to prepare (a SQL function would be inlined, its
-- body parsed each time) and runs for a rejected job's code only.
--
-- The live definition is janus/db/sql/is_reason_code.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION is_reason_code(p_code text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
BEGIN
    RETURN p_code IN ('min_priority', 'unknown_dependency', 'over_capacity', 'rate_limit',
                      'tenant_share', 'atomic_batch');
END
$fn$;
