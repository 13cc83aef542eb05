-- add_jobs_partition(): a partition of jobs for the job ids decided in [p_from, p_to), named
-- jobs_YYYYMMDD_HHMM after p_from in UTC; returns its name.
--
-- jobs is partitioned by range of job_id (migration 0024): a job's id starts with the moment
-- it was decided (first_job_id_at()), so a range of ids is a span of time, and forgetting a
-- span is dropping its partition (drop_jobs_partition()). `janus maintain` and the migration
-- call this ahead of need; the default partition, jobs_default, takes a job whose partition
-- does not exist yet, so a missing one never refuses a job.
--
-- The partition is made as a table of its own and attached, not created PARTITION OF: ATTACH
-- needs only a SHARE UPDATE EXCLUSIVE lock on jobs, which no admission, claim or read waits
-- for. It locks jobs_default (ACCESS EXCLUSIVE) while it moves the rows of the new range out
-- of it and checks that none is left: only jobs of random id (stored before migration 0013)
-- and jobs decided while no partition took them are there, so both are short. Its indexes,
-- constraints and foreign key are jobs's, made by the attach on the still small table.
--
-- The live definition is janus/db/sql/add_jobs_partition.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION add_jobs_partition(p_from timestamptz, p_to timestamptz)
RETURNS text LANGUAGE plpgsql
AS $fn$
DECLARE
    lower_id   uuid := first_job_id_at(p_from);
    upper_id   uuid := first_job_id_at(p_to);
    partition  text := 'jobs_' || to_char(p_from AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI');
    definition text;
BEGIN
    IF p_to <= p_from THEN
        RAISE EXCEPTION 'a partition of jobs must end after it starts: % to %', p_from, p_to;
    END IF;
    -- The attach adds the foreign key to users, which locks users: first, in the order
    -- requests take them (users, then jobs), so that none waits for this while it waits.
    LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;
    LOCK TABLE jobs_default IN ACCESS EXCLUSIVE MODE;
    -- With the autovacuum settings jobs had before it was partitioned (migration 0006): a
    -- partitioned table holds none of its own.
    EXECUTE format('CREATE TABLE %I (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'
                   ' WITH (autovacuum_vacuum_scale_factor = 0.01,'
                   '       autovacuum_analyze_scale_factor = 0.02,'
                   '       autovacuum_vacuum_insert_scale_factor = 0.05,'
                   '       autovacuum_vacuum_cost_delay = 0)', partition);
    EXECUTE format('WITH moved AS (DELETE FROM jobs_default WHERE job_id >= $1 AND job_id < $2'
                   ' RETURNING *) INSERT INTO %I SELECT * FROM moved', partition)
        USING lower_id, upper_id;
    -- jobs's indexes, named after them (jobs_queued: jobs_20261207_1400_queued), so that a
    -- plan reads as the index it walks; the attach takes them as jobs's, and makes the rest.
    FOR definition IN
        SELECT format('CREATE INDEX %I ON %I', partition || substr(c.relname, 5), partition)
               || substring(pg_get_indexdef(i.indexrelid) FROM ' USING .*$')
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'jobs'::regclass AND NOT i.indisprimary
    LOOP
        EXECUTE definition;
    END LOOP;
    EXECUTE format('ALTER TABLE jobs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   partition, lower_id, upper_id);
    -- As on jobs (migration 0016): the planner's share of jobs of random id in the partition.
    EXECUTE format('CREATE STATISTICS %I ON job_id_version(job_id) FROM %I',
                   partition || '_job_id_version', partition);
    RETURN partition;
END
$fn$;
