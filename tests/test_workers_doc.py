"""docs/workers.md's hand-written worker loop, run exactly as printed against the service
under gunicorn."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests

from tests.conftest import REPO_ROOT, GunicornServer
from tests.support.factories import bucket_tokens, user_with_config

pytestmark = pytest.mark.concurrency

DOC = REPO_ROOT / "docs" / "workers.md"
JOBS = 20
FAILING = 2
# Told "slow down, 1 s" by the upstream on their first attempt: they wait, then complete.
BUSY = 2
COST = 4
DRAIN_TIMEOUT_S = 60


def worker_code() -> str:
    """The one Python block of docs/workers.md's "What the runtime does for you"."""
    section = DOC.read_text(encoding="utf-8").split("\n## What the runtime does for you\n")[1]
    blocks: list[str] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    [code] = blocks
    return code


def test_the_documented_worker_loop_drains_the_queue_and_settles_real_costs(
    gunicorn_server: GunicornServer, db: psycopg.Connection, tmp_path: Path
) -> None:
    user: UUID = user_with_config(db, {"openai": {"capacity": 1000, "refill_per_second": 0}})
    jobs: list[dict[str, Any]] = (
        [
            {"tenant_id": "t", "priority": 5, "dependencies": {"openai": COST}, "payload": {"n": n}}
            for n in range(JOBS - FAILING - BUSY)
        ]
        + [
            {
                "tenant_id": "t",
                "priority": 5,
                "dependencies": {"openai": COST},
                "payload": {"busy": 1},
            }
            for _ in range(BUSY)
        ]
        + [
            {
                "tenant_id": "t",
                "priority": 5,
                "dependencies": {"openai": COST},
                "payload": {"fail": True},
            }
            for _ in range(FAILING)
        ]
    )
    answer = requests.post(
        f"{gunicorn_server.url}/system/jobs/batch",
        json={"batch_name": "doc", "jobs": jobs},
        headers={"X-User-ID": str(user)},
        timeout=30,
    )
    assert answer.json()["accepted"] == JOBS, answer.text

    script = tmp_path / "worker.py"
    script.write_text(worker_code(), encoding="utf-8")
    env = {**os.environ, "JANUS_URL": gunicorn_server.url, "JANUS_USER_ID": str(user)}
    env.pop("JANUS_SERVICE_TOKEN", None)
    worker = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and worker.poll() is None:
            row = db.execute(
                "SELECT count(*) FROM jobs WHERE user_id = %s"
                " AND state IN ('queued', 'waiting', 'running')",
                [user],
            ).fetchone()
            if row == (0,):
                break
            time.sleep(0.2)
    finally:
        worker.kill()
        _, errors = worker.communicate()
    assert worker.returncode == -9, errors.decode()  # killed while polling, not crashed

    states = db.execute(
        "SELECT state, attempts, result::text IS NOT NULL, count(*) FROM jobs"
        " WHERE user_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2",
        [user],
    ).fetchall()
    assert states == [
        ("completed", 1, True, JOBS - FAILING - BUSY),
        ("completed", 2, True, BUSY),
        ("failed", 3, False, FAILING),
    ]
    # Every attempt paid its estimate when it was handed out. Completed attempts reported half
    # of it (2 of 4 given back); failed ones reported none, so the busy jobs paid a whole first
    # attempt and the failing ones three.
    assert bucket_tokens(db, user, "openai") == (
        1000 - (JOBS - FAILING - BUSY) * 2 - BUSY * (COST + 2) - FAILING * 3 * COST
    )
    assert b"Traceback" not in errors, errors.decode()
