"""Request bodies for the job routes, named as the seed API's examples name theirs.

`job`, `single` and `batch` build the bodies the contract tests send; `plain_job`, `body_with`
and `valid_body_for` the valid bodies the property tests change one field of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.support.app import SINGLE_ROUTES
from tests.support.seed import SEED_BATCH_NAME, SEED_TENANT


def job(
    priority: int = 5,
    dependencies: dict[str, int] | None = None,
    tenant_id: str = SEED_TENANT,
    **extra: Any,
) -> dict[str, Any]:
    """One job of a batch body."""
    body: dict[str, Any] = {"tenant_id": tenant_id, "priority": priority, **extra}
    if dependencies is not None:
        body["dependencies"] = dependencies
    return body


def single(
    priority: int = 5,
    dependencies: dict[str, int] | None = None,
    batch_name: str = SEED_BATCH_NAME,
    **extra: Any,
) -> dict[str, Any]:
    """A single-job body."""
    return {"batch_name": batch_name, **job(priority, dependencies, **extra)}


def batch(*jobs: dict[str, Any], batch_name: str = SEED_BATCH_NAME) -> dict[str, Any]:
    """A batch body."""
    return {"batch_name": batch_name, "jobs": list(jobs)}


def valid_body_for(path: str, jobs: Sequence[dict[str, Any]], batch_name: str) -> dict[str, Any]:
    """The body of `path` for `jobs` (exactly one for a single-job route)."""
    if path in SINGLE_ROUTES:
        [only] = jobs
        return {"batch_name": batch_name, **only}
    return {"batch_name": batch_name, "jobs": list(jobs)}


def plain_job(**fields: Any) -> dict[str, Any]:
    """One valid job, with `fields` replaced."""
    return {
        "tenant_id": SEED_TENANT,
        "priority": 5,
        "dependencies": {"openai": 1},
        "payload": {"k": "v"},
        **fields,
    }


def body_with(path: str, job_index: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid body for `path` whose job `job_index` has `fields` replaced.

    A single-job route has one job, and `batch_name` is always the body's own.
    """
    top = {key: fields.pop(key) for key in list(fields) if key == "batch_name"}
    if path in SINGLE_ROUTES:
        return {"batch_name": SEED_BATCH_NAME, **plain_job(**fields), **top}
    jobs = [plain_job(**fields) if n == job_index else plain_job() for n in range(3)]
    return {"batch_name": SEED_BATCH_NAME, "jobs": jobs, **top}
