-- tenant_tokens_at(): a tenant's bucket's tokens at p_at; a bucket without a row is full.
--
-- A tenant bucket refills at its own refill (its share of the dependency's configured
-- refill, never adaptive: the dependency's bucket carries the upstream's throttling), up to
-- its capacity. Its row is written only when a job debits it, and `janus prune` deletes it
-- once full again: so a bucket without a row (p_tokens NULL) is full, and p_capacity is then
-- the tenant's share of the dependency's capacity under the active config. Admission,
-- settlement, activation, pruning and the view tenant_buckets_now all read a tenant bucket
-- through it.
--
-- IMMUTABLE, plain SQL, one expression: inlined by the planner (seconds_elapsed()).
--
-- The live definition is janus/db/sql/tenant_tokens_at.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION tenant_tokens_at(
    p_capacity    numeric,      -- the row's; without a row, share x the dependency's capacity
    p_tokens      numeric,      -- as of p_refilled_at; NULL: the bucket has no row
    p_refill      numeric,      -- tokens/s
    p_refilled_at timestamptz,
    p_at          timestamptz   -- read by the caller once it holds the dependency's lock
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE WHEN p_tokens IS NULL THEN p_capacity
                ELSE least(p_capacity,
                           p_tokens + p_refill * seconds_elapsed(p_refilled_at, p_at))
           END
$fn$;
