"""The twin's Falcon app: read the body, check its shape, run one statement, answer.

POST /jobs takes one job (a JSON object) and POST /jobs/batch a body whose "jobs" is a list;
each runs one `SELECT` of twin.admit() or twin.admit_batch() (twin.sql) on an autocommit
connection of the pool, so the statement is its own transaction. The answers have the shape
of Janus's: a single job is 202 when accepted and 429 when rejected, with job_id, status and
reason; a batch is 200 with its totals and each job's decision in request order. X-User-ID
and every field but a job's `dependencies` are ignored.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import falcon

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

# The one bucket every job of the twin is decided against (bench/twin/database.py makes it).
BUCKET = "bench"

ADMIT = "SELECT job_id::text, status, reason FROM twin.admit(%(bucket)s, %(job)s::json)"
ADMIT_BATCH = (
    "SELECT job_id::text, status, reason FROM twin.admit_batch(%(bucket)s, %(jobs)s::json)"
)


def _decision(row: tuple[str, str, str]) -> dict[str, str]:
    job_id, status, reason = row
    return {"job_id": job_id, "status": status, "reason": reason}


class SingleJobResource:
    """One job: 202 when accepted, 429 when rejected."""

    def __init__(self, pool: ConnectionPool, bucket: str) -> None:
        self._pool = pool
        self._bucket = bucket

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Decide one job."""
        job = req.get_media()
        if not isinstance(job, dict):
            raise falcon.HTTPBadRequest(description="the body must be a JSON object")
        with self._pool.connection() as conn:
            row = conn.execute(ADMIT, {"bucket": self._bucket, "job": json.dumps(job)}).fetchone()
        assert row is not None
        resp.status = 202 if row[1] == "Accepted" else 429
        resp.media = _decision(row)


class BatchResource:
    """A partial batch: each job decided in request order, 200 with the totals and decisions."""

    def __init__(self, pool: ConnectionPool, bucket: str) -> None:
        self._pool = pool
        self._bucket = bucket

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Decide every job of the batch."""
        body = req.get_media()
        if not isinstance(body, dict) or not isinstance(body.get("jobs"), list):
            raise falcon.HTTPBadRequest(description='the body must be an object with a "jobs" list')
        with self._pool.connection() as conn:
            rows = conn.execute(
                ADMIT_BATCH, {"bucket": self._bucket, "jobs": json.dumps(body["jobs"])}
            ).fetchall()
        results = [_decision(row) for row in rows]
        accepted = sum(result["status"] == "Accepted" for result in results)
        resp.media = {
            "total": len(results),
            "accepted": accepted,
            "rejected": len(results) - accepted,
            "results": results,
        }


class HealthResource:
    """GET /health: what the bench waits for before it starts; no database involved."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Report liveness."""
        resp.media = {"status": "ok"}


def create_app(pool: ConnectionPool, bucket: str = BUCKET) -> falcon.App:
    """The twin's routes, deciding against `bucket` on connections of `pool`."""
    app = falcon.App()
    app.add_route("/health", HealthResource())
    app.add_route("/jobs", SingleJobResource(pool, bucket))
    app.add_route("/jobs/batch", BatchResource(pool, bucket))
    return app
