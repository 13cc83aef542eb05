"""Named SQL, one constant per statement, with %(name)s placeholders only."""

from __future__ import annotations

# The whole decision in one statement: see alembic/versions/0002_admit_jobs.py, and 0004 for
# the idempotency key around it. Run in READ COMMITTED for single jobs and partial batches
# (bucket row locks serialise them) and in SERIALIZABLE for atomic batches, as the contract asks.
ADMIT_JOBS = """
SELECT job_id, status, reason, retry_after, replayed
  FROM admit_jobs_once(%(user_id)s, %(source)s, %(batch_name)s, %(tenants)s::text[],
                       %(priorities)s::smallint[], %(dependencies)s::jsonb[],
                       %(payloads)s::json[], %(atomic)s, %(idempotency_key)s, %(request_hash)s)
"""

HEALTH_CHECK = "SELECT 1"

# Accounts and configs (the operator CLI)

CREATE_USER = """
INSERT INTO users (name) VALUES (%(name)s) RETURNING user_id
"""

# Names are not unique; the oldest user of a name is the one the CLI means (`janus demo`).
FIND_USER_BY_NAME = """
SELECT user_id FROM users WHERE name = %(name)s ORDER BY created_at, user_id LIMIT 1
"""

# Held until the transaction ends, so two concurrent find-or-creates of one name make one user.
LOCK_USER_NAME = """
SELECT pg_advisory_xact_lock(hashtextextended('janus users.name ' || %(name)s, 0))
"""

# See alembic/versions/0003_activate_config.py: new version, activation and buckets in one call.
ACTIVATE_CONFIG = """
SELECT activate_config(%(user_id)s, %(paused)s, %(min_priority)s::smallint,
                       %(priority_reserve)s::numeric, %(unknown_dependencies)s,
                       %(dependencies)s::json)
"""

# One row when the user exists (no row: unknown user); version is NULL without an active
# config. The config is built as JSON here so numerics keep the form they were stored in.
ACTIVE_CONFIG = """
SELECT c.version,
       json_build_object(
           'paused', c.paused,
           'min_priority', c.min_priority,
           'priority_reserve', c.priority_reserve,
           'unknown_dependencies', c.unknown_dependencies,
           'dependencies', coalesce(
               (SELECT json_object_agg(d.dependency,
                                       json_build_object('capacity', d.capacity,
                                                         'refill_per_second', d.refill_per_second)
                                       ORDER BY d.dependency)
                  FROM config_dependencies d
                 WHERE d.user_id = c.user_id AND d.version = c.version),
               '{}'::json)
       ) AS config
  FROM users u
  LEFT JOIN configs c ON c.user_id = u.user_id AND c.is_active
 WHERE u.user_id = %(user_id)s
"""

# Pausing edits the active version in place rather than making a new one: it is an operator's
# switch, not a change of policy, and it must not touch the buckets.
SET_PAUSED = """
UPDATE configs SET paused = %(paused)s
 WHERE user_id = %(user_id)s AND is_active
RETURNING version
"""

BUCKET_LEVELS = """
SELECT dependency, capacity, refill_per_second, tokens_now
  FROM token_buckets_now
 WHERE user_id = %(user_id)s
 ORDER BY dependency
"""

# Maintenance

# Expired keys are already ignored by admit_jobs_once(); this only reclaims their space.
PRUNE_IDEMPOTENCY_KEYS = """
DELETE FROM idempotency_keys WHERE expires_at <= now()
"""
