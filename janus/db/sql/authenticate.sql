-- authenticate(): who a request is, from its credential, in one read of one user's rows.
--
-- With a key (p_key_id and the SHA-256 of its secret): outcome 'ok' with the key's scopes and
-- name when the key is the user's, its secret matches, and it is neither revoked nor expired;
-- else 'unknown_key' (no such key of this user, or the secret does not match: the two are not
-- told apart), 'revoked' or 'expired'. A key in use has its last_used_at moved forward at most
-- once a minute, so that using a key is not a write per request.
--
-- Without a key (p_key_id NULL, X-User-ID alone): 'ok' with no scopes (every scope: the seed's
-- API), unless the user has ever had a key (users.keys_since): 'key_required'. Both ways,
-- 'unknown_user' when there is no such user.
--
-- The live definition is janus/db/sql/authenticate.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION authenticate(
    p_user_id       uuid,
    p_key_id        text,   -- NULL: X-User-ID alone
    p_secret_sha256 bytea
)
RETURNS TABLE (outcome text, scopes text[], key_name text)
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    since timestamptz;
    k     record;
BEGIN
    SELECT u.keys_since INTO since FROM users u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_user'::text, NULL::text[], NULL::text;
        RETURN;
    END IF;
    IF p_key_id IS NULL THEN
        RETURN QUERY SELECT CASE WHEN since IS NULL THEN 'ok' ELSE 'key_required' END,
                            NULL::text[], NULL::text;
        RETURN;
    END IF;

    SELECT a.scopes, a.name, a.secret_sha256, a.revoked_at, a.expires_at, a.last_used_at
      INTO k
      FROM api_keys a
     WHERE a.user_id = p_user_id AND a.key_id = p_key_id;
    IF NOT FOUND OR k.secret_sha256 <> p_secret_sha256 THEN
        RETURN QUERY SELECT 'unknown_key'::text, NULL::text[], NULL::text;
    ELSIF k.revoked_at IS NOT NULL THEN
        RETURN QUERY SELECT 'revoked'::text, NULL::text[], k.name;
    ELSIF k.expires_at <= now() THEN
        RETURN QUERY SELECT 'expired'::text, NULL::text[], k.name;
    ELSE
        IF k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute' THEN
            UPDATE api_keys a SET last_used_at = now()
             WHERE a.user_id = p_user_id AND a.key_id = p_key_id;
        END IF;
        RETURN QUERY SELECT 'ok'::text, k.scopes, k.name;
    END IF;
END
$fn$;
