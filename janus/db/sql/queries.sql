-- The named statements of Janus, bound to constants of janus/db/queries.py (admit_jobs is
-- queries.ADMIT_JOBS). Placeholders are %(name)s only.
--
-- Layout (procrastinate's):
--     -- query_name --
--     -- what it does and why: comment lines right below the name, not sent to Postgres
--     the statement, up to the next name line

-- admit_requests --
-- The whole decision in one statement: see admit_requests.sql. One request, or a group of one
-- user's single jobs and partial batches decided in this order (janus/grouping.py), each
-- answered as it would have been alone: one row per job, request by request, `budgets` (the
-- buckets as its decisions left them, for the RateLimit headers) on each request's first row,
-- and one row with `error` (its SQLSTATE) for a request refused. Run in READ COMMITTED for
-- single jobs and partial batches (bucket row locks serialise them) and in SERIALIZABLE for
-- an atomic batch, always alone, as the contract asks, after lock_buckets_for_atomic (so that
-- they queue rather than fail to serialise). `quote`: decide one request and store nothing (a
-- quote; its transaction is rolled back). reason_code and shadow_reason_code are the machine
-- codes of reason and shadow_reason. The per-job arrays go in binary (%(name)b): psycopg then
-- writes each element as it is, where the text form escapes and quotes every one (ten times
-- the client's CPU for a batch). when_limited and max_wait_seconds (per request) and run_at
-- (per job) are NULL for "the config's"; state is an accepted job's (queued, or waiting with
-- its estimated_start).
SELECT request, job_id, status, reason, retry_after, replayed, budgets, shadow_status,
       shadow_reason, fits_at, reason_code, shadow_reason_code, error, state, estimated_start
  FROM admit_requests(%(user_id)s, %(sources)s::text[], %(batch_names)s::text[],
                      %(job_counts)s::integer[], %(idempotency_keys)s::text[],
                      %(request_hashes)s::bytea[], %(tenants)b::text[],
                      %(priorities)b::smallint[], %(dependencies)b::jsonb[],
                      %(payloads)b::json[], %(atomic)s, %(quote)s, %(when_limited)s::text[],
                      %(max_wait_seconds)s::integer[], %(run_at)s::timestamptz[])

-- lock_buckets_for_atomic --
-- Sent before an atomic batch's SERIALIZABLE transaction, and committed on its own
-- (janus/db/jobs.py, janus/db/transactions.py): a session-level advisory lock on each bucket
-- the batch names, (user, dependency). Concurrent atomic batches on a bucket queue here,
-- before BEGIN, so each takes its snapshot after the batch before it has committed, and none
-- fails to serialise against another. Taken in key order (the sort runs below the aggregate,
-- which calls the function row by row), so two batches cannot deadlock on them. No cycle
-- with row locks either: nothing that holds a row lock waits for these (single jobs and
-- partial batches never take them), and a batch takes them holding no row lock. A wait obeys
-- lock_timeout, as a row lock's does. The prefix keeps these keys apart from Janus's other
-- advisory locks (an idempotency key's is user || '/' || key). Released by
-- release_advisory_locks.
SELECT count(pg_advisory_lock(s.key))
  FROM (SELECT DISTINCT hashtextextended('janus token_buckets ' || %(user_id)s::text || '/'
                                         || d.name, 0) AS key
          FROM unnest(%(dependency_names)s::text[]) AS d(name)
         ORDER BY key) s

-- release_advisory_locks --
-- After a transaction that lock_buckets_for_atomic's locks preceded, whatever its outcome: a
-- session-level advisory lock outlives COMMIT and ROLLBACK, and a pooled connection must not
-- keep one for its next request.
SELECT pg_advisory_unlock_all()

-- admit_job --
-- admit_requests for one request of one job, with its values sent as scalars and made into
-- the arrays here: psycopg dumps a scalar with a fraction of the work of a one-element array.
-- Same columns, same function.
SELECT request, job_id, status, reason, retry_after, replayed, budgets, shadow_status,
       shadow_reason, fits_at, reason_code, shadow_reason_code, error, state, estimated_start
  FROM admit_requests(%(user_id)s, ARRAY[%(source)s::text], ARRAY[%(batch_name)s::text],
                      '{1}', ARRAY[%(idempotency_key)s::text], ARRAY[%(request_hash)s::bytea],
                      ARRAY[%(tenant)s::text], ARRAY[%(priority)s::smallint],
                      ARRAY[%(dependencies)s::jsonb], ARRAY[%(payload)s::json], %(atomic)s,
                      %(quote)s, ARRAY[%(when_limited)s::text],
                      ARRAY[%(max_wait_seconds)s::integer], ARRAY[%(run_at)s::timestamptz])

-- hand_out_jobs --
-- See hand_out_jobs.sql: the jobs handed out, then a row with no job (job_id NULL) counting
-- the leases taken back and the waiting jobs expired meanwhile. The payload is read as its
-- text, exactly as the client sent it: the resource writes it into the answer without
-- parsing it again.
SELECT job_id, batch_name, tenant_id, priority, dependencies, payload::text AS payload,
       attempt, lease_token, lease_expires_at, leases_expired, jobs_expired
  FROM hand_out_jobs(%(user_id)s, %(limit)s, %(lease_seconds)s, %(tenant_id)s::text,
                     %(batch_name)s::text, %(dependencies)s::text[])

-- heartbeat_job --
-- See heartbeat_job.sql: the lease is extended only under its current token.
SELECT outcome, lease_expires_at
  FROM heartbeat_job(%(user_id)s, %(job_id)s, %(lease_token)s, %(lease_seconds)s)

-- cancel_jobs --
-- See cancel_jobs.sql: cancel queued or waiting jobs, giving back what admission took for
-- those never handed out.
SELECT job_id, outcome, state FROM cancel_jobs(%(user_id)s, %(job_ids)s::uuid[])

-- retry_jobs --
-- See retry_jobs.sql: failed, expired or cancelled jobs wait again, due at once, and pay when
-- they are handed out.
SELECT job_id, outcome, state FROM retry_jobs(%(user_id)s, %(job_ids)s::uuid[])

-- job_ids_in_states --
-- `janus jobs cancel` and `janus jobs retry` by filter: the next %(chunk)s jobs of a user in
-- one of %(states)s (queued or waiting to cancel; failed, expired or cancelled to retry)
-- after job id %(after)s (NULL: from the first), in job_id order through jobs_in_state,
-- matching the filters (NULL: any) as GET /dashboard/jobs reads them; since (inclusive) and
-- until (exclusive) are moments of decision, created_at for a job of random id (before 0013).
SELECT job_id
  FROM jobs
 WHERE user_id = %(user_id)s AND state = ANY (%(states)s::text[])
   AND (%(after)s::uuid IS NULL OR job_id > %(after)s::uuid)
   AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
   AND (%(batch_name)s::text IS NULL OR batch_name = %(batch_name)s::text)
   AND (%(source)s::text IS NULL OR source = %(source)s::text)
   AND (%(since)s::timestamptz IS NULL
        OR CASE WHEN job_id_version(job_id) = 7 THEN job_decided_at(job_id) ELSE created_at END
           >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL
        OR CASE WHEN job_id_version(job_id) = 7 THEN job_decided_at(job_id) ELSE created_at END
           < %(until)s::timestamptz)
 ORDER BY job_id
 LIMIT %(chunk)s

-- finish_jobs --
-- See finish_jobs.sql: complete or fail one or many jobs, settling their real costs, in one
-- transaction; one row per item, in request order.
SELECT job_id, outcome, state, attempt
  FROM finish_jobs(%(user_id)s, %(job_ids)s::uuid[], %(lease_tokens)s::uuid[],
                   %(failed)s::boolean[], %(results)s::json[], %(errors)s::text[],
                   %(retry)s::boolean[], %(actual_costs)s::jsonb[],
                   %(upstream_throttled)s::jsonb[], %(retry_after_seconds)s::integer[])

-- job_history --
-- A page of a user's jobs, newest first: the dashboard's GET /dashboard/jobs and `janus jobs`.
-- A waiting job's estimated start is the one admission told when it put the job in line, or
-- else its run_at (a retry's backoff, a job submitted with run_at); none once a claim put
-- it in line.
-- This statement reads the jobs with time-ordered ids (every job since migration 0013);
-- job_history_of_random_ids, the ones stored before, which come after them all (janus/db/
-- history.py runs it when this page is short and this read was not cut short).
--
-- Newest first is the primary key (user_id, job_id) read backwards: a job's id starts with
-- the moment admission decided it (first_job_id_at.sql), so the keyset is job_id alone. The
-- page starts strictly below before_job_id, the last job of the previous page or the last
-- job the previous read examined (keyset pagination: jobs stored meanwhile neither repeat
-- nor hide older ones); when that was a job of random id, this page is empty. Each filter is
-- NULL for "any"; `since` (inclusive) and `until` (exclusive) are moments of decision, so
-- ranges of the key. janus/db/history.py always gives an `until`, at most a day past now (a
-- clock stepped back hides no job), which keeps the walk below the random ids that sort
-- above every time-ordered one; `job_id_version(job_id) = 7` leaves out those among them.
--
-- Bounded work whatever the filters: `examined` reads at most %(examine)s jobs (NULL: no
-- bound, for the operator's CLI) through the one index that serves the driving filter
-- (janus/db/history.py picks it: batch, else tenant, else state, else status=Rejected, else
-- none), the jobs of that index in this very order (migration 0016: jobs_of_batch,
-- jobs_of_tenant, jobs_in_state, jobs_rejected; jobs_pkey without one, and for since/until),
-- numbered as they are read. The other filters (source, status=Accepted, and every filter
-- given beside the driving one) are checked on the jobs read (`matches`). The rows come back
-- in order, up to %(limit)s: the jobs that match, and the last job read, matching or not
-- (`read_last`), when the read gets that far before the page is full: the job the bound let
-- the read reach (number_read = %(examine)s), below which the next page starts, or the last
-- of a window of time with fewer, which tells how many that window's read took of the
-- page's bound. Nothing past the page's last row is read but the one job that tells it is
-- not the last: a page whose first jobs match reads about as many as it shows.
--
-- Sent unprepared (janus/db/history.py), so every execution is planned for its own values:
-- the filters left NULL fold away, the plan reads the driving filter's index, in order
-- (walk_in_order), and `since`, `until` and before_job_id, folded to ranges of job_id, leave
-- out the partitions of jobs outside them. A generic plan could not choose by filter. A page
-- without `since` would be planned in every partition, so janus/db/history.py reads it as
-- windows of time, newest first, each `since` and `until` of its own.
SELECT *
  FROM (SELECT (%(status)s::text IS NULL OR status = %(status)s::text)
               AND (%(state)s::text IS NULL OR state = %(state)s::text)
               AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
               AND (%(batch_name)s::text IS NULL OR batch_name = %(batch_name)s::text)
               AND (%(source)s::text IS NULL OR source = %(source)s::text) AS matches,
               lead(number_read) OVER (ORDER BY job_id DESC) IS NULL AS read_last,
               examined.*
          FROM (SELECT row_number() OVER (ORDER BY job_id DESC) AS number_read,
                       job_id, created_at, source, batch_name, tenant_id, priority, status,
                       reason, reason_code, retry_after, state, attempts, lease_expires_at,
                       finished_at,
                       CASE WHEN state = 'waiting' THEN coalesce(estimated_start, run_at) END
                       AS estimated_start
                  FROM jobs
                 WHERE user_id = %(user_id)s
                   AND job_id_version(job_id) = 7
                   AND (%(drive_state)s::text IS NULL OR state = %(drive_state)s::text)
                   AND (%(drive_tenant_id)s::text IS NULL
                        OR tenant_id = %(drive_tenant_id)s::text)
                   AND (%(drive_batch_name)s::text IS NULL
                        OR batch_name = %(drive_batch_name)s::text)
                   AND (%(drive_status)s::text IS NULL OR status = %(drive_status)s::text)
                   AND (%(since)s::timestamptz IS NULL
                        OR job_id >= first_job_id_at(%(since)s::timestamptz))
                   AND (%(until)s::timestamptz IS NULL
                        OR job_id < first_job_id_at(%(until)s::timestamptz))
                   AND (%(before_job_id)s::uuid IS NULL
                        OR (job_id_version(%(before_job_id)s::uuid) = 7
                            AND job_id < %(before_job_id)s::uuid))
                 ORDER BY job_id DESC
                 LIMIT %(examine)s) AS examined) AS checked
 WHERE matches OR read_last
 ORDER BY job_id DESC
 LIMIT %(limit)s

-- walk_in_order --
-- Before job_history and job_history_of_random_ids, in their transaction: no plan that
-- sorts or bitmap-scans the user's jobs. Either would read every job matching the driving
-- filter before it could return the first, which is the unbounded read the bound of `examined`
-- is there to prevent; Postgres picks one when it believes those jobs few (a partial index
-- of queued jobs, the jobs of random id). The ordered walk of the driving filter's index is
-- always there to take instead. Sorting the jobs read (at most the bound) still happens.
SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)

-- job_history_of_random_ids --
-- The rest of a page of job_history: the user's jobs stored before migration 0013, whose ids
-- are random (version 4), after every job of job_history and newest first among themselves,
-- by (created_at, job_id), as the history was ordered before. Same parameters and the same
-- rows back, with a bound of its own on the jobs read; a before_job_id of a time-ordered job
-- puts the page at the start of these jobs, one of random id below (before_created_at,
-- before_job_id); `since` and `until` compare created_at, the one moment they have. Read
-- through the partial index jobs_with_random_ids, which holds these jobs only (no job stored
-- since 0013 is entered in it), with every filter checked on the jobs it yields.
SELECT *
  FROM (SELECT (%(status)s::text IS NULL OR status = %(status)s::text)
               AND (%(state)s::text IS NULL OR state = %(state)s::text)
               AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
               AND (%(batch_name)s::text IS NULL OR batch_name = %(batch_name)s::text)
               AND (%(source)s::text IS NULL OR source = %(source)s::text) AS matches,
               examined.*
          FROM (SELECT row_number() OVER (ORDER BY created_at DESC, job_id DESC)
                       AS number_read,
                       job_id, created_at, source, batch_name, tenant_id, priority, status,
                       reason, reason_code, retry_after, state, attempts, lease_expires_at,
                       finished_at,
                       CASE WHEN state = 'waiting' THEN coalesce(estimated_start, run_at) END
                       AS estimated_start
                  FROM jobs
                 WHERE user_id = %(user_id)s
                   AND job_id_version(job_id) <> 7
                   AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
                   AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
                   AND (%(before_job_id)s::uuid IS NULL
                        OR job_id_version(%(before_job_id)s::uuid) = 7
                        OR (created_at, job_id)
                           < (%(before_created_at)s::timestamptz, %(before_job_id)s::uuid))
                 ORDER BY created_at DESC, job_id DESC
                 LIMIT %(examine)s) AS examined) AS checked
 WHERE matches OR number_read = %(examine)s
 ORDER BY created_at DESC, job_id DESC
 LIMIT %(limit)s

-- job_record --
-- One job with everything stored about it, by the primary key (user_id, job_id): another
-- user's job is not found. The JSON columns are read as their text, exactly as stored.
SELECT job_id, created_at, source, batch_name, tenant_id, priority, status, reason,
       reason_code, retry_after, state, attempts, lease_expires_at, finished_at,
       CASE WHEN state = 'waiting' THEN coalesce(estimated_start, run_at) END
       AS estimated_start,
       dependencies::text AS dependencies, payload::text AS payload, result::text AS result,
       error, actual_costs::text AS actual_costs, run_at, in_line_at, expires_at,
       config_version, shadow_status, shadow_reason, shadow_reason_code
  FROM jobs
 WHERE user_id = %(user_id)s AND job_id = %(job_id)s

-- activity_window --
-- GET /dashboard/activity, first of its two reads: its window of %(minutes)s minutes (UTC) by
-- the database's clock, up to the current minute, and the ids its jobs were given: from the
-- first id of the first minute to the first id after the last. job_activity gets them as
-- values, so that it is planned for the partitions of the window only (planning its read in
-- every partition of a week of hourly ones cost more than the read itself).
SELECT w.first_minute, w.last_minute,
       first_job_id_at(w.first_minute) AS from_id,
       first_job_id_at(w.last_minute + interval '1 minute') AS until_id
  FROM (SELECT date_trunc('minute', now(), 'UTC')
                   - make_interval(mins => %(minutes)s::integer - 1) AS first_minute,
               date_trunc('minute', now(), 'UTC') AS last_minute) w

-- job_activity --
-- GET /dashboard/activity, after activity_window: a user's jobs per minute (UTC) of the
-- window's minutes, from first_minute to last_minute, oldest first, every minute present: accepted,
-- and rejected by reason (a job of shadow mode was answered accepted, and is stored so). No
-- row at all when there is no such user (the key of users: this one user's row). A job counts
-- in the minute it was decided, the moment its id starts with (first_job_id_at.sql), as the
-- history's since/until read it. Jobs of random id were all stored before migration 0013,
-- long before the hour counted: they are not read.
--
-- Bounded work, however many jobs the user admits: `newest` reads at most %(max_jobs)s + 1
-- of the user's jobs of the window, newest first, a range of the user's key in jobs_pkey
-- (user_id, job_id) read backwards and stopped by the LIMIT, with one heap fetch per job for
-- its status and reason (an index holding them would cost every admission an entry: none is
-- added). MATERIALIZED, so the LIMIT applies to that read, before anything is counted. When
-- the extra job is read, the window held more jobs than may be counted: the count then
-- starts a microsecond (the clock's step) after that job was decided (`counted_since`), since
-- jobs of its very moment may be among those not read, while every job after it was read.
-- Minutes that ended by then are NULL, not counted rather than a wrong 0; the minute
-- counted_since falls in counts its jobs from counted_since on. A job's minute is found
-- among the first ids of the minutes (`minute_starts`, in order) by width_bucket(), a
-- comparison of ids: reading the moment out of each id would cost far more.
-- The minutes are the database clock's, as activity_window read it.
WITH clock AS NOT MATERIALIZED (
    SELECT %(first_minute)s::timestamptz AS first_minute,
           %(last_minute)s::timestamptz AS last_minute
),
newest AS MATERIALIZED (
    SELECT j.job_id, j.status, j.reason
      FROM jobs j
     WHERE j.user_id = %(user_id)s
       AND j.job_id >= %(from_id)s AND j.job_id < %(until_id)s
       AND job_id_version(j.job_id) = 7
     ORDER BY j.job_id DESC
     LIMIT %(max_jobs)s::integer + 1
),
cut AS (
    SELECT CASE WHEN count(*) > %(max_jobs)s::integer
                THEN job_decided_at((SELECT o.job_id FROM newest o ORDER BY o.job_id LIMIT 1))
                     + interval '1 microsecond'
           END AS counted_since
      FROM newest
),
minute_starts AS (
    SELECT array_agg(first_job_id_at(m.minute) ORDER BY m.minute) AS first_ids
      FROM clock c
     CROSS JOIN generate_series(c.first_minute, c.last_minute, interval '1 minute') AS m(minute)
),
counted AS (
    SELECT c.first_minute + make_interval(mins => width_bucket(n.job_id, s.first_ids) - 1)
               AS minute,
           n.status, n.reason, count(*) AS jobs
      FROM newest n, cut, clock c, minute_starts s
     WHERE cut.counted_since IS NULL OR n.job_id >= first_job_id_at(cut.counted_since)
     GROUP BY 1, 2, 3
)
SELECT m.minute,
       CASE WHEN cut.counted_since IS NULL OR m.minute + interval '1 minute' > cut.counted_since
            THEN coalesce(sum(k.jobs) FILTER (WHERE k.status = 'Accepted'), 0)::bigint
       END AS accepted,
       CASE WHEN cut.counted_since IS NULL OR m.minute + interval '1 minute' > cut.counted_since
            THEN coalesce(jsonb_object_agg(k.reason, k.jobs) FILTER (WHERE k.status = 'Rejected'),
                          '{}')
       END AS rejected,
       cut.counted_since
  FROM users u
 CROSS JOIN clock c
 CROSS JOIN cut
 CROSS JOIN generate_series(c.first_minute, c.last_minute, interval '1 minute') AS m(minute)
  LEFT JOIN counted k ON k.minute = m.minute
 WHERE u.user_id = %(user_id)s
 GROUP BY m.minute, cut.counted_since
 ORDER BY m.minute

-- health_check --
SELECT 1

-- create_user --
-- A new user has no job, and every job it will have is decided from now on: its claims, and
-- the queue view's ended jobs, need not look below the ids of an hour ago
-- (mark_unfinished_from says why an hour).
INSERT INTO users (name, jobs_unfinished_from, jobs_ended_from, jobs_unfinished_low)
SELECT %(name)s, h.id, h.id, h.id
  FROM (SELECT first_job_id_at(now() - interval '1 hour') AS id) h
RETURNING user_id

-- find_user_by_name --
-- Names are not unique; the oldest user of a name is the one the CLI means (`janus demo`).
SELECT user_id FROM users WHERE name = %(name)s ORDER BY created_at, user_id LIMIT 1

-- list_users --
-- Operators' listing: the whole table, by design (not a request's statement).
SELECT u.user_id, u.name, u.created_at, c.version AS config_version, u.paused
  FROM users u
  LEFT JOIN configs c ON c.user_id = u.user_id AND c.is_active
 WHERE %(name_contains)s::text IS NULL
    OR strpos(lower(u.name), lower(%(name_contains)s::text)) > 0
 ORDER BY u.created_at, u.user_id

-- user_holdings --
-- No row: unknown user.
SELECT (SELECT count(*) FROM jobs j WHERE j.user_id = u.user_id),
       (SELECT count(*) FROM configs c WHERE c.user_id = u.user_id),
       (SELECT count(*) FROM token_buckets b WHERE b.user_id = u.user_id)
  FROM users u
 WHERE u.user_id = %(user_id)s

-- delete_user --
-- Every table holding the user's rows references users ON DELETE CASCADE.
DELETE FROM users WHERE user_id = %(user_id)s

-- lock_user_name --
-- Held until the transaction ends, so two concurrent find-or-creates of one name make one user.
SELECT pg_advisory_xact_lock(hashtextextended('janus users.name ' || %(name)s, 0))

-- activate_config --
-- See activate_config.sql: new version, activation and buckets in one call.
SELECT activate_config(%(user_id)s, %(paused)s, %(min_priority)s::smallint,
                       %(priority_reserve)s::numeric, %(unknown_dependencies)s,
                       %(dependencies)s::json, %(max_attempts)s, %(retention_days)s,
                       %(mode)s, %(tenant_share)s::numeric, %(tenant_overrides)s::jsonb,
                       %(retry_backoff_base_seconds)s::numeric,
                       %(retry_backoff_max_seconds)s::numeric, %(when_limited)s,
                       %(max_wait_seconds)s)

-- active_config --
-- One row when the user exists (no row: unknown user): its active version, NULL without one.
-- The config itself is read with config_versions (janus/db/configs.py).
SELECT c.version
  FROM users u
  LEFT JOIN configs c ON c.user_id = u.user_id AND c.is_active
 WHERE u.user_id = %(user_id)s

-- set_paused --
-- See set_paused.sql: the state is the user's, kept across config versions; only a change is
-- recorded. Returns when the current state began (NULL: never paused).
SELECT set_paused(%(user_id)s, %(paused)s)

-- activate_version --
-- See activate_version.sql: a stored version becomes the active one again, buckets included.
SELECT activate_version(%(user_id)s, %(version)s)

-- pause_changes --
-- A user's pause changes newest first, a keyset page below change_id `before` (the primary
-- key (user_id, change_id)).
SELECT change_id, paused, changed_at, config_version
  FROM pause_changes
 WHERE user_id = %(user_id)s
   AND (%(before)s::bigint IS NULL OR change_id < %(before)s::bigint)
 ORDER BY change_id DESC
 LIMIT %(limit)s

-- bucket_quotas --
-- A user's buckets as of now, from the view token_buckets_now (GET /dashboard/quotas, `janus
-- quotas`), at the precision of janus/quotas.py: tokens cut to 6 decimals (never shown
-- higher than they are), rates rounded to 9, full_in_seconds rounded up to milliseconds
-- (never shown sooner), each without trailing zeros. full_in_seconds is computed from the
-- view's own row, so it agrees with its tokens_now; at the effective rate of now, as
-- Retry-After is, so an adaptive bucket recovering its rate may be full sooner. NULL: it
-- never refills.
SELECT dependency,
       capacity,
       refill_per_second,
       trim_scale(round(effective_refill_per_second, 9)) AS effective_refill_per_second,
       trim_scale(trunc(tokens_now, 6)) AS tokens,
       CASE WHEN tokens_now >= capacity THEN 0
            WHEN effective_refill_per_second = 0 THEN NULL
            ELSE trim_scale(ceil((capacity - tokens_now) * 1000 / effective_refill_per_second)
                            / 1000)
       END AS full_in_seconds,
       adaptive
  FROM token_buckets_now
 WHERE user_id = %(user_id)s
 ORDER BY dependency

-- read_snapshot --
-- The first statement of a transaction of reads that must agree: GET /dashboard/quotas and
-- `janus quotas` (quota_mode, bucket_quotas, tenant_quotas: the mode, the buckets and the
-- tenant buckets of one config version, even when an activation commits between them), GET
-- /dashboard/queue (unfinished_bounds, queue_states, queue_dependencies: the counts of one
-- moment, within the bounds of that moment). Read only: it
-- takes no lock and cannot fail to serialise.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY

-- quota_mode --
-- Whether the user exists (no row: unknown user), and the mode of its active config (NULL:
-- none): the first of the three reads of GET /dashboard/quotas and `janus quotas`.
SELECT c.mode
  FROM users u
  LEFT JOIN configs c ON c.user_id = u.user_id AND c.is_active
 WHERE u.user_id = %(user_id)s

-- tenant_quotas --
-- A user's tenant buckets as of now, from the view tenant_buckets_now, closest to their limit
-- first: the smallest part of their capacity left, then by dependency and tenant, at most
-- %(limit)s (the dashboard shows the tenants near their limit, not every tenant). A tenant
-- without a row is full, and not listed. The precision is bucket_quotas': tokens cut to 6
-- decimals, full_in_seconds rounded up to milliseconds, no trailing zeros. A tenant bucket
-- refills at its share of the configured refill, never adaptively, so full_in_seconds is
-- exact to the millisecond. capacity and refill_per_second are stored (share x the
-- dependency's); share is the active config's for the tenant, as admit_jobs() reads it. Every
-- row of the user is read and sorted (the order is computed, not indexed), through the key
-- (user_id, dependency, tenant_id): one user's rows only.
SELECT t.dependency,
       t.tenant_id,
       trim_scale(tenant_share_of(c.tenant_overrides, c.tenant_share, t.tenant_id)) AS share,
       trim_scale(t.capacity) AS capacity,
       trim_scale(t.refill_per_second) AS refill_per_second,
       trim_scale(trunc(t.tokens_now, 6)) AS tokens,
       CASE WHEN t.tokens_now >= t.capacity THEN 0
            WHEN t.refill_per_second = 0 THEN NULL
            ELSE trim_scale(ceil((t.capacity - t.tokens_now) * 1000 / t.refill_per_second)
                            / 1000)
       END AS full_in_seconds
  FROM tenant_buckets_now t
  JOIN configs c ON c.user_id = t.user_id AND c.is_active
 WHERE t.user_id = %(user_id)s
 ORDER BY t.tokens_now / t.capacity, t.dependency, t.tenant_id
 LIMIT %(limit)s

-- without_jit --
-- Right after read_snapshot in GET /dashboard/queue's transaction, for its two reads only.
-- The planner takes jsonb_each() to yield 100 rows (the default of a set-returning function)
-- where a job names one to a few dependencies, so it prices queue_dependencies above
-- jit_above_cost and compiles it: 50 ms spent to save nothing on a read of at most 30,000
-- jobs (measured with 100,000 waiting jobs: 150 ms with JIT, 80 ms without).
SET LOCAL jit = off

-- unfinished_bounds --
-- GET /dashboard/queue, first of its reads (after read_snapshot and without_jit): the ids
-- between which every job of the user queued, waiting or running is, as hand_out_jobs()
-- reads them: from its jobs_unfinished_from (janus maintain, retry_jobs()) to
-- unfinished_until() of now. No row: unknown user. queue_states and queue_dependencies get
-- them as values, so that each of their reads of unfinished jobs is planned for the one or
-- two partitions of now, not every partition of the retention (planning a read of a user's
-- jobs costs about 0.3 ms per partition: with a week of hourly ones, the view took 800 ms).
-- And its ended jobs from jobs_ended_from, below which none finished within a day.
SELECT u.jobs_unfinished_from AS unfinished_from,
       unfinished_until(u.jobs_unfinished_from, now()) AS unfinished_until,
       u.jobs_ended_from AS ended_from,
       unfinished_until(u.jobs_ended_from, now()) AS ended_until
  FROM users u
 WHERE u.user_id = %(user_id)s

-- queue_states --
-- GET /dashboard/queue, second of its reads (after unfinished_bounds): one row, none when
-- there is no such user (the key of users). Each count reads one user's entries of an index
-- and nothing else:
-- - waiting, queued, running: every such job, counted in the partial indexes jobs_waiting,
--   jobs_queued and jobs_leased, or jobs_in_state (user_id, state, job_id) (index-only: their
--   entries are the jobs of that state), so exact at any size (about 10 ms per 100,000 jobs).
--   Of the partitions between unfinished_bounds' ids only, where all of them are.
-- - completed, failed, cancelled, expired: the jobs that finished since now() -
--   %(ended_window_s)s seconds, newest first through jobs_done (user_id, finished_at), at
--   most %(max_jobs)s of
--   them, each with one heap fetch for its state (not in the index). MATERIALIZED, so the
--   LIMIT applies to that read. When one more finished in the window, `ended_since` is a
--   microsecond (the clock's step) after that extra job finished, as job_activity's
--   counted_since is, and only the jobs since are counted.
-- - oldest_waiting_seconds, oldest_queued_seconds: the age of the state's oldest job, found
--   as the first of its time-ordered ids in jobs_in_state (user_id, state, job_id), or the
--   first by created_at of the jobs of random id (before migration 0013) in
--   jobs_with_random_ids; NULL when the state has no job. Rounded to milliseconds. Between
--   unfinished_bounds' ids too (they leave no bound while a job of random id is unfinished).
-- The ended jobs are read from unfinished_bounds' ended_from on: a job that finished within
-- the window may have been decided at any time before, but not below that, which lags a day
-- or two behind (mark_unfinished_from says why).
WITH ended AS MATERIALIZED (
    SELECT j.state, j.finished_at
      FROM jobs j
     WHERE j.user_id = %(user_id)s
       AND j.state IN ('completed', 'failed', 'cancelled', 'expired')
       AND j.finished_at >= now() - make_interval(secs => %(ended_window_s)s)
       AND j.job_id >= %(ended_from)s AND j.job_id < %(ended_until)s
     ORDER BY j.finished_at DESC
     LIMIT %(max_jobs)s::integer + 1
),
cut AS (
    SELECT CASE WHEN count(*) > %(max_jobs)s::integer
                THEN min(e.finished_at) + interval '1 microsecond'
                ELSE now() - make_interval(secs => %(ended_window_s)s)
           END AS ended_since
      FROM ended e
),
counted AS (
    SELECT count(*) FILTER (WHERE e.state = 'completed') AS completed,
           count(*) FILTER (WHERE e.state = 'failed') AS failed,
           count(*) FILTER (WHERE e.state = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE e.state = 'expired') AS expired
      FROM ended e, cut
     WHERE e.finished_at >= cut.ended_since
),
oldest AS (
    SELECT s.state,
           trim_scale(round(seconds_elapsed(min(first.created_at), now()), 3)) AS age_seconds
      FROM (VALUES ('waiting'), ('queued')) AS s(state)
     CROSS JOIN LATERAL (
           (SELECT j.created_at
              FROM jobs j
             WHERE j.user_id = %(user_id)s AND j.state = s.state
               AND job_id_version(j.job_id) = 7
               AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s
             ORDER BY j.job_id
             LIMIT 1)
           UNION ALL
           (SELECT j.created_at
              FROM jobs j
             WHERE j.user_id = %(user_id)s AND j.state = s.state
               AND job_id_version(j.job_id) <> 7
               AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s
             ORDER BY j.created_at
             LIMIT 1)
           ) first
     GROUP BY s.state
)
SELECT (SELECT count(*) FROM jobs j
         WHERE j.user_id = u.user_id AND j.state = 'waiting'
           AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s)
           AS waiting,
       (SELECT count(*) FROM jobs j
         WHERE j.user_id = u.user_id AND j.state = 'queued'
           AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s)
           AS queued,
       (SELECT count(*) FROM jobs j
         WHERE j.user_id = u.user_id AND j.state = 'running'
           AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s)
           AS running,
       k.completed, k.failed, k.cancelled, k.expired,
       cut.ended_since,
       (SELECT o.age_seconds FROM oldest o WHERE o.state = 'waiting') AS oldest_waiting_seconds,
       (SELECT o.age_seconds FROM oldest o WHERE o.state = 'queued') AS oldest_queued_seconds
  FROM users u
 CROSS JOIN cut
 CROSS JOIN counted k
 WHERE u.user_id = %(user_id)s

-- queue_dependencies --
-- GET /dashboard/queue, last of its reads (after queue_states, in one read_snapshot):
-- per dependency, the waiting, queued and running jobs that name it and the tokens they cost
-- (their jobs.dependencies), beside the user's bucket of that name as of now (the view
-- token_buckets_now, as bucket_quotas reads it), and drain_seconds: how long the bucket, at
-- its effective refill of now, takes to hold the tokens the waiting jobs cost beyond its
-- tokens now (a queued job paid when it was admitted; a waiting one pays when it is handed
-- out, hand_out_jobs.sql). 0 when they cost nothing or the tokens cover them; NULL when more
-- are needed and the bucket never refills, or there is no bucket (an unknown dependency
-- allowed). Rounded up to milliseconds, as full_in_seconds. Every bucket of the user is
-- listed, with zeros when no job names it; by dependency name.
--
-- Bounded work: each state's costs are read from at most %(max_jobs)s jobs, the next in line
-- through its partial index (waiting by run_at through jobs_waiting, queued in claim order
-- through jobs_queued, running by lease end through jobs_leased), with one heap fetch each
-- for its dependencies (about 30 ms per 10,000 jobs; 500 ms for 100,000, unbounded), of
-- the partitions between unfinished_bounds' ids only.
-- MATERIALIZED, so each LIMIT applies to its read. queue_states' exact counts tell whether
-- a state held more (janus/db/queue_view.py: the answer's `truncated`).
WITH waiting AS MATERIALIZED (
    SELECT j.dependencies
      FROM jobs j
     WHERE j.user_id = %(user_id)s AND j.state = 'waiting'
       AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s
     ORDER BY j.run_at, j.job_id
     LIMIT %(max_jobs)s
),
queued AS MATERIALIZED (
    SELECT j.dependencies
      FROM jobs j
     WHERE j.user_id = %(user_id)s AND j.state = 'queued'
       AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s
     ORDER BY j.priority DESC, j.created_at, j.job_id
     LIMIT %(max_jobs)s
),
running AS MATERIALIZED (
    SELECT j.dependencies
      FROM jobs j
     WHERE j.user_id = %(user_id)s AND j.state = 'running'
       AND j.job_id >= %(unfinished_from)s AND j.job_id < %(unfinished_until)s
     ORDER BY j.lease_expires_at
     LIMIT %(max_jobs)s
),
costs AS (
    SELECT c.key COLLATE "C" AS dependency,
           count(*) FILTER (WHERE s.state = 'waiting') AS waiting,
           count(*) FILTER (WHERE s.state = 'queued') AS queued,
           count(*) FILTER (WHERE s.state = 'running') AS running,
           coalesce(sum(c.value::bigint) FILTER (WHERE s.state = 'waiting'), 0)::bigint
               AS waiting_tokens,
           coalesce(sum(c.value::bigint) FILTER (WHERE s.state = 'queued'), 0)::bigint
               AS queued_tokens,
           coalesce(sum(c.value::bigint) FILTER (WHERE s.state = 'running'), 0)::bigint
               AS running_tokens
      FROM (SELECT 'waiting' AS state, w.dependencies FROM waiting w
            UNION ALL
            SELECT 'queued', q.dependencies FROM queued q
            UNION ALL
            SELECT 'running', r.dependencies FROM running r) s
     CROSS JOIN LATERAL jsonb_each(s.dependencies) c
     GROUP BY 1
),
buckets AS (
    SELECT b.dependency, b.tokens_now, b.effective_refill_per_second
      FROM token_buckets_now b
     WHERE b.user_id = %(user_id)s
)
SELECT coalesce(k.dependency, b.dependency) AS dependency,
       coalesce(k.waiting, 0) AS waiting,
       coalesce(k.queued, 0) AS queued,
       coalesce(k.running, 0) AS running,
       coalesce(k.waiting_tokens, 0) AS waiting_tokens,
       coalesce(k.queued_tokens, 0) AS queued_tokens,
       coalesce(k.running_tokens, 0) AS running_tokens,
       trim_scale(trunc(b.tokens_now, 6)) AS tokens,
       trim_scale(round(b.effective_refill_per_second, 9)) AS effective_refill_per_second,
       CASE WHEN coalesce(k.waiting_tokens, 0) = 0 THEN 0
            WHEN b.dependency IS NULL THEN NULL
            WHEN k.waiting_tokens <= b.tokens_now THEN 0
            WHEN b.effective_refill_per_second = 0 THEN NULL
            ELSE trim_scale(ceil((k.waiting_tokens - b.tokens_now) * 1000
                                 / b.effective_refill_per_second) / 1000)
       END AS drain_seconds
  FROM costs k
  FULL JOIN buckets b ON b.dependency = k.dependency
 ORDER BY 1

-- report_upstream_throttled --
-- Workers saw these upstream APIs answer 429: see report_upstream_throttled.sql. Returns the
-- adaptive buckets it slowed down, with their new effective refill.
SELECT dependency, effective_refill_per_second
  FROM report_upstream_throttled(%(user_id)s, %(dependencies)s::text[])

-- prune_idempotency_keys --
-- Maintenance (janus prune): one user's expired keys, at most %(chunk)s of them, each chunk a
-- short transaction of its own that touches this one user's rows (as every statement must,
-- for Citus: docs/scaling.md). Expired keys are already ignored by admit_requests(); this
-- only reclaims their space.
DELETE FROM idempotency_keys
 WHERE user_id = %(user_id)s
   AND idempotency_key IN (SELECT k.idempotency_key
                             FROM idempotency_keys k
                            WHERE k.user_id = %(user_id)s AND k.expires_at <= now()
                            LIMIT %(chunk)s)

-- first_idempotency_key_beyond --
-- Maintenance (janus prune): the newest of one user's idempotency keys beyond its newest
-- %(keep)s, newest first by (created_at, idempotency_key); no row when it has no more. Where
-- prune_idempotency_keys_from starts, fixed once per user so that its chunks agree on it: a
-- key remembered meanwhile is newer, and kept. The user's keys are read through the primary
-- key and sorted, as no index orders them by time; they are at most a day's (janus prune
-- deletes the expired ones first).
SELECT k.created_at, k.idempotency_key
  FROM idempotency_keys k
 WHERE k.user_id = %(user_id)s
 ORDER BY k.created_at DESC, k.idempotency_key DESC
OFFSET %(keep)s
 LIMIT 1

-- prune_idempotency_keys_from --
-- One user's idempotency keys at or before (%(created_at)s, %(idempotency_key)s), the first
-- one first_idempotency_key_beyond did not keep, at most %(chunk)s of them: each chunk is a
-- short transaction of its own, touching one user's rows only. The chunks walk the primary
-- key (user_id, idempotency_key) in order, each from the key after the last one the chunk
-- before it deleted (%(after)s: '' at first, below every key), so none reads again what those
-- before it read; how many it deleted and the last of them. The time is checked on the row
-- deleted too: a key expired and remembered again meanwhile is newer, and kept.
WITH pruned AS (
    DELETE FROM idempotency_keys k
     WHERE k.user_id = %(user_id)s
       AND (k.created_at, k.idempotency_key)
           <= (%(created_at)s::timestamptz, %(idempotency_key)s::text)
       AND k.idempotency_key IN (
               SELECT o.idempotency_key
                 FROM idempotency_keys o
                WHERE o.user_id = %(user_id)s AND o.idempotency_key > %(after)s::text
                  AND (o.created_at, o.idempotency_key)
                      <= (%(created_at)s::timestamptz, %(idempotency_key)s::text)
                ORDER BY o.idempotency_key
                LIMIT %(chunk)s)
    RETURNING k.idempotency_key
)
SELECT count(*), max(idempotency_key) FROM pruned

-- prune_cutoff --
-- Fixed once per prune, so that the chunks agree on what "older than" means.
SELECT now() - make_interval(secs => %(retention_s)s)

-- all_user_ids --
SELECT user_id FROM users ORDER BY user_id

-- prune_full_tenant_buckets --
-- One user's tenant buckets that have refilled to full: a tenant bucket without a row is full
-- (tenant_tokens_at()), so deleting them changes no decision. Rows a decision holds are
-- skipped (SKIP LOCKED), so a prune never waits on admission nor deadlocks with it; the rows
-- it locks are its own until deleted, so none of them can be debited in between.
DELETE FROM tenant_buckets
 WHERE user_id = %(user_id)s
   AND (dependency, tenant_id) IN (
       SELECT t.dependency, t.tenant_id
         FROM tenant_buckets t
        WHERE t.user_id = %(user_id)s
          AND tenant_tokens_at(t.capacity, t.tokens, t.refill_per_second, t.refilled_at,
                               clock_timestamp()) >= t.capacity
          FOR UPDATE SKIP LOCKED)

-- prune_rejected_jobs --
-- One user's oldest rejected jobs decided before %(cutoff)s, at most %(chunk)s of them: each
-- chunk is a short transaction of its own, touching one user's rows only. Those of
-- time-ordered id through the partial index jobs_rejected (user_id, job_id), a range of it
-- below the cutoff's first id, only when %(time_ordered)s (else their partitions forget them);
-- those stored before migration 0013 (random ids), first, by created_at through
-- jobs_with_random_ids: no partition of a span holds them.
DELETE FROM jobs
 WHERE user_id = %(user_id)s
   AND job_id IN (SELECT old.job_id
                    FROM ((SELECT r.job_id
                             FROM jobs r
                            WHERE r.user_id = %(user_id)s AND job_id_version(r.job_id) <> 7
                              AND r.status = 'Rejected' AND r.created_at < %(cutoff)s
                            ORDER BY r.created_at
                            LIMIT %(chunk)s)
                          UNION ALL
                          (SELECT t.job_id
                             FROM jobs t
                            WHERE %(time_ordered)s
                              AND t.user_id = %(user_id)s AND t.status = 'Rejected'
                              AND t.job_id < first_job_id_at(%(cutoff)s::timestamptz)
                              AND job_id_version(t.job_id) = 7
                            ORDER BY t.job_id
                            LIMIT %(chunk)s)) AS old
                   LIMIT %(chunk)s)

-- first_rejected_job_beyond --
-- Maintenance (janus prune): the newest of one user's rejected jobs beyond its newest
-- %(keep)s, newest first as its history orders them; no row when it has no more. Where
-- prune_rejected_jobs_from starts, fixed once per user so that its chunks agree on it: a job
-- rejected meanwhile is newer, and kept. The jobs of time-ordered id come first, read
-- backwards through the partial index jobs_rejected (user_id, job_id), at most %(keep)s + 1;
-- only when they are no more than %(keep)s, those stored before migration 0013 (random ids,
-- all older) count too, by (created_at, job_id) backwards through jobs_with_random_ids. At
-- most one of the two parts has a row: created_at is NULL for a job of time-ordered id.
WITH time_ordered AS MATERIALIZED (
    SELECT t.job_id
      FROM jobs t
     WHERE t.user_id = %(user_id)s AND t.status = 'Rejected' AND job_id_version(t.job_id) = 7
     ORDER BY t.job_id DESC
     LIMIT %(keep)s::integer + 1
)
SELECT (SELECT o.job_id FROM time_ordered o ORDER BY o.job_id LIMIT 1) AS job_id,
       NULL::timestamptz AS created_at
 WHERE (SELECT count(*) FROM time_ordered) > %(keep)s::integer
 UNION ALL
(SELECT r.job_id, r.created_at
   FROM jobs r
  WHERE r.user_id = %(user_id)s AND job_id_version(r.job_id) <> 7 AND r.status = 'Rejected'
    AND (SELECT count(*) FROM time_ordered) <= %(keep)s::integer
  ORDER BY r.created_at DESC, r.job_id DESC
 OFFSET greatest(0, %(keep)s::integer - (SELECT count(*) FROM time_ordered))
  LIMIT 1)

-- prune_rejected_jobs_from --
-- One user's rejected jobs from %(job_id)s, the first one first_rejected_job_beyond did not
-- keep, to the oldest, at most %(chunk)s of them: each chunk is a short transaction of its
-- own, touching one user's rows only. From a job of time-ordered id: those at or below it
-- through jobs_rejected, and every one of random id (all older); from one of random id
-- (%(created_at)s is its created_at): those of random id at or before it, by (created_at,
-- job_id) through jobs_with_random_ids.
DELETE FROM jobs
 WHERE user_id = %(user_id)s
   AND job_id IN (SELECT old.job_id
                    FROM ((SELECT r.job_id
                             FROM jobs r
                            WHERE r.user_id = %(user_id)s AND job_id_version(r.job_id) <> 7
                              AND r.status = 'Rejected'
                              AND (job_id_version(%(job_id)s::uuid) = 7
                                   OR (r.created_at, r.job_id)
                                      <= (%(created_at)s::timestamptz, %(job_id)s::uuid))
                            ORDER BY r.created_at
                            LIMIT %(chunk)s)
                          UNION ALL
                          (SELECT t.job_id
                             FROM jobs t
                            WHERE t.user_id = %(user_id)s AND t.status = 'Rejected'
                              AND t.job_id <= %(job_id)s::uuid
                              AND job_id_version(t.job_id) = 7
                              AND job_id_version(%(job_id)s::uuid) = 7
                            ORDER BY t.job_id
                            LIMIT %(chunk)s)) AS old
                   LIMIT %(chunk)s)

-- finished_job_cutoffs --
-- Maintenance (janus prune): per user, the moment before which its finished jobs are past
-- its active config's retention_days. Fixed once per prune, so that the chunks agree on what
-- "older than" means. Users without an active config have no row: they have no jobs
-- (admit_jobs() stores jobs only under an active config, and a version is only deactivated
-- by activating another, in one transaction; see user_max_attempts.sql). With it, whether
-- the retention_days is shorter than the deployment's retention (%(retention_s)s, janus
-- maintain): if not, only the user's jobs of random id go by a DELETE, the others with their
-- partitions.
SELECT c.user_id, now() - make_interval(days => c.retention_days),
       make_interval(days => c.retention_days) < make_interval(secs => %(retention_s)s)
  FROM configs c
 WHERE c.is_active
 ORDER BY c.user_id

-- prune_finished_jobs --
-- One user's oldest completed, failed, cancelled or expired jobs, at most %(chunk)s of them,
-- through the partial index jobs_done: each chunk is a short transaction of its own, and the queued
-- and running jobs a claim reads are never touched.
DELETE FROM jobs
 WHERE user_id = %(user_id)s
   AND job_id IN (SELECT job_id
                    FROM jobs
                   WHERE user_id = %(user_id)s
                     AND state IN ('completed', 'failed', 'cancelled', 'expired')
                     AND finished_at < %(cutoff)s
                     AND (%(time_ordered)s OR job_id_version(job_id) <> 7)
                   ORDER BY finished_at
                   LIMIT %(chunk)s)

-- lock_user_row --
-- The user's row lock, the one activate_config() takes, held until the transaction ends. No
-- row: unknown user. NO KEY UPDATE, as activate_config() takes it: admissions storing jobs
-- take key-share locks on the user and never wait for it. Taken first by
-- - the dashboard's config calls, so that a version check and the activation after it see no
--   activation in between (two PUTs with the same If-Match: the second waits, then sees the
--   first's version);
-- - `janus maintain`'s mark_unfinished_from, so that its read of the jobs, a statement of its
--   own, sees a retry_jobs() that held the lock committed.
SELECT 1 FROM users WHERE user_id = %(user_id)s FOR NO KEY UPDATE

-- config_versions --
-- A user's config versions newest first, as the dashboard shows them: only the active one
-- (active_only), only one (version), or a keyset page (below `before`, up to `limit`), by the
-- primary key (user_id, version). The config is built as active_config builds it, without
-- `paused`: stated_paused is what the version said (NULL: nothing), user_paused the state now.
SELECT c.version,
       c.created_at,
       c.activated_at,
       c.is_active,
       c.paused AS stated_paused,
       u.paused AS user_paused,
       json_build_object(
           'min_priority', c.min_priority,
           'priority_reserve', c.priority_reserve,
           'unknown_dependencies', c.unknown_dependencies,
           'max_attempts', c.max_attempts,
           'retention_days', c.retention_days,
           'retry_backoff', json_build_object(
               'base_seconds', c.retry_backoff_base_seconds,
               'max_seconds', c.retry_backoff_max_seconds),
           'when_limited', c.when_limited,
           'max_wait_seconds', c.max_wait_seconds,
           'mode', c.mode,
           'tenant_share', c.tenant_share,
           'tenant_overrides', c.tenant_overrides,
           'dependencies', coalesce(
               (SELECT json_object_agg(
                           d.dependency,
                           CASE WHEN d.adaptive_decrease IS NULL
                                THEN json_build_object('capacity', d.capacity,
                                                       'refill_per_second', d.refill_per_second)
                                ELSE json_build_object(
                                         'capacity', d.capacity,
                                         'refill_per_second', d.refill_per_second,
                                         'adaptive', json_build_object(
                                             'decrease', d.adaptive_decrease,
                                             'floor', d.adaptive_floor,
                                             'recovery_per_minute',
                                             d.adaptive_recovery_per_minute))
                           END
                           ORDER BY d.dependency)
                  FROM config_dependencies d
                 WHERE d.user_id = c.user_id AND d.version = c.version),
               '{}'::json)
       ) AS config
  FROM configs c
  JOIN users u ON u.user_id = c.user_id
 WHERE c.user_id = %(user_id)s
   AND (NOT %(active_only)s OR c.is_active)
   AND (%(version)s::integer IS NULL OR c.version = %(version)s::integer)
   AND (%(before)s::bigint IS NULL OR c.version < %(before)s::bigint)
 ORDER BY c.version DESC
 LIMIT %(limit)s

-- read_timeouts --
-- The first statement of a user's read of its job history or activity (janus/db/
-- history.py), for its transaction only: the read gives up after %(statement_ms)s
-- milliseconds (its user's connection back well before the admission path's own timeout),
-- and waits at most %(lock_ms)s for one_read_at_a_time's lock.
SELECT set_config('statement_timeout', %(statement_ms)s, true),
       set_config('lock_timeout', %(lock_ms)s, true)

-- one_read_at_a_time --
-- A user's reads of its history and activity run one at a time across every worker: the
-- transaction waits for this user's lock (within lock_timeout, then refused with 429), and
-- holds it until it ends, which is at least a turn (1 / JANUS_USER_READS_PER_SECOND) after
-- it got the lock (janus/db/history.py waits out the rest of the turn before it commits). A user's requests may hold a share of each worker's connections
-- (janus/db/pool.py), but however many it sends, at most one of these reads is running, so
-- one user cannot fill the database's CPU with them while the others wait. The prefix keeps
-- the key apart from Janus's other advisory locks.
SELECT pg_advisory_xact_lock(hashtextextended('janus reads ' || %(user_id)s::text, 0))

-- local_lock_timeout --
-- A lock that is waited for at most this many milliseconds, for its transaction only: `janus
-- maintain`'s drop of a partition, behind whose lock on jobs every statement on jobs waits.
SELECT set_config('lock_timeout', %(milliseconds)s, true)

-- local_statement_timeout --
-- A read that gives up after this many milliseconds, for its transaction only: GET /metrics's
-- read of the queue gauges (janus/db/queue_depth.py: a scrape renders without them rather
-- than wait).
SELECT set_config('statement_timeout', %(milliseconds)s, true)

-- unfinished_bounds_of_all --
-- GET /metrics's queue gauges, first of their reads: the ids between which every user's
-- queued, waiting and running jobs are, the least of the users' jobs_unfinished_from to
-- unfinished_until() of now (unfinished_bounds, for every user at once; NULL when there is
-- no user, and so no job). queue_depth gets them as values, so that it is planned for the
-- partitions of now only: planning its four reads in every partition of a week of hourly
-- ones took 450 ms. A read of every user's row, as queue_depth's of every user's jobs.
SELECT f.unfinished_from, unfinished_until(f.unfinished_from, now()) AS unfinished_until
  FROM (SELECT (SELECT u.jobs_unfinished_from
                  FROM users u
                 ORDER BY u.jobs_unfinished_from
                 LIMIT 1) AS unfinished_from) f

-- queue_depth --
-- GET /metrics's queue gauges: every user's jobs by state, and the age of the oldest job a
-- claim could hand out (queued, in its dependencies' line, or waiting past its run_at), by
-- its created_at (a waiting job's max wait counts from its admission too). With
-- unfinished_bounds_of_all, the statements the service runs that span users: an operator's
-- question, asked at every scrape, never a user's request. It reads the partial indexes of the queue's states only (no finished job
-- is read), so its cost grows with the jobs still in the queue, never with the history.
-- With 100k queued, 100k waiting and 1M finished jobs of 1,000 users: 25 to 50 ms on a busy
-- 2-core machine, the counts' index-only scans most of it (an exact count reads every entry;
-- a cheaper one needs counts kept as jobs change state). count(*) and min(created_at) of the
-- queued jobs share one index-only scan of jobs_queued, which holds created_at. The waiting
-- jobs in line (jobs_in_line) and those whose run_at has passed (jobs_waiting by run_at) are
-- read from the table for their created_at. Of the partitions between the ids of
-- unfinished_bounds_of_all only.
SELECT w.waiting, q.queued, r.running,
       coalesce(seconds_elapsed(least(q.oldest, d.oldest), now()), 0)::float8
  FROM (SELECT count(*) AS waiting FROM jobs
         WHERE state = 'waiting'
           AND job_id >= %(unfinished_from)s AND job_id < %(unfinished_until)s) w,
       (SELECT count(*) AS queued, min(created_at) AS oldest
          FROM jobs
         WHERE state = 'queued'
           AND job_id >= %(unfinished_from)s AND job_id < %(unfinished_until)s) q,
       (SELECT count(*) AS running FROM jobs
         WHERE state = 'running'
           AND job_id >= %(unfinished_from)s AND job_id < %(unfinished_until)s) r,
       (SELECT min(created_at) AS oldest
          FROM jobs
         WHERE state = 'waiting' AND (in_line_at IS NOT NULL OR run_at <= now())
           AND job_id >= %(unfinished_from)s AND job_id < %(unfinished_until)s) d

-- authenticate --
-- Who a request is (authenticate.sql): by its key, or by X-User-ID alone (key_id NULL).
SELECT outcome, scopes, key_name
  FROM authenticate(%(user_id)s, %(key_id)s, %(secret_sha256)s)

-- create_api_key --
-- A new key of a user (create_api_key.sql): when it was created.
SELECT create_api_key(%(user_id)s, %(key_id)s, %(name)s, %(scopes)s::text[],
                      %(secret_sha256)s, %(expires_at)s, %(max_keys)s)

-- revoke_api_key --
-- Revoke a key of a user (revoke_api_key.sql): revoked, already_revoked or not_found.
SELECT revoke_api_key(%(user_id)s, %(key_id)s)

-- api_keys --
-- A user's keys, newest first, revoked and expired ones included, never the secret's hash;
-- with the user's own row (LEFT JOIN), so that a user without keys is one row of NULLs and
-- no user is no row at all.
SELECT a.key_id, a.name, a.scopes, a.created_at, a.last_used_at, a.expires_at, a.revoked_at
  FROM users u
  LEFT JOIN api_keys a ON a.user_id = u.user_id
 WHERE u.user_id = %(user_id)s
 ORDER BY a.created_at DESC, a.key_id

-- prune_pause_changes --
-- One user's pause changes beyond its newest %(keep)s (the newest says since when the pause
-- state holds): its pause history stays bounded however often it pauses.
DELETE FROM pause_changes p
 WHERE p.user_id = %(user_id)s
   AND p.change_id < (SELECT min(k.change_id)
                        FROM (SELECT n.change_id
                                FROM pause_changes n
                               WHERE n.user_id = %(user_id)s
                               ORDER BY n.change_id DESC
                               LIMIT %(keep)s) AS k)

-- prune_config_versions --
-- One user's config versions older than its newest %(keep)s: never the active one, nor one a
-- kept pause change names (its history would go with it). A rollback to a pruned version is a
-- 404, as to one that never was; the next version's number is unchanged (the newest stays).
-- Its dependencies go with it (ON DELETE CASCADE). A version being activated meanwhile is
-- active once the activation commits, and is then not deleted.
DELETE FROM configs c
 WHERE c.user_id = %(user_id)s
   AND NOT c.is_active
   AND c.version < (SELECT min(k.version)
                      FROM (SELECT n.version
                              FROM configs n
                             WHERE n.user_id = %(user_id)s
                             ORDER BY n.version DESC
                             LIMIT %(keep)s) AS k)
   AND NOT EXISTS (SELECT 1
                     FROM pause_changes p
                    WHERE p.user_id = c.user_id AND p.config_version = c.version)

-- jobs_partitions --
-- The partitions of jobs (migration 0024) and the moments their ranges of ids start and end,
-- read off each partition's bound: NULL where it starts at the lowest id (jobs_before), both
-- NULL for the default partition (jobs_default). Oldest first.
SELECT c.relname,
       job_decided_at((regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    $$FROM \('([0-9a-f-]+)'\)$$))[1]::uuid) AS starts,
       job_decided_at((regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    $$TO \('([0-9a-f-]+)'\)$$))[1]::uuid) AS ends
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'jobs'::regclass
 ORDER BY ends NULLS LAST, starts NULLS FIRST

-- add_jobs_partition --
SELECT add_jobs_partition(%(starts)s, %(ends)s)

-- drop_jobs_partition --
-- The lock it takes first waits at most this transaction's lock_timeout (janus maintain).
SELECT state, jobs FROM drop_jobs_partition(%(partition)s)

-- unfinished_in_partition --
-- The states, of queued, waiting and running, that a partition holds a job in: a probe of
-- each state's partial index (jobs_queued, jobs_waiting, jobs_leased) in that partition
-- alone. Its name is an identifier, put in by the caller (psycopg.sql).
SELECT 'queued' WHERE EXISTS (SELECT FROM {partition} WHERE state = 'queued')
UNION ALL
SELECT 'waiting' WHERE EXISTS (SELECT FROM {partition} WHERE state = 'waiting')
UNION ALL
SELECT 'running' WHERE EXISTS (SELECT FROM {partition} WHERE state = 'running')

-- mark_unfinished_from --
-- janus maintain, per user: the lowest id of its jobs queued, waiting or running, and no
-- higher than the first id of an hour ago, as the id below which its claims need not look
-- (hand_out_jobs() reads only the partitions from there). Run after lock_user_row, in its
-- transaction: retry_jobs() takes that row lock too when it makes an old job unfinished again
-- and lowers the mark, so this statement's snapshot, taken once the lock is held, sees every
-- retry that lowered it (a lock taken within this statement would be waited for after its
-- snapshot, and undo the retry's mark). The hour covers an admission that took its id and
-- committed after this read (a statement lasts 10 minutes at most). Each state's lowest id is
-- the first entry of the user's part of jobs_in_state (user_id, state, job_id) in each
-- partition.
--
-- And the id below which none of its jobs finished in the last %(ended_window_s)s seconds,
-- for the queue view's ended jobs (queue_states): a job that finished at a moment was
-- unfinished just before, so its id is at least the mark of that moment.
-- jobs_unfinished_low is the least mark since jobs_unfinished_low_since; once that is a
-- window ago, the low becomes jobs_ended_from, the least mark from more than a window back to
-- now, and starts again from the new mark. A mark lower than them lowers them, as
-- retry_jobs() does. So jobs_ended_from lags one to two windows behind, and is never above a
-- mark of the window.
UPDATE users u
   SET jobs_unfinished_from = m.mark,
       jobs_ended_from = least(CASE WHEN m.rotate THEN u.jobs_unfinished_low
                                    ELSE u.jobs_ended_from END, m.mark),
       jobs_unfinished_low = CASE WHEN m.rotate THEN m.mark
                                  ELSE least(u.jobs_unfinished_low, m.mark) END,
       jobs_unfinished_low_since = CASE WHEN m.rotate THEN now()
                                        ELSE u.jobs_unfinished_low_since END
  FROM (SELECT CASE
               -- A job of random id unfinished: the lowest id, for no bound
               -- (unfinished_until()).
               WHEN EXISTS (SELECT FROM jobs j
                             WHERE j.user_id = %(user_id)s AND job_id_version(j.job_id) <> 7
                               AND j.state IN ('queued', 'waiting', 'running'))
               THEN '00000000-0000-0000-0000-000000000000'::uuid
               ELSE least(
                   (SELECT j.job_id FROM jobs j
                     WHERE j.user_id = %(user_id)s AND j.state = 'queued'
                     ORDER BY j.job_id LIMIT 1),
                   (SELECT j.job_id FROM jobs j
                     WHERE j.user_id = %(user_id)s AND j.state = 'waiting'
                     ORDER BY j.job_id LIMIT 1),
                   (SELECT j.job_id FROM jobs j
                     WHERE j.user_id = %(user_id)s AND j.state = 'running'
                     ORDER BY j.job_id LIMIT 1),
                   first_job_id_at(now() - interval '1 hour')) END AS mark,
               v.jobs_unfinished_low_since
                   <= now() - make_interval(secs => %(ended_window_s)s) AS rotate
          FROM users v
         WHERE v.user_id = %(user_id)s) m
 WHERE u.user_id = %(user_id)s
