-- unfinished_until(): the id at and above which none of a user's jobs is unfinished, given
-- its jobs_unfinished_from (p_from) and the moment of a claim (p_at): the first id of a
-- minute after p_at, since every job is given its id by the database's clock when it is
-- decided (new_job_id()); no bound at all when p_from is the lowest id, which says the user
-- may have an unfinished job of random id (stored before migration 0013: its id says nothing
-- of a moment), or has not been looked at by `janus maintain` yet.
--
-- With jobs_unfinished_from, what hand_out_jobs() and claim_queued_jobs() read of jobs: the
-- partitions of now, not those of the retention behind nor of the spans made ahead.
--
-- The live definition is janus/db/sql/unfinished_until.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION unfinished_until(p_from uuid, p_at timestamptz)
RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE WHEN p_from = '00000000-0000-0000-0000-000000000000'
                THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid
                ELSE first_job_id_at(p_at + interval '1 minute') END
$fn$;
