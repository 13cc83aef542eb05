-- report_upstream_throttled(): a worker said these dependencies throttled it (HTTP 429 and
-- the like) while it ran a job; called by finish_jobs() for each complete or fail that reports
-- `upstream_throttled`, in the same transaction.
--
-- A stub for now: it does nothing. The adaptive refill of issue 9 (item 5) fills it in: cut
-- the effective refill of each named bucket multiplicatively (AIMD). When it is called, the
-- caller already holds the row locks of the user's buckets named in p_dependencies (taken in
-- dependency-name order, with those of the costs being settled), and p_at is the database
-- clock read once those locks were held, as admit_jobs() reads it. Names without a bucket are
-- to be ignored. p_dependencies is sorted by name, without duplicates.
--
-- The live definition is janus/db/sql/report_upstream_throttled.sql; a migration that changes
-- it applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION report_upstream_throttled(
    p_user_id      uuid,
    p_dependencies text[],
    p_at           timestamptz
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    -- Nothing yet: see the comment above (issue 9, item 5, adaptive refill).
    RETURN;
END
$fn$;
