-- bucket_tokens_at(): a dependency's bucket's tokens at p_at, from its row as last written.
--
-- The row holds its tokens and its effective refill as of p_refilled_at; the bucket has
-- gained refill_tokens() since (at the effective rate, which an adaptive bucket recovers
-- meanwhile: refill_rate()), up to its capacity. Admission, settlement, throttling reports,
-- activation and the view token_buckets_now all refill through it, so a bucket has one level
-- at a moment whoever reads it. bucket_rate_at() is its effective refill at the same moment.
--
-- IMMUTABLE, plain SQL, one expression: inlined by the planner (seconds_elapsed()).
--
-- The live definition is janus/db/sql/bucket_tokens_at.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION bucket_tokens_at(
    p_capacity    bigint,
    p_tokens      numeric,      -- as of p_refilled_at
    p_refill      numeric,      -- the configured refill, tokens/s
    p_effective   numeric,      -- the effective refill as of p_refilled_at, tokens/s
    p_recovery    numeric,      -- tokens/s the rate regains per second; NULL: not adaptive
    p_refilled_at timestamptz,
    p_at          timestamptz   -- read by the caller once it holds the row's lock
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT least(p_capacity,
                 p_tokens + refill_tokens(p_refill, p_effective, p_recovery,
                                          seconds_elapsed(p_refilled_at, p_at)))
$fn$;
