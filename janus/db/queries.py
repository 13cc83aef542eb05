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

# Operators' listing: the whole table, by design (not a request's statement).
LIST_USERS = """
SELECT u.user_id, u.name, u.created_at, c.version AS config_version, c.paused
  FROM users u
  LEFT JOIN configs c ON c.user_id = u.user_id AND c.is_active
 WHERE %(name_contains)s::text IS NULL
    OR strpos(lower(u.name), lower(%(name_contains)s::text)) > 0
 ORDER BY u.created_at, u.user_id
"""

# No row: unknown user.
USER_HOLDINGS = """
SELECT (SELECT count(*) FROM jobs j WHERE j.user_id = u.user_id),
       (SELECT count(*) FROM configs c WHERE c.user_id = u.user_id),
       (SELECT count(*) FROM token_buckets b WHERE b.user_id = u.user_id)
  FROM users u
 WHERE u.user_id = %(user_id)s
"""

# Every table holding the user's rows references users ON DELETE CASCADE.
DELETE_USER = """
DELETE FROM users WHERE user_id = %(user_id)s
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

# Fixed once per prune, so that the chunks agree on what "older than" means.
PRUNE_CUTOFF = """
SELECT now() - make_interval(secs => %(retention_s)s)
"""

ALL_USER_IDS = """
SELECT user_id FROM users ORDER BY user_id
"""

# One user's oldest rejected jobs, at most %(chunk)s of them, through jobs_by_user_and_time:
# each chunk is a short transaction of its own, touching one user's rows only.
PRUNE_REJECTED_JOBS = """
DELETE FROM jobs
 WHERE user_id = %(user_id)s
   AND job_id IN (SELECT job_id
                    FROM jobs
                   WHERE user_id = %(user_id)s AND status = 'Rejected'
                     AND created_at < %(cutoff)s
                   ORDER BY created_at
                   LIMIT %(chunk)s)
"""
