-- new_job_id(): a new job's id, a time-ordered UUID (version 7 of RFC 9562).
--
-- The jobs primary key is (user_id, job_id). A random id (version 4) lands anywhere in a
-- user's part of that B-tree, so once the index outgrows shared_buffers every insert reads
-- and dirties a leaf page of its own, and writes it whole to the WAL after each checkpoint.
-- Ids that grow with time all land on the last leaf of the user's part (bench/README.md, the
-- soak, has the measurements), and the key read backwards is the user's history newest first
-- (queries.sql's job_history).
--
-- The layout is first_job_id_at()'s: the moment first (Unix milliseconds, version 7, the
-- microseconds within the millisecond), then 64 random bits taken from a gen_random_uuid(),
-- which already hold the variant. Ids made in one microsecond differ in their 62 random bits
-- only. PostgreSQL 18's uuidv7() has the same layout; this function is the same on every
-- server Janus runs on.
--
-- An id tells its owner when the job was created, to the millisecond: the owner already
-- reads created_at in the job's record.
--
-- The live definition is janus/db/sql/new_job_id.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION new_job_id()
RETURNS uuid
LANGUAGE plpgsql
VOLATILE PARALLEL SAFE
AS $fn$
DECLARE
    -- Read once, as the clock stands when the job is decided.
    made_at timestamptz := clock_timestamp();
BEGIN
    -- PL/pgSQL rather than a SQL function with a subquery: a third of the cost a call.
    -- first_job_id_at() is inlined into this expression.
    RETURN encode(overlay(uuid_send(first_job_id_at(made_at))
                          PLACING substring(uuid_send(gen_random_uuid()) FROM 9) FROM 9),
                  'hex')::uuid;
END
$fn$;
