-- lock_user(): take the user's row lock that serialises activations of its configs.
--
-- Raises J0U01 for an unknown user. activate_config() and activate_version() take it first, so
-- two activations of one user never pick the same version nor interleave their bucket
-- changes; it is held until their transaction ends.
--
-- FOR NO KEY UPDATE, as set_paused() and queries.sql's lock_user_row take it: storing a
-- job takes a key-share lock on its user, which this mode does not conflict with, so an
-- admission holding buckets an activation waits for never waits on the activation in turn.
--
-- The live definition is janus/db/sql/lock_user.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION lock_user(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM 1 FROM users WHERE user_id = p_user_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;
END
$fn$;
