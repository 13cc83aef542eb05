-- set_paused(): pause or resume a user, and record the change.
--
-- Returns when the user's current pause state began: the time of the latest change, or NULL
-- when the user was never paused. Raises J0U01 for an unknown user.
--
-- A pause belongs to the user, not to a config version (users.paused): admit_jobs() refuses
-- every job of a paused user with 'service paused', and activating a config that leaves
-- `paused` out, or rolling back to an older version, keeps the state as it is. Only a real
-- change is recorded, in pause_changes, with the config version that made it (NULL for
-- `janus pause|resume` and POST /dashboard/pause|resume), so pausing twice is one change.
--
-- The live definition is janus/db/sql/set_paused.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION set_paused(
    p_user_id        uuid,
    p_paused         boolean,
    p_config_version integer DEFAULT NULL  -- the version whose `paused` asks for this
)
RETURNS timestamptz
LANGUAGE plpgsql
AS $fn$
DECLARE
    was_paused boolean;
    since      timestamptz;
BEGIN
    -- NO KEY UPDATE: serialises pauses of one user without waiting on the key-share locks
    -- that storing a job takes on its user.
    SELECT u.paused INTO was_paused FROM users u WHERE u.user_id = p_user_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user' USING ERRCODE = 'J0U01';
    END IF;

    IF was_paused IS DISTINCT FROM p_paused THEN
        UPDATE users SET paused = p_paused WHERE user_id = p_user_id;
        INSERT INTO pause_changes (user_id, paused, config_version)
        VALUES (p_user_id, p_paused, p_config_version)
        RETURNING changed_at INTO since;
    ELSE
        SELECT pc.changed_at INTO since
          FROM pause_changes pc
         WHERE pc.user_id = p_user_id
         ORDER BY pc.change_id DESC
         LIMIT 1;
    END IF;
    RETURN since;
END
$fn$;
