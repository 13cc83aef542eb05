-- revoke_api_key(): revoke one key of a user, from its next request on: 'revoked', or
-- 'already_revoked' (nothing changes), or 'not_found' (the user has no such key).
--
-- Raises J0U01 for an unknown user.
--
-- The live definition is janus/db/sql/revoke_api_key.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION revoke_api_key(p_user_id uuid, p_key_id text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    was timestamptz;
BEGIN
    PERFORM 1 FROM users u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;
    SELECT a.revoked_at INTO was
      FROM api_keys a
     WHERE a.user_id = p_user_id AND a.key_id = p_key_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'not_found';
    ELSIF was IS NOT NULL THEN
        RETURN 'already_revoked';
    END IF;
    UPDATE api_keys a SET revoked_at = now()
     WHERE a.user_id = p_user_id AND a.key_id = p_key_id;
    RETURN 'revoked';
END
$fn$;
