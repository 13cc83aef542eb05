"""What the deploy scenario (deploy.py) writes through the old release and checks at the end.

The users and their configs are made with the old release's CLI and API; the seeded jobs, one
in each state of the queue and a bulk of queued ones, through its API. At the end the new
release must serve those rows as the old one left them, and the database must hold every job
any release answered Accepted, each completion once.
"""

from __future__ import annotations

import datetime
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.faults import releases
from tests.faults.harness import Attempt, FaultPostgres, JobCall, Reply, send
from tests.faults.scenarios import ScenarioResult
from tests.faults.workers import WorkerLog

# Queued jobs of the seed user, in batches of SEED_BATCH: the rows a migration of `jobs` has
# to move while the old release serves. More than migration 0024 changes under one lock
# (its ONLINE_FROM_JOBS, 100,000), so that its online path is the one run, as in production.
# JANUS_DEPLOY_JOBS asks for another number (a million, to time a migration per million jobs).
SEED_BULK_JOBS = 110_000
SEED_BULK_VARIABLE = "JANUS_DEPLOY_JOBS"
SEED_BATCH = 1000
SEED_LEASE_S = 600


@dataclass(frozen=True)
class Seeded:
    """The seed user's jobs the old release wrote, one in each state."""

    user_id: str
    queued: str
    waiting: str
    completed: str
    running: str
    lease_token: str
    # Every job of the seed user answered Accepted, the above included.
    accepted: int


def _post(url: str, user_id: str, path: str, body: Any) -> Reply:
    reply = send(url, "POST", path, body=body, headers={"X-User-ID": user_id})
    if reply.status not in (200, 202):
        raise AssertionError(f"seeding: POST {path} answered {reply.kind}: {reply.body}")
    return reply


def _job(**fields: Any) -> dict[str, Any]:
    """A seed job's body (a batch's job; a single job's with `batch_name`)."""
    return {
        "tenant_id": "tenant-seed",
        "priority": 5,
        "dependencies": {"stripe": 1},
        "payload": {"seeded": True},
        **fields,
    }


def _claim_one(url: str, user_id: str, batch_name: str, lease_s: int) -> dict[str, Any]:
    body = {"limit": 1, "lease_seconds": lease_s, "batch_name": batch_name}
    jobs: list[dict[str, Any]] = _post(url, user_id, "/system/jobs/claim", body).body["jobs"]
    if len(jobs) != 1:
        raise AssertionError(f"claiming {batch_name}: {jobs}")
    return jobs[0]


def seed(url: str, user_id: str) -> Seeded:
    """Through the release at `url`: a job in every state, and SEED_BULK_JOBS queued ones."""
    bulk = int(os.environ.get(SEED_BULK_VARIABLE) or SEED_BULK_JOBS)
    ids = {}
    for name in ("running", "completed", "queued"):
        ids[name] = _post(url, user_id, "/system/jobs", _job(batch_name=f"seed-{name}")).body[
            "job_id"
        ]
    running = _claim_one(url, user_id, "seed-running", SEED_LEASE_S)
    completed = _claim_one(url, user_id, "seed-completed", 60)
    done = {"lease_token": completed["lease_token"], "result": {"seeded": True}}
    _post(url, user_id, f"/system/jobs/{ids['completed']}/complete", done)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    waiting = _post(
        url, user_id, "/system/jobs", _job(batch_name="seed-waiting", run_at=later.isoformat())
    )
    for start in range(0, bulk, SEED_BATCH):
        jobs = [_job() for _ in range(min(SEED_BATCH, bulk - start))]
        _post(
            url, user_id, "/system/jobs/batch", {"batch_name": f"seed-bulk-{start}", "jobs": jobs}
        )
    return Seeded(
        user_id=user_id,
        queued=ids["queued"],
        waiting=waiting.body["job_id"],
        completed=ids["completed"],
        running=ids["running"],
        lease_token=running["lease_token"],
        accepted=4 + bulk,
    )


class Audit:
    """The scenario's result, and the checks that fill it from the database."""

    def __init__(self, result: ScenarioResult, postgres: FaultPostgres) -> None:
        self.result = result
        self.postgres = postgres

    def note(self, message: str) -> None:
        """Record a measurement worth printing."""
        self.result.notes.append(message)

    def check(self, condition: bool, message: str) -> None:
        """Record `message` as a violation unless `condition` holds."""
        if not condition:
            self.result.violations.append(message)

    def make_users(
        self,
        release: releases.Release,
        url: str,
        log_path: Path,
        names: Sequence[str],
        buckets: Mapping[str, Mapping[str, float]],
    ) -> dict[str, str]:
        """Users made with `release`'s CLI, each with a config of `buckets` put through `url`."""
        users = {}
        for name in names:
            done = release.run(["janus", "user", "create", name], self.postgres.url, log_path, 60)
            users[name] = done.stdout.split()[-1]
            config = {"dependencies": {dep: dict(limit) for dep, limit in buckets.items()}}
            reply = send(
                url, "PUT", "/dashboard/config", body=config, headers={"X-User-ID": users[name]}
            )
            if reply.status != 200:
                raise AssertionError(f"config of {name}: {reply.kind} {reply.body}")
        return users

    def jobs(self, attempts: Sequence[Attempt], user_ids: Sequence[str]) -> None:
        """Every job answered Accepted is stored Accepted, every one answered Rejected is
        stored Rejected, and an atomic batch refused stored nothing."""
        with self.postgres.connect() as db:
            stored = {
                str(job_id): (str(user_id), batch_name, status)
                for job_id, user_id, batch_name, status in db.execute(
                    "SELECT job_id, user_id, batch_name, status FROM jobs"
                    " WHERE user_id = ANY(%s::uuid[])",
                    [list(user_ids)],
                )
            }
        names = Counter(batch_name for _, batch_name, _ in stored.values())
        found = lost = unstored_rejections = sunk_stored = 0
        for attempt in attempts:
            call = attempt.call
            assert isinstance(call, JobCall)
            if attempt.kind == "207":
                sunk_stored += names[call.batch_name]
            for job_id, status in _decisions(attempt):
                as_answered = stored.get(job_id) == (call.user_id, call.batch_name, status)
                if status == "Accepted":
                    found += as_answered
                    lost += not as_answered
                else:
                    unstored_rejections += not as_answered
        self.result.accepted_in_db = found
        self.result.lost_jobs = lost
        self.check(lost == 0, f"{lost} jobs answered Accepted are not stored as Accepted")
        self.check(
            unstored_rejections == 0,
            f"{unstored_rejections} jobs answered Rejected are not stored as Rejected",
        )
        self.check(sunk_stored == 0, f"{sunk_stored} jobs stored of atomic batches refused")

    def queue(self, log: WorkerLog, user_ids: Sequence[str]) -> None:
        """Each completion acknowledged once, stored under a lease a claim gave to that worker;
        every accepted job completed or still claimable."""
        with self.postgres.connect() as db:
            jobs = {
                str(job_id): (state, attempts, result)
                for job_id, state, attempts, result in db.execute(
                    "SELECT job_id, state, attempts, result FROM jobs"
                    " WHERE status = 'Accepted' AND user_id = ANY(%s::uuid[])",
                    [list(user_ids)],
                )
            }
        leases = {(lease.job_id, lease.attempt): lease for lease in log.leases}
        self.check(len(leases) == len(log.leases), "a job was leased twice at one attempt")
        acked = Counter(job_id for job_id, _ in log.acknowledged)
        twice = [job_id for job_id, count in acked.items() if count > 1]
        self.check(not twice, f"{len(twice)} jobs acknowledged completed twice: {twice[:3]}")
        wrong = []
        for job_id, worker in log.acknowledged:
            state, _, result = jobs.get(job_id, (None, None, None))
            if state != "completed" or not isinstance(result, dict) or result["worker"] != worker:
                wrong.append(f"{job_id} acknowledged to worker {worker}: {state} {result}")
        for job_id, (state, attempts, result) in jobs.items():
            if state != "completed":
                continue
            lease = leases.get((job_id, result["attempt"])) if isinstance(result, dict) else None
            if (
                lease is None
                or lease.lease_token != result["lease_token"]
                or lease.attempt != attempts
            ):
                wrong.append(f"{job_id} completed under a lease no claim gave: {result}")
        self.check(not wrong, f"{len(wrong)} completions do not match their lease: {wrong[:3]}")
        states = Counter(state for state, _, _ in jobs.values())
        self.note(f"load jobs by state: {dict(states)}; {len(acked)} completions acknowledged")
        self.check(
            set(states) <= {"completed", "queued", "running"},
            f"accepted jobs neither completed nor claimable: {dict(states)}",
        )

    def finite_bucket(self, user_ids: Sequence[str], dependency: str) -> None:
        """A bucket that never refills lost exactly what its accepted jobs cost."""
        with self.postgres.connect() as db:
            for user_id in user_ids:
                row = db.execute(
                    "SELECT capacity - tokens_now FROM token_buckets_now"
                    " WHERE user_id = %s AND dependency = %s",
                    [user_id, dependency],
                ).fetchone()
                spent = db.execute(
                    "SELECT coalesce(sum((dependencies ->> %s)::bigint), 0) FROM jobs"
                    " WHERE user_id = %s AND status = 'Accepted'",
                    [dependency, user_id],
                ).fetchone()
                assert row is not None and spent is not None
                gone, cost = Decimal(row[0]), Decimal(spent[0])
                self.check(
                    gone == cost,
                    f"{dependency} of {user_id}: {gone} tokens gone, its accepted jobs cost {cost}",
                )


def _decisions(attempt: Attempt) -> list[tuple[str, str]]:
    """(job_id, status) of each job the answer decided and said was stored."""
    body = attempt.reply.body
    if attempt.kind in ("202", "429") and isinstance(body, dict):
        return [(str(body["job_id"]), str(body["status"]))]
    if attempt.kind == "202" and isinstance(body, list):  # an atomic batch, all accepted
        return [(str(item["job_id"]), str(item["status"])) for item in body]
    if attempt.kind == "200" and isinstance(body, dict):  # a partial batch
        return [(str(item["job_id"]), str(item["status"])) for item in body["results"]]
    return []


def check_seeded(audit: Audit, url: str, seeded: Seeded) -> None:
    """The new release serves the old release's jobs: the running one heartbeats and completes
    under its old lease, the others read back in their state, the queued one is claimed."""
    user = {"X-User-ID": seeded.user_id}
    lease = {"lease_token": seeded.lease_token}
    for call, body in (("heartbeat", {**lease, "lease_seconds": 60}), ("complete", lease)):
        reply = send(url, "POST", f"/system/jobs/{seeded.running}/{call}", body=body, headers=user)
        audit.check(reply.status == 200, f"{call} of a job leased by the old release: {reply.kind}")
    for job_id, state in (
        (seeded.running, "completed"),
        (seeded.completed, "completed"),
        (seeded.waiting, "waiting"),
    ):
        reply = send(url, "GET", f"/dashboard/jobs/{job_id}", headers=user)
        got = reply.body.get("state") if isinstance(reply.body, dict) else reply.kind
        audit.check(got == state, f"a {state} job of the old release reads back {got}")
    body = {"limit": 1, "batch_name": "seed-queued"}
    reply = send(url, "POST", "/system/jobs/claim", body=body, headers=user)
    claimed = reply.body["jobs"] if reply.status == 200 else f"{reply.kind} {reply.body}"
    audit.check(
        isinstance(claimed, list) and [job["job_id"] for job in claimed] == [seeded.queued],
        f"claiming the old release's queued job: {claimed}",
    )
    with audit.postgres.connect() as db:
        row = db.execute(
            "SELECT count(*) FROM jobs WHERE user_id = %s AND status = 'Accepted'",
            [seeded.user_id],
        ).fetchone()
    assert row is not None
    audit.check(row[0] == seeded.accepted, f"the seed user has {row[0]} jobs of {seeded.accepted}")
