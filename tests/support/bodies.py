"""Request bodies for the job routes, named as the seed API's examples name theirs."""

from __future__ import annotations

from typing import Any

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
