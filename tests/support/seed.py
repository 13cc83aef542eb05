"""The seed API's example requests, verbatim as docs/api.md shows them: the one copy.

Tests send them as they are; a test that needs a variant copies one (`{**SEED_SINGLE, ...}`)
rather than changing it. Every body the tests build takes its names from here too.
"""

from __future__ import annotations

from typing import Any

# The single-job example: openai 2, stripe 1, priority 8.
SEED_SINGLE: dict[str, Any] = {
    "batch_name": "my-batch",
    "tenant_id": "tenant-abc",
    "priority": 8,
    "dependencies": {"openai": 2, "stripe": 1},
    "payload": {"custom_key": "custom_value"},
}
# The batch example, sent to a partial or an atomic batch route.
SEED_BATCH: dict[str, Any] = {
    "batch_name": "my-batch",
    "jobs": [
        {"tenant_id": "tenant-abc", "priority": 8, "dependencies": {"openai": 1}},
        {"tenant_id": "tenant-xyz", "priority": 3, "dependencies": {"stripe": 5}},
    ],
}

SEED_BATCH_NAME: str = SEED_SINGLE["batch_name"]
SEED_TENANT: str = SEED_SINGLE["tenant_id"]
