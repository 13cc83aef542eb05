"""Named SQL, one constant per statement, with %(name)s placeholders only."""

from __future__ import annotations

# The whole decision in one statement: see alembic/versions/0002_admit_jobs.py. Run in READ
# COMMITTED for single jobs and partial batches (bucket row locks serialise them) and in
# SERIALIZABLE for atomic batches, as the contract asks.
ADMIT_JOBS = """
SELECT job_id, status, reason, retry_after
  FROM admit_jobs(%(user_id)s, %(source)s, %(batch_name)s, %(jobs)s::json, %(atomic)s)
"""

HEALTH_CHECK = "SELECT 1"
