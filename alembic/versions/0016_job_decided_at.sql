-- job_decided_at(): the moment a time-ordered job id was made, to the microsecond: when
-- admission decided the job (new_job_id()). The inverse of first_job_id_at(), whose file holds
-- the layout: job_decided_at(first_job_id_at(t)) = t for every t from 1970 on.
--
-- Meaningless for a random id (version 4, jobs stored before migration 0013): see
-- job_id_version(). The microseconds come back exactly from their scaled 12 bits,
-- s = floor(us x 4096 / 1000), as the one whole us in [s x 1000 / 4096, (s + 1) x 1000 / 4096).
--
-- A few microseconds a call (the id is read through its text): GET /dashboard/activity calls
-- it once, not per job.
--
-- The live definition is janus/db/sql/job_decided_at.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION job_decided_at(p_job_id uuid)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT timestamptz '1970-01-01 00:00:00+00'
           + ((bits >> 16) * 1000 + ((bits & 4095) * 1000 + 4095) / 4096)
             * interval '1 microsecond'
      FROM (SELECT ('x' || encode(substring(uuid_send(p_job_id) FROM 1 FOR 8), 'hex'))
                   ::bit(64)::bigint) AS id(bits)
$fn$;
