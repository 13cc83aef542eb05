-- retry_backoff(): how long a job waits before its next attempt after attempt p_attempt failed
-- (a worker's fail with retry, or an expired lease), under a config's retry_backoff: the base
-- doubled for each attempt made, never above the max, with jitter. NULL when the base is 0,
-- the backoff off: the job is queued again at once.
--
-- The jitter is "equal jitter": half the delay for certain, the other half at random, so that
-- jobs failed together (an upstream's outage) come back spread out, and never sooner than half
-- the backoff. finish_jobs() and hand_out_jobs() call it; a worker's retry_after_seconds takes
-- its place.
--
-- The live definition is janus/db/sql/retry_backoff.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION retry_backoff(
    p_base_seconds numeric,  -- configs.retry_backoff_base_seconds
    p_max_seconds  numeric,  -- configs.retry_backoff_max_seconds
    p_attempt      integer   -- the attempt that failed, from 1
)
RETURNS interval
LANGUAGE sql
VOLATILE
AS $fn$
    SELECT CASE WHEN p_base_seconds > 0 THEN
               make_interval(secs => d.delay / 2 + random() * d.delay / 2)
           END
      FROM (SELECT least(p_max_seconds,
                         p_base_seconds * power(2::numeric, least(greatest(p_attempt, 1) - 1, 40)))
                   ::double precision AS delay) AS d
$fn$;
