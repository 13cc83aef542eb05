-- report_upstream_throttled(): workers saw the upstream API answer 429; slow those buckets down.
--
-- For each named bucket of the user that is adaptive (its dependency has "adaptive" in the
-- active config), under its row lock: tokens and the effective refill are first brought up to
-- the database clock (bucket_tokens_at(), bucket_rate_at(): the rate recovered since the last
-- write), then the effective refill is multiplied by the bucket's decrease factor, never below
-- its floor (multiplicative decrease; the additive increase is refill_rate()). Names that are
-- not the user's adaptive buckets, an unknown user included, are ignored: a worker may report
-- any name its upstream used. A name listed twice is one report.
--
-- Meant to be called in the transaction that completes or fails the job, so the report and the
-- job's outcome commit together. Rows are locked in dependency-name order, as admit_jobs() and
-- activate_config() lock them, so it cannot deadlock with them; a caller that locks other
-- buckets of the user in the same transaction must lock them in that order too.
--
-- A decrease is rounded to 24 decimal places (1e-24 tokens/s): reports that arrive faster
-- than the rate recovers would otherwise grow numeric's scale by the factor's with each one.
--
-- Returns each bucket it slowed down, with its effective refill after the decrease.
--
-- The live definition is janus/db/sql/report_upstream_throttled.sql; a migration that changes
-- it applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION report_upstream_throttled(
    p_user_id      uuid,
    p_dependencies text[],
    -- The decision clock of a caller that already holds these buckets' locks (finish_jobs()
    -- settles costs at it too); NULL: read the clock here, once the locks are held.
    p_at           timestamptz DEFAULT NULL
)
RETURNS TABLE (dependency text, effective_refill_per_second numeric)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    reported_at timestamptz;
BEGIN
    -- Non-adaptive buckets are not locked: a report changes nothing there, and admissions on
    -- them need not wait for it.
    PERFORM 1
       FROM token_buckets tb
      WHERE tb.user_id = p_user_id AND tb.dependency = ANY (p_dependencies)
        AND tb.adaptive_decrease IS NOT NULL
      ORDER BY tb.dependency
        FOR UPDATE;
    -- Read once the locks are held, as admit_jobs() does: no later writer can have refilled
    -- these rows past it.
    reported_at := coalesce(p_at, clock_timestamp());

    RETURN QUERY
    UPDATE token_buckets tb
       SET tokens = bucket_tokens_at(tb.capacity, tb.tokens, tb.refill_per_second,
                                     tb.effective_refill_per_second,
                                     tb.adaptive_recovery_per_second, tb.refilled_at, reported_at),
           -- least(refill, ...): rounding up cannot lift a tiny refill's cut above it.
           effective_refill_per_second = greatest(
               tb.adaptive_floor_per_second,
               least(tb.refill_per_second, trim_scale(round(
                   bucket_rate_at(tb.refill_per_second, tb.effective_refill_per_second,
                                  tb.adaptive_recovery_per_second, tb.refilled_at, reported_at)
                   * tb.adaptive_decrease,
                   24)))),
           refilled_at = greatest(tb.refilled_at, reported_at),
           throttled_at = reported_at
     WHERE tb.user_id = p_user_id AND tb.dependency = ANY (p_dependencies)
       AND tb.adaptive_decrease IS NOT NULL
    RETURNING tb.dependency::text, tb.effective_refill_per_second;
END
$fn$;
