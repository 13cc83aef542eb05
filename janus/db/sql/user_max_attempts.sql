-- user_max_attempts(): the claims a job of this user gets before it is failed: the
-- max_attempts of the user's active config.
--
-- Raises J0U01 for an unknown user. hand_out_jobs() and finish_jobs() read it first.
--
-- No number stands in for a user without an active config (janus/schemas/requests.py holds the
-- default, and activate_config() always stores one): a user that has jobs always has an
-- active config, because admit_jobs() stores jobs only under one and a version is only ever
-- deactivated by activate_version() activating another, in the same transaction. A user
-- without one gets NULL here and has no job to claim, to take back or to finish.
--
-- The live definition is janus/db/sql/user_max_attempts.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION user_max_attempts(p_user_id uuid)
RETURNS integer
LANGUAGE plpgsql
STABLE
AS $fn$
DECLARE
    allowed integer;
BEGIN
    SELECT c.max_attempts INTO allowed FROM configs c WHERE c.user_id = p_user_id AND c.is_active;
    -- Without an active config, the user itself is looked for.
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;
    RETURN allowed;
END
$fn$;
