-- The bare twin's schema (bench/twin/): one token bucket per key, the jobs it decided, and the
-- two functions the twin's app calls, each in one statement on an autocommit connection.
--
-- It is the least an exact token bucket in Postgres needs: lock the bucket row, refill it to
-- the database clock, debit the job's cost if it fits, store the job. No users, configs,
-- priorities, tenants, idempotency keys, queue state or budgets; no index beyond the primary
-- keys, no foreign key. Everything lives in the schema `twin`, so loading it (again: every
-- statement is idempotent) never touches Janus's own tables.

CREATE SCHEMA IF NOT EXISTS twin;

-- tokens is the level as of refilled_at; a decision brings it to its own clock first.
CREATE TABLE IF NOT EXISTS twin.buckets (
    key               text PRIMARY KEY,
    capacity          numeric NOT NULL CHECK (capacity >= 0),
    refill_per_second numeric NOT NULL CHECK (refill_per_second >= 0),
    tokens            numeric NOT NULL CHECK (tokens >= 0 AND tokens <= capacity),
    refilled_at       timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS twin.jobs (
    job_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bucket     text NOT NULL,
    -- json, not jsonb: stored exactly as sent, with no conversion.
    body       json NOT NULL,
    status     text NOT NULL CHECK (status IN ('Accepted', 'Rejected')),
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- admit(): decide one job against one bucket and store it.
--
-- A job costs the sum of its `dependencies` values ({name: cost}), or 1 when it names none.
-- The clock is read once the row is locked: no writer after us can have refilled the bucket
-- past it, so refilled_at never moves backwards. A rejection writes no bucket row: the stored
-- level, refilled from its own refilled_at next time, is just as exact.
CREATE OR REPLACE FUNCTION twin.admit(
    p_bucket text,
    p_job    json,
    OUT job_id uuid,
    OUT status text,
    OUT reason text
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    bucket     twin.buckets;
    job_cost   numeric;
    available  numeric;
    decided_at timestamptz;
BEGIN
    SELECT * INTO bucket FROM twin.buckets b WHERE b.key = p_bucket FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown bucket %', p_bucket;
    END IF;

    SELECT coalesce(sum(d.value::numeric), 1)
      INTO job_cost
      FROM json_each_text(CASE WHEN json_typeof(p_job -> 'dependencies') = 'object'
                               THEN p_job -> 'dependencies' END) AS d;

    decided_at := clock_timestamp();
    available := least(bucket.capacity,
                   bucket.tokens + bucket.refill_per_second
                                   * greatest(0, extract(epoch FROM decided_at - bucket.refilled_at)));
    IF job_cost <= available THEN
        UPDATE twin.buckets b SET tokens = available - job_cost, refilled_at = decided_at
         WHERE b.key = p_bucket;
        status := 'Accepted';
        reason := '';
    ELSE
        status := 'Rejected';
        reason := 'rate limit exceeded';
    END IF;

    INSERT INTO twin.jobs AS j (bucket, body, status, reason)
    VALUES (p_bucket, p_job, status, reason)
    RETURNING j.job_id INTO job_id;
END
$fn$;

-- admit_batch(): admit() for every job of a JSON array, in array order, in one call: one lock,
-- one refill, a debit per job that fits (a later, cheaper job may fit where an earlier one did
-- not), one bucket update and one insert of every job. Rows come back in array order.
CREATE OR REPLACE FUNCTION twin.admit_batch(p_bucket text, p_jobs json)
RETURNS TABLE (job_id uuid, status text, reason text)
LANGUAGE plpgsql
AS $fn$
DECLARE
    bucket     twin.buckets;
    bodies     json[];
    costs      numeric[];
    ids        uuid[];
    statuses   text[];
    reasons    text[];
    available  numeric;
    debited    boolean := false;
    decided_at timestamptz;
    i          integer;
BEGIN
    SELECT * INTO bucket FROM twin.buckets b WHERE b.key = p_bucket FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown bucket %', p_bucket;
    END IF;

    SELECT coalesce(array_agg(e.body ORDER BY e.n), '{}'),
           coalesce(array_agg(c.job_cost ORDER BY e.n), '{}'),
           coalesce(array_agg(gen_random_uuid() ORDER BY e.n), '{}')
      INTO bodies, costs, ids
      FROM json_array_elements(p_jobs) WITH ORDINALITY AS e(body, n)
     CROSS JOIN LATERAL (
           SELECT coalesce(sum(d.value::numeric), 1) AS job_cost
             FROM json_each_text(CASE WHEN json_typeof(e.body -> 'dependencies') = 'object'
                                      THEN e.body -> 'dependencies' END) AS d) c;

    decided_at := clock_timestamp();
    available := least(bucket.capacity,
                   bucket.tokens + bucket.refill_per_second
                                   * greatest(0, extract(epoch FROM decided_at - bucket.refilled_at)));
    statuses := array_fill(NULL::text, ARRAY[cardinality(costs)]);
    reasons := array_fill(NULL::text, ARRAY[cardinality(costs)]);
    FOR i IN 1 .. cardinality(costs) LOOP
        IF costs[i] <= available THEN
            available := available - costs[i];
            debited := true;
            statuses[i] := 'Accepted';
            reasons[i] := '';
        ELSE
            statuses[i] := 'Rejected';
            reasons[i] := 'rate limit exceeded';
        END IF;
    END LOOP;

    IF debited THEN
        UPDATE twin.buckets b SET tokens = available, refilled_at = decided_at
         WHERE b.key = p_bucket;
    END IF;

    INSERT INTO twin.jobs (job_id, bucket, body, status, reason)
    SELECT ids[n], p_bucket, bodies[n], statuses[n], reasons[n]
      FROM generate_subscripts(ids, 1) AS n;

    RETURN QUERY
        SELECT ids[n], statuses[n], reasons[n]
          FROM generate_subscripts(ids, 1) AS n
         ORDER BY n;
END
$fn$;
