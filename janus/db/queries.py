"""Named SQL, one constant per statement, with named placeholders only: %(name)s, or
%(name)b for a parameter sent in binary.

The statements, each with the comment that explains it, live in janus/db/sql/queries.sql and
are read once, at import; `ADMIT_REQUESTS` is the query named `admit_requests` there. A name
missing from the file fails the import.
"""

from __future__ import annotations

from janus.db.sql import load_queries

_QUERIES = load_queries()

ADMIT_REQUESTS = _QUERIES["admit_requests"]
ADMIT_JOB = _QUERIES["admit_job"]
LOCK_BUCKETS_FOR_ATOMIC = _QUERIES["lock_buckets_for_atomic"]
RELEASE_ADVISORY_LOCKS = _QUERIES["release_advisory_locks"]
# The same locks as LOCK_BUCKETS_FOR_ATOMIC, held by the transaction instead of the session:
# the atomic batch's SERIALIZABLE transaction takes them (its session already holds them, so
# at once) and keeps them until its COMMIT is done, though it releases the session's locks
# just before that COMMIT (janus/db/transactions.py says why).
LOCK_BUCKETS_TO_COMMIT = LOCK_BUCKETS_FOR_ATOMIC.replace(
    "pg_advisory_lock(", "pg_advisory_xact_lock("
)
assert LOCK_BUCKETS_TO_COMMIT != LOCK_BUCKETS_FOR_ATOMIC
HEALTH_CHECK = _QUERIES["health_check"]

# The queue: claims, leases, completions, failures, cancellations and retries
HAND_OUT_JOBS = _QUERIES["hand_out_jobs"]
HEARTBEAT_JOB = _QUERIES["heartbeat_job"]
FINISH_JOBS = _QUERIES["finish_jobs"]
CANCEL_JOBS = _QUERIES["cancel_jobs"]
RETRY_JOBS = _QUERIES["retry_jobs"]
JOB_IDS_IN_STATES = _QUERIES["job_ids_in_states"]

# Accounts and configs (the operator CLI)
CREATE_USER = _QUERIES["create_user"]
FIND_USER_BY_NAME = _QUERIES["find_user_by_name"]
LIST_USERS = _QUERIES["list_users"]
USER_HOLDINGS = _QUERIES["user_holdings"]
DELETE_USER = _QUERIES["delete_user"]
LOCK_USER_NAME = _QUERIES["lock_user_name"]
ACTIVATE_CONFIG = _QUERIES["activate_config"]
ACTIVE_CONFIG = _QUERIES["active_config"]
SET_PAUSED = _QUERIES["set_paused"]
ACTIVATE_VERSION = _QUERIES["activate_version"]
PAUSE_CHANGES = _QUERIES["pause_changes"]

# The dashboard's and the CLI's reads: job history, one job, jobs per minute, bucket and
# tenant quotas
JOB_HISTORY = _QUERIES["job_history"]
JOB_HISTORY_OF_RANDOM_IDS = _QUERIES["job_history_of_random_ids"]
WALK_IN_ORDER = _QUERIES["walk_in_order"]
JOB_RECORD = _QUERIES["job_record"]
ACTIVITY_WINDOW = _QUERIES["activity_window"]
JOB_ACTIVITY = _QUERIES["job_activity"]
BUCKET_QUOTAS = _QUERIES["bucket_quotas"]
READ_SNAPSHOT = _QUERIES["read_snapshot"]
QUOTA_MODE = _QUERIES["quota_mode"]
TENANT_QUOTAS = _QUERIES["tenant_quotas"]

# Credentials: who a request is, and users' API keys
AUTHENTICATE = _QUERIES["authenticate"]
CREATE_API_KEY = _QUERIES["create_api_key"]
REVOKE_API_KEY = _QUERIES["revoke_api_key"]
API_KEYS = _QUERIES["api_keys"]

# Config versions over HTTP (the dashboard)
LOCK_USER_ROW = _QUERIES["lock_user_row"]
CONFIG_VERSIONS = _QUERIES["config_versions"]

# Adaptive refill (workers' reports of upstream throttling)
REPORT_UPSTREAM_THROTTLED = _QUERIES["report_upstream_throttled"]

# Maintenance
PRUNE_IDEMPOTENCY_KEYS = _QUERIES["prune_idempotency_keys"]
FIRST_IDEMPOTENCY_KEY_BEYOND = _QUERIES["first_idempotency_key_beyond"]
PRUNE_IDEMPOTENCY_KEYS_FROM = _QUERIES["prune_idempotency_keys_from"]
PRUNE_CUTOFF = _QUERIES["prune_cutoff"]
ALL_USER_IDS = _QUERIES["all_user_ids"]
PRUNE_FULL_TENANT_BUCKETS = _QUERIES["prune_full_tenant_buckets"]
PRUNE_PAUSE_CHANGES = _QUERIES["prune_pause_changes"]
PRUNE_CONFIG_VERSIONS = _QUERIES["prune_config_versions"]
PRUNE_REJECTED_JOBS = _QUERIES["prune_rejected_jobs"]
FIRST_REJECTED_JOB_BEYOND = _QUERIES["first_rejected_job_beyond"]
PRUNE_REJECTED_JOBS_FROM = _QUERIES["prune_rejected_jobs_from"]
FINISHED_JOB_CUTOFFS = _QUERIES["finished_job_cutoffs"]
PRUNE_FINISHED_JOBS = _QUERIES["prune_finished_jobs"]

# The dashboard's queue (GET /dashboard/queue), in one READ_SNAPSHOT
WITHOUT_JIT = _QUERIES["without_jit"]
UNFINISHED_BOUNDS = _QUERIES["unfinished_bounds"]
QUEUE_STATES = _QUERIES["queue_states"]
QUEUE_DEPENDENCIES = _QUERIES["queue_dependencies"]

# GET /metrics's queue gauges, across users (janus/db/queue_depth.py)
LOCAL_STATEMENT_TIMEOUT = _QUERIES["local_statement_timeout"]
READ_TIMEOUTS = _QUERIES["read_timeouts"]
ONE_READ_AT_A_TIME = _QUERIES["one_read_at_a_time"]
UNFINISHED_BOUNDS_OF_ALL = _QUERIES["unfinished_bounds_of_all"]
QUEUE_DEPTH = _QUERIES["queue_depth"]

# The partitions of jobs (janus maintain, GET /metrics)
JOBS_PARTITIONS = _QUERIES["jobs_partitions"]
ADD_JOBS_PARTITION = _QUERIES["add_jobs_partition"]
DROP_JOBS_PARTITION = _QUERIES["drop_jobs_partition"]
UNFINISHED_IN_PARTITION = _QUERIES["unfinished_in_partition"]
LOCAL_LOCK_TIMEOUT = _QUERIES["local_lock_timeout"]
MARK_UNFINISHED_FROM = _QUERIES["mark_unfinished_from"]
