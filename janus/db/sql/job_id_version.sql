-- job_id_version(): the version of a job id as a UUID (RFC 9562): 7 for a time-ordered id,
-- made by new_job_id() since migration 0013; 4 for a random one, of a job stored before it.
--
-- Time-ordered ids sort as the jobs were decided (first_job_id_at() holds their layout), so
-- the primary key (user_id, job_id) read backwards is a user's history newest first; random
-- ids are scattered over the whole key, above and below them. The history, the activity and
-- `janus prune` read each kind on its own (`job_id_version(job_id) = 7`, and `<> 7` through
-- the partial index jobs_with_random_ids, migration 0016, which holds the random ones only:
-- no job stored since 0013 has an entry in it).
--
-- IMMUTABLE, plain SQL, one expression of built-in functions only: inlined by the planner,
-- so a query's condition and the index's predicate are the same expression, and so are they
-- and the statistics jobs_job_id_version (migration 0016), which tell the planner how many
-- jobs have each version (without them it guesses 1 in 200 for `= 7`, and would rather sort
-- a user's jobs than read an index in order). Built-in functions only: ANALYZE, VACUUM and
-- index builds evaluate it with search_path set to pg_catalog alone. The version is the high
-- 4 bits of the 7th byte.
--
-- The live definition is janus/db/sql/job_id_version.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION job_id_version(p_job_id uuid)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT get_byte(uuid_send(p_job_id), 6) >> 4
$fn$;
