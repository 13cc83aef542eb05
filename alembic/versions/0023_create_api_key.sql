-- create_api_key(): store a new key of a user (only the SHA-256 of its secret), and from then
-- on refuse the user's X-User-ID alone (users.keys_since, never cleared: revoking every key
-- does not open the user to whoever knows its id again).
--
-- Raises J0U01 for an unknown user, J0A01 when the user already has p_max_keys keys that are
-- neither revoked nor expired. The user's row is locked (FOR NO KEY UPDATE, as lock_user()),
-- so two creations cannot both pass the cap.
--
-- The live definition is janus/db/sql/create_api_key.sql; a migration that changes it applies
-- a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION create_api_key(
    p_user_id       uuid,
    p_key_id        text,
    p_name          text,
    p_scopes        text[],
    p_secret_sha256 bytea,
    p_expires_at    timestamptz,  -- NULL: never
    p_max_keys      integer
)
RETURNS timestamptz
LANGUAGE plpgsql
AS $fn$
DECLARE
    created timestamptz;
BEGIN
    PERFORM lock_user(p_user_id);
    IF (SELECT count(*) FROM api_keys a
         WHERE a.user_id = p_user_id AND a.revoked_at IS NULL
           AND (a.expires_at IS NULL OR a.expires_at > now())) >= p_max_keys THEN
        RAISE EXCEPTION 'too many keys' USING ERRCODE = 'J0A01';
    END IF;
    INSERT INTO api_keys (user_id, key_id, name, scopes, secret_sha256, expires_at)
    VALUES (p_user_id, p_key_id, p_name, p_scopes, p_secret_sha256, p_expires_at)
    RETURNING created_at INTO created;
    UPDATE users SET keys_since = coalesce(keys_since, created) WHERE user_id = p_user_id;
    RETURN created;
END
$fn$;
