"""Jobs become a queue: states, leases, results, settled costs; configs gain max_attempts and
retention_days; the jobs primary key becomes (user_id, job_id).

Revision ID: 0006
Revises: 0005

An accepted job now has a `state`: queued -> running (leased to a worker by claim_jobs())
-> completed, back to queued after a failure or an expired lease, or failed once it has used
its config's max_attempts. Rejected jobs have none (NULL). Accepted jobs stored before this
migration were never handed to anyone through Janus, so they enter the queue as queued.

The primary key becomes (user_id, job_id), as the contract asks of every table: user_id
leads every key, so a later distribution by user keeps a user's jobs, and so a claim, on one
machine. Every statement on jobs filters by user_id.

Indexes, the new primary key's included, are built CONCURRENTLY, so a deploy on a large table
does not block admissions while they are built (the backfill of `state` and the new CHECKs
still read the table once, under the migration's lock):
- jobs_queued (user_id, priority DESC, created_at, job_id) WHERE state = 'queued': what a
  claim reads, in the order it wants. Only queued jobs are in it, so its size follows the
  backlog, not the history, and a claim stays flat however many finished jobs are kept.
- jobs_leased (user_id, lease_expires_at) WHERE state = 'running': the expired leases a
  claim takes back; as small as the number of jobs being worked on.
- jobs_finished (user_id, finished_at) WHERE state IN ('completed', 'failed'): what
  `janus prune` deletes past the config's retention_days, oldest first, in chunks.

Autovacuum: every job is inserted once and updated two or three times within minutes
(claimed, then completed), so the table churns dead tuples, and the queue's partial indexes
collect dead entries that every claim would step over. The defaults vacuum a table once 20%
of it is dead, which on a table of millions of kept jobs means hours of bloat in the hot
part. Vacuuming at 1% dead (and analysing at 2% changed, so the planner keeps seeing a small
queued set as small), with no cost delay, keeps the hot part compact; inserts also trigger a
vacuum (at 5%) so the visibility map stays current for index-only reads.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NEW_FUNCTIONS = [
    "report_upstream_throttled",
    "settle_costs",
    "claim_jobs",
    "heartbeat_job",
    "finish_jobs",
]


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE configs
            -- Claims a job gets: after this many, a failure or an expired lease fails it.
            ADD COLUMN max_attempts integer NOT NULL DEFAULT 3
                CHECK (max_attempts BETWEEN 1 AND 100),
            -- Days a completed or failed job is kept before `janus prune` deletes it.
            ADD COLUMN retention_days integer NOT NULL DEFAULT 7
                CHECK (retention_days BETWEEN 1 AND 3650);

        ALTER TABLE jobs
            ADD COLUMN state text CHECK (state IN ('queued', 'running', 'completed', 'failed')),
            -- How many times the job was claimed: the current (or last) attempt's number.
            ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            -- The current lease, while running; every lease call must present the token.
            ADD COLUMN lease_token uuid,
            ADD COLUMN lease_expires_at timestamptz,
            -- json, as the payload: the worker's result is kept exactly as sent.
            ADD COLUMN result json,
            ADD COLUMN error text,
            -- The sum of the real costs workers reported, {dependency: tokens}, and when the
            -- last report was settled against the buckets.
            ADD COLUMN actual_costs jsonb,
            ADD COLUMN settled_at timestamptz,
            -- When the job became completed or failed (retention counts from it).
            ADD COLUMN finished_at timestamptz;

        UPDATE jobs SET state = 'queued' WHERE status = 'Accepted';

        ALTER TABLE jobs
            ADD CONSTRAINT jobs_state_only_when_accepted
                CHECK ((state IS NOT NULL) = (status = 'Accepted')),
            ADD CONSTRAINT jobs_lease_only_when_running
                CHECK ((state IS NOT DISTINCT FROM 'running')
                       = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
            SET (autovacuum_vacuum_scale_factor = 0.01,
                 autovacuum_analyze_scale_factor = 0.02,
                 autovacuum_vacuum_insert_scale_factor = 0.05,
                 autovacuum_vacuum_cost_delay = 0);

        -- New parameters (max_attempts, retention_days): CREATE OR REPLACE cannot add them.
        DROP FUNCTION activate_config(uuid, boolean, smallint, numeric, text, json);
        """
    )
    execute_sql_file("0006_activate_config.sql")
    execute_sql_file("0006_admit_jobs.sql")
    for name in NEW_FUNCTIONS:
        execute_sql_file(f"0006_{name}.sql")
    with op.get_context().autocommit_block():
        # The new primary key's index, built without blocking; swapped in below.
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS jobs_user_job_key"
            " ON jobs (user_id, job_id)"
        )
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_queued"
            " ON jobs (user_id, priority DESC, created_at, job_id) WHERE state = 'queued'"
        )
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_leased"
            " ON jobs (user_id, lease_expires_at) WHERE state = 'running'"
        )
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_finished"
            " ON jobs (user_id, finished_at) WHERE state IN ('completed', 'failed')"
        )
    # A new transaction: the index is built, so the swap only takes a brief lock (the index
    # is renamed jobs_pkey).
    op.execute(
        "ALTER TABLE jobs DROP CONSTRAINT jobs_pkey,"
        " ADD CONSTRAINT jobs_pkey PRIMARY KEY USING INDEX jobs_user_job_key"
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS jobs_queued;
        DROP INDEX IF EXISTS jobs_leased;
        DROP INDEX IF EXISTS jobs_finished;
        DROP FUNCTION finish_jobs(uuid, uuid[], uuid[], boolean[], json[], text[], boolean[],
                                  jsonb[], jsonb[]);
        DROP FUNCTION heartbeat_job(uuid, uuid, uuid, integer);
        DROP FUNCTION claim_jobs(uuid, integer, integer, text, text, text[]);
        DROP FUNCTION settle_costs(uuid, jsonb, jsonb, jsonb, timestamptz);
        DROP FUNCTION report_upstream_throttled(uuid, text[], timestamptz);
        DROP FUNCTION activate_config(uuid, boolean, smallint, numeric, text, json, integer,
                                      integer);
        """
    )
    # The functions this migration replaced: 0003's activate_config(), 0005's admit_jobs().
    execute_sql_file("0003_activate_config.sql")
    execute_sql_file("0005_admit_jobs.sql")
    op.execute(
        """
        ALTER TABLE jobs DROP CONSTRAINT jobs_pkey;
        ALTER TABLE jobs ADD CONSTRAINT jobs_pkey PRIMARY KEY (job_id);
        ALTER TABLE jobs
            RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor,
                   autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_cost_delay),
            DROP CONSTRAINT jobs_state_only_when_accepted,
            DROP CONSTRAINT jobs_lease_only_when_running,
            DROP COLUMN state, DROP COLUMN attempts, DROP COLUMN lease_token,
            DROP COLUMN lease_expires_at, DROP COLUMN result, DROP COLUMN error,
            DROP COLUMN actual_costs, DROP COLUMN settled_at, DROP COLUMN finished_at;
        ALTER TABLE configs DROP COLUMN max_attempts, DROP COLUMN retention_days;
        """
    )
