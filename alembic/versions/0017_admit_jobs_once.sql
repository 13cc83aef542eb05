-- admit_jobs_once(): one request through admit_requests(), its refusals raised.
--
-- What the release before group admission called, kept (with admit_jobs()) while that release
-- still serves during a deploy; a later migration drops both. Same arguments and columns as
-- it had: a request's error row from admit_requests() is raised with its SQLSTATE (J0U01
-- unknown user, J0C01 no active config, J0P01 service paused, J0K09 idempotency key in use,
-- J0K22 idempotency key reused), so its caller answers as it always did.
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
    p_idempotency_key text,    -- null: no key
    p_request_hash    bytea,
    p_quote           boolean DEFAULT false  -- true: decide only
)
RETURNS TABLE (job_id uuid, status text, reason text, retry_after integer, replayed boolean,
               budgets json, shadow_status text, shadow_reason text, fits_at timestamptz,
               reason_code text, shadow_reason_code text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    answer record;
BEGIN
    FOR answer IN
        SELECT *
          FROM admit_requests(p_user_id, ARRAY[p_source], ARRAY[p_batch_name],
                              ARRAY[cardinality(p_priorities)], ARRAY[p_idempotency_key],
                              ARRAY[p_request_hash], p_tenants, p_priorities, p_dependencies,
                              p_payloads, p_atomic, p_quote)
    LOOP
        IF answer.error IS NOT NULL THEN
            RAISE EXCEPTION '%', CASE answer.error
                                     WHEN 'J0U01' THEN 'unknown user'
                                     WHEN 'J0C01' THEN 'no active config'
                                     WHEN 'J0P01' THEN 'service paused'
                                     WHEN 'J0K09' THEN 'idempotency key in use'
                                     ELSE 'idempotency key reused' END
                  USING ERRCODE = answer.error;
        END IF;
        job_id := answer.job_id;
        status := answer.status;
        reason := answer.reason;
        retry_after := answer.retry_after;
        replayed := answer.replayed;
        budgets := answer.budgets;
        shadow_status := answer.shadow_status;
        shadow_reason := answer.shadow_reason;
        fits_at := answer.fits_at;
        reason_code := answer.reason_code;
        shadow_reason_code := answer.shadow_reason_code;
        RETURN NEXT;
    END LOOP;
END
$fn$;
