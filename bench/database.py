"""The bench's database: a throwaway embedded PostgreSQL (or DATABASE_URL), migrated, with the
users and configs of every scenario, and what the report says about the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from bench import procstat
from bench.common import BIN, REPO_ROOT, BenchError, say
from bench.scenarios import BATCH_NAME, JOB, QUEUE_FILL_BATCH, Scenario
from devtools import localdb
from devtools.ports import free_port
from janus.admission import AdmissionRequest, JobRequest, Mode, Source
from janus.db import accounts
from janus.db.jobs import admission_statement
from janus.schemas.requests import ConfigSchema
from janus.settings import normalize_database_url

# The soak's pre-fill: rows per INSERT (and transaction).
PREFILL_CHUNK = 250_000


@contextlib.contextmanager
def database(workdir: Path) -> Iterator[tuple[str, str]]:
    """(URL, where): DATABASE_URL when set, else an embedded server in `workdir`, stopped after."""
    given = os.environ.get("DATABASE_URL", "").strip()
    if given:
        yield normalize_database_url(given), "DATABASE_URL"
        return
    data_dir = workdir / "pgdata"
    say("starting a throwaway embedded PostgreSQL ...")
    try:
        yield localdb.ensure_running(data_dir, free_port()), "embedded, throwaway"
    finally:
        localdb.stop(data_dir)


def migrate(database_url: str) -> None:
    """`alembic upgrade head`, as the Procfile's release line runs it."""
    completed = subprocess.run(
        [str(BIN / "alembic"), "upgrade", "head"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"alembic upgrade head failed:\n{completed.stdout}{completed.stderr}")


def server_facts(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Version and the settings that decide what a commit costs."""
    names = ["server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections"]
    rows = conn.execute(
        "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", [names]
    ).fetchall()
    return {name: value for name, value in rows}


def postmaster_pid(conn: psycopg.Connection[Any]) -> int | None:
    """The server's postmaster, when it runs on this machine (so its CPU can be read)."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    parent = procstat.parent_pid(backend[0]) if backend else None
    if parent is None or procstat.command_name(parent) != "postgres":
        return None
    return parent


def provision(database_url: str, scenarios: Sequence[Scenario]) -> dict[str, list[UUID]]:
    """Each scenario's users with its config, made as `janus user create` / `config set` do."""
    users: dict[str, list[UUID]] = {}
    with accounts.operator_transaction(database_url) as conn:
        for scenario in scenarios:
            if scenario.config is None:
                continue
            config = ConfigSchema().load(scenario.config)
            ids = []
            for number in range(1, scenario.users + 1):
                user_id = accounts.create_user(conn, f"bench {scenario.name} {number}")
                accounts.activate_config(conn, user_id, config)
                if scenario.drain:
                    drain(conn, user_id, config)
                ids.append(user_id)
            users[scenario.name] = ids
    return users


def drain(conn: psycopg.Connection[Any], user_id: UUID, config: Mapping[str, Any]) -> None:
    """Admit one top-priority job that takes every bucket's whole capacity, and check it did."""
    drain_job = JobRequest(
        tenant_id="bench-drain",
        priority=10,
        dependencies={name: limit["capacity"] for name, limit in config["dependencies"].items()},
    )
    request = AdmissionRequest(
        user_id=user_id,
        source=Source.SYSTEM,
        batch_name="bench-drain",
        jobs=(drain_job,),
        mode=Mode.SINGLE,
    )
    conn.execute(*admission_statement([request]))
    row = conn.execute(
        "SELECT max(tokens_now) FROM token_buckets_now WHERE user_id = %s", [user_id]
    ).fetchone()
    if row is None or row[0] is None or row[0] >= 1:
        raise BenchError(f"draining the buckets of user {user_id} left {row and row[0]} tokens")


def queued_jobs(conn: psycopg.Connection[Any], user_ids: Sequence[UUID]) -> int:
    """Jobs of these users waiting in the queue (state queued)."""
    row = conn.execute(
        "SELECT count(*) FROM jobs WHERE user_id = ANY(%s) AND state = 'queued'", [list(user_ids)]
    ).fetchone()
    return int(row[0]) if row else 0


def bench_job() -> JobRequest:
    """The bench's JOB as the service reads it from a request body (the payload as its text)."""
    return JobRequest(
        tenant_id=JOB["tenant_id"],
        priority=JOB["priority"],
        dependencies=JOB["dependencies"],
        payload=json.dumps(JOB["payload"]),
    )


def fill_queue(conn: psycopg.Connection[Any], user_id: UUID, jobs: int) -> None:
    """Admit `jobs` more of the bench's JOB for `user_id`, QUEUE_FILL_BATCH a call of
    admit_jobs_once (a partial batch, as POST /system/jobs/batch sends it), each committed.
    """
    job = bench_job()
    before = queued_jobs(conn, [user_id])
    left = jobs
    while left > 0:
        count = min(left, QUEUE_FILL_BATCH)
        request = AdmissionRequest(
            user_id=user_id,
            source=Source.SYSTEM,
            batch_name=BATCH_NAME,
            jobs=(job,) * count,
            mode=Mode.PARTIAL,
        )
        with conn.transaction():
            conn.execute(*admission_statement([request]))
        left -= count
    after = queued_jobs(conn, [user_id])
    if after - before < jobs:
        raise BenchError(f"filling the queue of user {user_id} queued {after - before} of {jobs}")


def jobs_rows(conn: psycopg.Connection[Any]) -> int:
    """Rows in jobs, every user's."""
    row = conn.execute("SELECT count(*) FROM jobs").fetchone()
    return int(row[0]) if row else 0


# Copies of one admitted job, each with an id of its own from new_job_id() (as admit_jobs()
# gives) and created_at of this statement's transaction (the column's default, as admission
# leaves it): every other column as admission stored it, so the copies have its values and
# their sizes, in the same indexes.
_COPY_ADMITTED_JOB = """
INSERT INTO jobs (job_id, user_id, source, batch_name, tenant_id, priority, dependencies,
                  payload, status, reason, config_version, retry_after, state, attempts,
                  lease_token, lease_expires_at, result, error, actual_costs, settled_at,
                  finished_at, shadow_status, shadow_reason, reason_code, shadow_reason_code,
                  run_at, in_line_at, expires_at, estimated_start, paid)
SELECT new_job_id(), user_id, source, batch_name, tenant_id, priority, dependencies,
       payload, status, reason, config_version, retry_after, state, attempts,
       lease_token, lease_expires_at, result, error, actual_costs, settled_at,
       finished_at, shadow_status, shadow_reason, reason_code, shadow_reason_code,
       run_at, in_line_at, expires_at, estimated_start, paid
  FROM jobs CROSS JOIN generate_series(1, %(copies)s)
 WHERE user_id = %(user_id)s AND job_id = %(job_id)s
"""


def prefill_jobs(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    source: Source,
    rows: int,
    *,
    chunk: int = PREFILL_CHUNK,
) -> int:
    """Add jobs of `user_id` until jobs holds `rows` rows; how many were added.

    One of the bench's JOB is admitted through admit_jobs_once as a partial batch from
    `source` (the soak's route), then copied `chunk` rows per INSERT, each its own
    transaction: admitting millions of jobs one call at a time would take an hour.
    """
    missing = rows - jobs_rows(conn)
    if missing <= 0:
        return 0
    request = AdmissionRequest(
        user_id=user_id,
        source=source,
        batch_name=BATCH_NAME,
        jobs=(bench_job(),),
        mode=Mode.PARTIAL,
    )
    with conn.transaction():
        # Columns as queries.ADMIT_JOB names them: request, job_id, status, ...
        admitted = conn.execute(*admission_statement([request])).fetchone()
    if admitted is None or admitted[2] != "Accepted":
        raise BenchError(f"pre-filling jobs: the job to copy was not accepted: {admitted}")
    left = missing - 1
    while left > 0:
        copies = min(left, chunk)
        with conn.transaction():
            conn.execute(
                _COPY_ADMITTED_JOB, {"copies": copies, "user_id": user_id, "job_id": admitted[1]}
            )
        left -= copies
    return missing
