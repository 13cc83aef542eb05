"""schemathesis against the real service: every operation of the OpenAPI document, fuzzed under
gunicorn over a real Postgres, must answer as the document says.

One test per operation. Each starts gunicorn (with a service token, so both of the document's
credentials are in play) on a database of its own, where a user is seeded with a config.
schemathesis sends the operation's examples, the boundary cases of its schemas (its coverage
phase), then drawn cases, valid and invalid, with the user's X-User-ID and the service token
on all but the cases that leave a credential out on purpose. Every answer is checked: no 5xx,
a documented status, content type and headers, and a body that matches its schema.
start_gunicorn then fails the test if the service logged an error or a traceback.

Lease calls and job reads on random job ids only ever reach 404: most of them are given a job
leased just before instead, so heartbeat, complete, fail and GET /dashboard/jobs/{job_id} are
fuzzed where they do their work.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, settings

from janus.routes import openapi_document, routes
from tests.conftest import GunicornServer, StartGunicorn
from tests.support.factories import activate_config, create_user

TOKEN = "conformance-" + "t" * 32
USER_ID = UUID("5eed0000-0000-4000-8000-000000000001")
CREDENTIALS = {"X-User-ID": str(USER_ID), "Authorization": f"Bearer {TOKEN}"}
# Small, so that a batch's boundary cases (its largest) stay quick to send and decide.
MAX_BATCH_JOBS = 10
# Cases drawn per operation after its examples and boundary cases; derandomized, so the same
# ones every run.
MAX_EXAMPLES = 30
# What every answer is checked for; schemathesis's other checks are off.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
LEASE_CALLS = (
    "/system/jobs/{job_id}/heartbeat",
    "/system/jobs/{job_id}/complete",
    "/system/jobs/{job_id}/fail",
)
COMPLETE_MANY = "/system/jobs/complete"
JOB_RECORD = "/dashboard/jobs/{job_id}"

# The document exactly as the service below serves it (tests/test_openapi.py holds GET
# /openapi.json to the route table), with the seeded user's credentials.
schema = schemathesis.openapi.from_dict(
    openapi_document(routes(MAX_BATCH_JOBS), service_token=True),
    config=schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "deterministic": True},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "auth": {
                "openapi": {
                    "userId": {"api_key": str(USER_ID)},
                    "serviceToken": {"bearer": TOKEN},
                }
            },
        }
    ),
)


@dataclass(frozen=True)
class Janus:
    """The service under test, serving the seeded user."""

    server: GunicornServer

    def leased_job(self) -> dict[str, Any]:
        """A job of the user's, accepted and claimed just now: its id and lease token."""
        job: dict[str, Any] = {"batch_name": "leased", "tenant_id": "t", "priority": 10}
        submitted = requests.post(f"{self.server.url}/system/jobs", json=job, headers=CREDENTIALS)
        assert submitted.status_code == 202, submitted.text
        claimed = requests.post(
            f"{self.server.url}/system/jobs/claim",
            json={"batch_name": "leased", "limit": 1},
            headers=CREDENTIALS,
        )
        assert claimed.status_code == 200, claimed.text
        [leased] = claimed.json()["jobs"]
        return {"job_id": leased["job_id"], "lease_token": leased["lease_token"]}


@pytest.fixture
def janus(start_gunicorn: StartGunicorn, db: psycopg.Connection) -> Janus:
    """gunicorn with a service token, and the user USER_ID with a config that admits most jobs.

    openai's bucket is small and refills, so 429 with Retry-After is in play; any other
    dependency is admitted. The cases may PUT other configs (pausing it, say) as they go.
    """
    create_user(db, user_id=USER_ID)
    activate_config(
        db,
        USER_ID,
        {
            "openai": {"capacity": 20, "refill_per_second": 1},
            "stripe": {"capacity": 10**12, "refill_per_second": 0},
        },
        unknown_dependencies="allow",
    )
    server = start_gunicorn(
        workers=1,
        env={"JANUS_SERVICE_TOKEN": TOKEN, "JANUS_MAX_BATCH_JOBS": str(MAX_BATCH_JOBS)},
    )
    return Janus(server)


def _most(case: schemathesis.Case) -> bool:
    """True for about three cases in four, the same ones every run."""
    return zlib.crc32(repr((case.path_parameters, case.body)).encode()) % 4 != 0


def _lease_live_jobs(case: schemathesis.Case, janus: Janus) -> None:
    """Point most lease calls and job reads made as the user at a job leased just now."""
    headers: Mapping[str, str] = case.headers or {}
    if not _most(case) or headers.get("X-User-ID") != str(USER_ID):
        return
    if case.operation.path == JOB_RECORD:
        leased = janus.leased_job()
        case.path_parameters = {**(case.path_parameters or {}), "job_id": leased["job_id"]}
    elif case.operation.path in LEASE_CALLS and isinstance(case.body, dict):
        leased = janus.leased_job()
        case.path_parameters = {**(case.path_parameters or {}), "job_id": leased["job_id"]}
        case.body["lease_token"] = leased["lease_token"]
    elif case.operation.path == COMPLETE_MANY and isinstance(case.body, dict):
        items = case.body.get("jobs")
        if isinstance(items, list) and items and isinstance(items[0], dict):
            items[0].update(janus.leased_job())


# The routes below /dashboard/jobs/ that are not a job: a job id that spells one of them
# (`quote`, or `batch/atomic`, which the service decodes from batch%2Fatomic) reaches that
# route, which answers GET 405 as it should. Such a case tests that route, not the job read.
_JOB_SIBLINGS = {
    path
    for path in openapi_document(routes(MAX_BATCH_JOBS), service_token=True)["paths"]
    if path.startswith("/dashboard/jobs/") and "{" not in path
}


def _reaches_another_route(case: schemathesis.Case) -> bool:
    job_id = (case.path_parameters or {}).get("job_id")
    return case.operation.path == JOB_RECORD and f"/dashboard/jobs/{job_id}" in _JOB_SIBLINGS


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_service_answers_as_its_document_says(case: schemathesis.Case, janus: Janus) -> None:
    assume(not _reaches_another_route(case))
    _lease_live_jobs(case, janus)
    case.call_and_validate(base_url=janus.server.url, timeout=30)
