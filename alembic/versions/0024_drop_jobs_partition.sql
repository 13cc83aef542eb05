-- drop_jobs_partition(): forget a partition of jobs whole, by detaching and dropping it,
-- unless it still holds a job that is queued, waiting or running; returns how many of those
-- it holds, by state (at most 10,000 counted of each): no row means it was dropped.
--
-- `janus maintain` calls it for each partition whose span ended longer ago than the
-- retention. A DELETE of the same jobs would write each of them to the WAL and leave vacuum
-- behind it; a drop frees the files at once. It takes the ACCESS EXCLUSIVE locks of users and
-- jobs first (a DETACH without CONCURRENTLY needs jobs's, and CONCURRENTLY is refused while
-- jobs has a default partition; dropping the partition's foreign key needs users's), so no
-- retry or claim changes a job's state between the count and the drop; the caller sets a
-- short lock_timeout, since every request waits behind these locks.
--
-- The live definition is janus/db/sql/drop_jobs_partition.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION drop_jobs_partition(p_partition text)
RETURNS TABLE (state text, jobs bigint) LANGUAGE plpgsql
AS $fn$
DECLARE
    queued  bigint;
    waiting bigint;
    running bigint;
BEGIN
    IF p_partition = 'jobs_default' THEN
        RAISE EXCEPTION 'jobs_default takes the jobs no partition takes: it is never dropped';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_inherits
                    WHERE inhparent = 'jobs'::regclass
                      AND inhrelid = to_regclass(quote_ident(p_partition))) THEN
        RAISE EXCEPTION 'not a partition of jobs: %', p_partition;
    END IF;
    -- A detach drops the partition's foreign key to users, which locks users whole: users
    -- first, in the order requests take them, so that none waits for this while it waits.
    LOCK TABLE users, jobs IN ACCESS EXCLUSIVE MODE;
    -- Each count reads its state's partial index (jobs_queued, jobs_waiting, jobs_leased).
    EXECUTE format('SELECT (SELECT count(*) FROM (SELECT FROM ONLY %1$I'
                   '          WHERE state = ''queued'' LIMIT 10000) AS j),'
                   '       (SELECT count(*) FROM (SELECT FROM ONLY %1$I'
                   '          WHERE state = ''waiting'' LIMIT 10000) AS j),'
                   '       (SELECT count(*) FROM (SELECT FROM ONLY %1$I'
                   '          WHERE state = ''running'' LIMIT 10000) AS j)', p_partition)
        INTO queued, waiting, running;
    IF queued + waiting + running > 0 THEN
        RETURN QUERY SELECT held.state, held.jobs
                       FROM (VALUES ('queued', queued), ('waiting', waiting),
                                    ('running', running)) AS held (state, jobs)
                      WHERE held.jobs > 0;
        RETURN;
    END IF;
    EXECUTE format('ALTER TABLE jobs DETACH PARTITION %I', p_partition);
    EXECUTE format('DROP TABLE %I', p_partition);
END
$fn$;
