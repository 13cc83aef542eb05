"""Idempotency keys: a repeated accepted request is answered from memory, not decided again.

Revision ID: 0004
Revises: 0003

admit_jobs_once() wraps admit_jobs(). With a key it first takes a transaction-scoped advisory
lock on (user, key) without waiting: a duplicate that arrives while the first is still being
decided fails at once with J0K09 (409). A remembered key answers from idempotency_keys
(J0K22, 422, when the request differs). Otherwise the jobs are decided and, when at least one
was accepted, the decisions are remembered. The primary key of idempotency_keys, not the
advisory lock, is what guarantees one decision per key: a writer that finds the key taken
raises 40001, and the caller's retry loop then finds the remembered answer.
"""

from __future__ import annotations

from sqlfiles import execute_sql_file

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
CREATE TABLE idempotency_keys (
    user_id         uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- sha256 of the route and the request body, to tell a replay from a different request.
    request_hash    bytea NOT NULL,
    -- [{"job_id", "status", "reason"}, ...] in request order, as first answered.
    decisions       jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
        """
    )
    execute_sql_file("0004_admit_jobs_once.sql")


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION admit_jobs_once(
            uuid, text, text, text[], smallint[], jsonb[], json[], boolean, text, bytea);
        DROP TABLE idempotency_keys;
        """
    )
