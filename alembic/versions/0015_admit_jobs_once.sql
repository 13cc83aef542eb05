-- admit_jobs_once(): admit_jobs() behind an idempotency key; what the web process calls.
--
-- With a key it first takes a transaction-scoped advisory lock on (user, key) without
-- waiting: a duplicate that arrives while the first is still being decided fails at once with
-- J0K09 (409). A remembered key answers from idempotency_keys (J0K22, 422, when the request
-- differs). Otherwise the jobs are decided and, when at least one was accepted, the decisions
-- are remembered. The primary key of idempotency_keys, not the advisory lock, is what
-- guarantees one decision per key: a writer that finds the key taken raises 40001, and the
-- caller's retry loop then finds the remembered answer.
--
-- A quote (p_quote) answers as the request would be answered now, a replay included, and
-- remembers nothing. shadow_status, shadow_reason, shadow_reason_code and fits_at are
-- admit_jobs()'s; a replay has none of them. reason_code is remembered with the reason, so a
-- replay answers both.
--
-- `budgets` is admit_jobs()'s, on the first row. A replay decides nothing and reads no
-- bucket, so it carries none (as it carries no Retry-After): the remembered answer is the
-- decisions, not the budgets of a moment long gone.
--
-- The live definition is janus/db/sql/admit_jobs_once.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION admit_jobs_once(
    p_user_id         uuid,
    p_source          text,
    p_batch_name      text,
    p_tenants         text[],
    p_priorities      smallint[],
    p_dependencies    jsonb[],
    p_payloads        json[],
    p_atomic          boolean,
    p_idempotency_key text,    -- null: no key, decide as admit_jobs() does
    p_request_hash    bytea,
    p_quote           boolean DEFAULT false  -- true: decide only, as admit_jobs() does
)
RETURNS TABLE (job_id uuid, status text, reason text, retry_after integer, replayed boolean,
               budgets json, shadow_status text, shadow_reason text, fits_at timestamptz,
               reason_code text, shadow_reason_code text)
LANGUAGE plpgsql
-- Generic plans, made once per connection. With the default, Postgres re-planned most of its
-- statements on every call (their array parameters make custom plans look cheaper), which
-- cost about a third of a single job's time in the database.
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    remembered record;
    decided    record;
    answers    jsonb;
    request_budgets json;
    accepted   boolean;
BEGIN
    IF p_idempotency_key IS NULL THEN
        RETURN QUERY
            SELECT d.job_id, d.status, d.reason, d.retry_after, false, d.budgets,
                   d.shadow_status, d.shadow_reason, d.fits_at, d.reason_code,
                   d.shadow_reason_code
              FROM admit_jobs(p_user_id, p_source, p_batch_name, p_tenants, p_priorities, p_dependencies,
                              p_payloads, p_atomic, p_quote) d;
        RETURN;
    END IF;

    IF NOT pg_try_advisory_xact_lock(
            hashtextextended(p_user_id::text || '/' || p_idempotency_key, 0)) THEN
        RAISE EXCEPTION 'idempotency key in use' USING ERRCODE = 'J0K09';
    END IF;

    SELECT k.request_hash, k.decisions
      INTO remembered
      FROM idempotency_keys k
     WHERE k.user_id = p_user_id AND k.idempotency_key = p_idempotency_key
       AND k.expires_at > now();
    IF FOUND THEN
        IF remembered.request_hash <> p_request_hash THEN
            RAISE EXCEPTION 'idempotency key reused' USING ERRCODE = 'J0K22';
        END IF;
        RETURN QUERY
            SELECT (e.value ->> 'job_id')::uuid, e.value ->> 'status', e.value ->> 'reason',
                   NULL::integer, true, NULL::json, NULL::text, NULL::text, NULL::timestamptz,
                   e.value ->> 'reason_code', NULL::text
              FROM jsonb_array_elements(remembered.decisions) WITH ORDINALITY AS e(value, n)
             ORDER BY e.n;
        RETURN;
    END IF;

    SELECT jsonb_agg(jsonb_build_object('job_id', d.job_id, 'status', d.status,
                                        'reason', d.reason, 'retry_after', d.retry_after,
                                        'shadow_status', d.shadow_status,
                                        'shadow_reason', d.shadow_reason, 'fits_at', d.fits_at,
                                        'reason_code', d.reason_code,
                                        'shadow_reason_code', d.shadow_reason_code)
                     ORDER BY d.n),
           bool_or(d.status = 'Accepted'),
           (array_agg(d.budgets) FILTER (WHERE d.n = 1))[1]
      INTO answers, accepted, request_budgets
      FROM admit_jobs(p_user_id, p_source, p_batch_name, p_tenants, p_priorities, p_dependencies,
                              p_payloads, p_atomic, p_quote)
           WITH ORDINALITY AS d(job_id, status, reason, retry_after, budgets, shadow_status,
                                shadow_reason, fits_at, reason_code, shadow_reason_code, n);

    -- Rejections are not remembered: nothing was taken, so a retry is decided anew.
    IF accepted AND NOT p_quote THEN
        INSERT INTO idempotency_keys AS k (user_id, idempotency_key, request_hash, decisions,
                                           expires_at)
        VALUES (p_user_id, p_idempotency_key, p_request_hash,
                (SELECT jsonb_agg(a - 'retry_after' - 'shadow_status' - 'shadow_reason'
                                    - 'shadow_reason_code' - 'fits_at')
                   FROM jsonb_array_elements(answers) a),
                now() + interval '24 hours')
        ON CONFLICT (user_id, idempotency_key) DO UPDATE
           SET request_hash = excluded.request_hash,
               decisions = excluded.decisions,
               created_at = excluded.created_at,
               expires_at = excluded.expires_at
         WHERE k.expires_at <= now();
        IF NOT FOUND THEN
            -- Someone remembered this key after our snapshot: roll back, and let the retry
            -- answer from what they stored.
            RAISE EXCEPTION 'idempotency key remembered concurrently' USING ERRCODE = '40001';
        END IF;
    END IF;

    RETURN QUERY
        SELECT (e.value ->> 'job_id')::uuid, e.value ->> 'status', e.value ->> 'reason',
               (e.value ->> 'retry_after')::integer, false,
               CASE WHEN e.n = 1 THEN request_budgets END, e.value ->> 'shadow_status',
               e.value ->> 'shadow_reason', (e.value ->> 'fits_at')::timestamptz,
               e.value ->> 'reason_code', e.value ->> 'shadow_reason_code'
          FROM jsonb_array_elements(answers) WITH ORDINALITY AS e(value, n)
         ORDER BY e.n;
END
$fn$;
