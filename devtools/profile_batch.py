"""The web process's CPU per job of a partial batch, against a real Postgres, in process.

    DATABASE_URL=postgresql://... python -m devtools.profile_batch [--calls N] [--profile]

The database must be migrated and hold USER_ID with a bucket `openai` that never runs dry
(see the module's SETUP). The time is the Python process's own (time.process_time), not the
database's; --profile prints cProfile's heaviest functions (by process time) instead, sorted
by SORT (tottime unless set) and LINES long (35 unless set).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time

from falcon import testing

from janus.app import create_app
from janus.db.pool import make_pool
from janus.settings import Settings

USER_ID = "00000000-0000-0000-0000-000000000001"
SETUP = f"""
INSERT INTO users (user_id, name) VALUES ('{USER_ID}', 'b');
SELECT activate_config('{USER_ID}', false, 1::smallint, 0::numeric, 'reject',
    '{{"openai": {{"capacity": 1000000000000, "refill_per_second": 0}}}}'::json, 3, 7,
    p_mode=>'enforce', p_tenant_share=>1::numeric, p_tenant_overrides=>'{{}}'::jsonb);
"""
JOB = {
    "tenant_id": "t",
    "priority": 5,
    "dependencies": {"openai": 1},
    "payload": {"prompt": "hello world", "n": 1},
}


def main() -> None:
    """Time (or profile) POST /system/jobs/batch of `--jobs` jobs, `--calls` times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    pool = make_pool(settings)
    pool.open(wait=True)
    client = testing.TestClient(create_app(settings, pool))
    body = json.dumps({"batch_name": "b", "jobs": [JOB] * args.jobs})
    headers = {"X-User-ID": USER_ID, "Content-Type": "application/json"}

    def call() -> None:
        result = client.simulate_post("/system/jobs/batch", body=body, headers=headers)
        assert result.status_code == 200, result.text

    for _ in range(20):
        call()
    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(args.calls):
            call()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
            int(os.environ.get("LINES", "35"))
        )
    else:
        started = time.process_time()
        for _ in range(args.calls):
            call()
        spent = time.process_time() - started
        print(f"{spent / (args.calls * args.jobs) * 1e6:.2f} us of CPU per job")
    pool.close()


if __name__ == "__main__":
    main()
