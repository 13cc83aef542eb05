-- first_job_id_at(): the smallest job id new_job_id() can make at p_at or later.
--
-- Where the layout of a job id is written: its first 64 bits tell the moment it was made,
-- the rest is random. Most significant bits first, as RFC 9562 section 5.7 and method 3 of
-- section 6.2 lay out a UUID of version 7:
--   48 bits  Unix time in milliseconds
--    4 bits  version, 7
--   12 bits  the microseconds within that millisecond, scaled to 0..4095, so that ids of
--            one millisecond still sort by time (the scaling keeps each microsecond apart)
--    2 bits  variant, 10
--   62 bits  random
-- Here the last 64 bits are zero, so the id sorts before every id made at p_at or later and
-- after every id made before it: "decided at or after p_at" is `job_id >= first_job_id_at(p_at)`
-- and "decided before p_at" is `job_id < first_job_id_at(p_at)`, ranges of the primary key
-- (user_id, job_id) that the job history, the activity and `janus prune` read (queries.sql).
-- new_job_id() lays the random bits of a gen_random_uuid() over its last 64.
--
-- IMMUTABLE, plain SQL, one expression: inlined by the planner, and folded to a constant
-- where p_at is one. The Unix time in microseconds is exact (seconds_elapsed()).
--
-- The live definition is janus/db/sql/first_job_id_at.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION first_job_id_at(p_at timestamptz)
RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT encode(int8send(((seconds_elapsed(timestamptz '1970-01-01 00:00:00+00', p_at)
                             * 1000000)::bigint / 1000) << 16                  -- milliseconds
                           | x'7000'::integer                                  -- version 7
                           | ((seconds_elapsed(timestamptz '1970-01-01 00:00:00+00', p_at)
                               * 1000000)::bigint % 1000) * 4096 / 1000)       -- sub-millisecond
                  || '\x0000000000000000'::bytea,
                  'hex')::uuid
$fn$;
