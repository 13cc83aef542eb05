-- new_job_id(): a new job's id, a time-ordered UUID (version 7 of RFC 9562).
--
-- The jobs primary key is (user_id, job_id). A random id (version 4) lands anywhere in a
-- user's part of that B-tree, so once the index outgrows shared_buffers every insert reads
-- and dirties a leaf page of its own, and writes it whole to the WAL after each checkpoint.
-- Ids that grow with time all land on the last leaf of the user's part, as new entries of
-- the created_at indexes land on its first (bench/README.md, the soak, has the measurements).
--
-- Layout, most significant bits first, as RFC 9562 section 5.7 and method 3 of section 6.2:
--   48 bits  Unix time in milliseconds
--    4 bits  version, 7
--   12 bits  the microseconds within that millisecond, scaled to 0..4095, so that ids of
--            one millisecond still sort (nearly) by time
--    2 bits  variant, 10
--   62 bits  random
-- The first 64 bits are one bigint, sent big-endian by int8send(), laid over the first 8
-- bytes of a gen_random_uuid(), whose last 8 already hold the variant and random bits. Ids
-- made in one microsecond differ in their 62 random bits only. PostgreSQL 18's uuidv7()
-- has the same layout; this function is the same on every server Janus runs on.
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
    -- Read once: the milliseconds and the microseconds within them must be of one instant.
    -- The Unix time (seconds_elapsed() is exact to the microsecond, as the clock is).
    micros bigint := (seconds_elapsed(timestamptz '1970-01-01 00:00:00+00', clock_timestamp())
                      * 1000000)::bigint;
BEGIN
    -- PL/pgSQL rather than a SQL function with a subquery: a third of the cost a call.
    RETURN encode(
               overlay(uuid_send(gen_random_uuid())
                       PLACING int8send((micros / 1000) << 16              -- milliseconds
                                        | x'7000'::integer                 -- version 7
                                        | (micros % 1000) * 4096 / 1000)   -- sub-millisecond
                       FROM 1 FOR 8),
               'hex')::uuid;
END
$fn$;
