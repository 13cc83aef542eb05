"""Every kind of request, in any order, on one pooled connection: none trips over psycopg's
prepared statements.

psycopg forgets its prepared statements whenever it sees a ROLLBACK. Seen in a pipeline, it
deallocated them on the server only after the next statement, which it had prepared
meanwhile: that statement's next use failed with "prepared statement does not exist" (a 500).
A quote ends with a rollback, as does any failed atomic batch; janus/db/transactions.py now
rolls back with conn.rollback(), which deallocates at once.
"""

from __future__ import annotations

import itertools
from uuid import UUID, uuid4

import pytest

from janus.settings import Settings
from tests.support.app import post_json, serve_app

JOB = {"tenant_id": "t", "priority": 5, "dependencies": {"openai": 1}}
# (path, body, whose) -> the status wanted: the open user's, or an unknown user's (401).
REQUESTS = {
    "single": ("/dashboard/jobs", {"batch_name": "b", **JOB}, 202),
    "partial": ("/dashboard/jobs/batch", {"batch_name": "b", "jobs": [JOB, JOB]}, 200),
    "atomic": ("/dashboard/jobs/batch/atomic", {"batch_name": "b", "jobs": [JOB, JOB]}, 202),
    "quote": ("/dashboard/jobs/quote", {"batch_name": "b", **JOB}, 200),
    "atomic quote": (
        "/dashboard/jobs/quote",
        {"batch_name": "b", "jobs": [JOB], "atomic": True},
        200,
    ),
}


@pytest.mark.parametrize("first", sorted(REQUESTS))
def test_any_request_after_any_failed_or_rolled_back_one_is_answered(
    database_url: str, open_user: UUID, first: str
) -> None:
    settings = Settings(database_url=database_url, pool_size=1)
    with serve_app(settings) as client:
        # Each kind, failing (unknown user) and succeeding, after `first` and after each
        # other, several times over: psycopg prepares a statement on its fifth use.
        order = [first, *sorted(REQUESTS)] * 6
        for kind, known in itertools.product(order, (False, True)):
            path, body, wanted = REQUESTS[kind]
            user = open_user if known else uuid4()
            answer = post_json(client, path, user, body)
            assert answer.status_code == (wanted if known else 401), (kind, known, answer.text)
