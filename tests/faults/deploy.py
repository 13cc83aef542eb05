"""A deploy under load: the old release serves while the new one's migrations run, then hands over.

As Render deploys (docs/operations.md, Deploying without downtime): the previous release
(releases.py: JANUS_DEPLOY_FROM, else the commit before issue 27's partitions) migrates a new
database with its own alembic/ and serves it under gunicorn behind a router (router.py).
Three users are made with its CLI and its API; one of them gets jobs in every state through
it (queued, waiting, running under a long lease, completed) and a bulk of queued jobs, so the
migration has rows to move. Then producers (single jobs, partial and atomic batches) and
workers (claim, heartbeat, complete) run through the router, and, while they do, this
checkout's `alembic upgrade head` runs; then this checkout's gunicorn starts, the router moves
new connections to it once /health/ready answers 200, the old one is left to finish what it
holds and gets SIGTERM, and the load goes on against the new release a few seconds more.

Every answer counts, by phase: none is a 5xx (not even a 503: a deploy is not an outage), no
request hangs or loses its connection; every job answered Accepted is stored Accepted; no
completion is acknowledged twice or stored under a lease no claim gave; the never-refilling
bucket lost exactly what its accepted jobs cost; and the seeded jobs, written by the old
release, are served by the new one: the running one heartbeats and completes under its old
lease, the others read back as they were.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.faults import releases
from tests.faults.deploy_checks import Audit, check_seeded, seed
from tests.faults.harness import (
    Attempt,
    Clock,
    FaultPostgres,
    JobCall,
    Service,
    crowd,
    send,
)
from tests.faults.router import Router
from tests.faults.scenarios import ScenarioResult
from tests.faults.workers import WorkerLog, WorkerPool

NAME = "deploy-under-load"
PRODUCERS = 8
QUEUE_WORKERS = 4
# Two releases run side by side on 2 cores for a while: 2 gunicorn workers each.
SERVICE_WORKERS = 2
# Seconds of load on the old release before its migration, after it, and on the new release.
BEFORE_S, AFTER_S, NEW_S = 3.0, 3.0, 4.0
# How long the old release may take to finish the connections it holds after the switch.
DRAIN_LIMIT_S = 10.0

# A bucket that never refills, where the accounting is exact, and one that refills, where
# some requests are refused and some atomic batches sink.
FINITE, REFILLING = "stripe", "openai"
BUCKETS = {
    FINITE: {"capacity": 10**7, "refill_per_second": 0},
    REFILLING: {"capacity": 100, "refill_per_second": 50},
}
SHAPES = ({FINITE: 1}, {FINITE: 1, REFILLING: 1}, {FINITE: 2})
LOAD_USERS = ("alice", "bob")
# Requests in turn: a single job on either route, a partial batch, an atomic batch.
ROUTES = ("/system/jobs", "/dashboard/jobs", "/system/jobs/batch", "/dashboard/jobs/batch/atomic")

PHASES = ("old", "old, migrating", "old, migrated", "new")


class Phases:
    """When each phase began on the scenario's clock; the phase of any moment."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.began: dict[str, float] = {PHASES[0]: 0.0}

    def begin(self, phase: str) -> float:
        """Mark `phase` as begun now; now."""
        self.began[phase] = self._clock.now()
        return self.began[phase]

    def of(self, moment: float) -> str:
        """The phase `moment` falls in."""
        return max((start, phase) for phase, start in self.began.items() if start <= moment)[1]


def producer_calls(users: dict[str, str]) -> Callable[[int, int], JobCall]:
    """Job requests of the load users in turn: single jobs and batches, each its batch_name."""

    def make_call(number: int, thread_index: int) -> JobCall:
        name = LOAD_USERS[thread_index % len(LOAD_USERS)]
        path = ROUTES[number % len(ROUTES)]
        return JobCall(
            user=name,
            user_id=users[name],
            path=path,
            batch_name=f"deploy-{number}-{name}",
            dependencies=SHAPES[number % len(SHAPES)],
            batch=SHAPES if "/batch" in path else (),
        )

    return make_call


def deploy_under_load(log_dir: Path) -> ScenarioResult:
    """The previous release under load, this release's migrations, the switch, and the audit."""
    rev = releases.previous_rev()
    result = ScenarioResult(NAME, "")
    with releases.previous(rev) as old_release:
        new_release = releases.current()
        result.description = (
            f"{old_release.name} under load from {PRODUCERS} producers and {QUEUE_WORKERS} "
            f"workers; this checkout's alembic upgrade head; traffic moved to this checkout"
        )
        postgres = FaultPostgres.create(migrate=False)
        try:
            _deploy(result, log_dir, postgres, old_release, new_release)
        finally:
            postgres.destroy()
    return result


def _deploy(
    result: ScenarioResult,
    log_dir: Path,
    postgres: FaultPostgres,
    old_release: releases.Release,
    new_release: releases.Release,
) -> None:
    audit = Audit(result, postgres)
    migrate_log = log_dir / f"{NAME}-migrations.log"
    if changed := releases.differing_requirements(old_release.commit or "HEAD"):
        audit.note(f"{', '.join(changed)} differ from {old_release.name}: it runs on this .venv")
    old_release.migrate(postgres.url, migrate_log)
    from_version = releases.schema_version(postgres.url)
    old = Service.start(
        postgres.url,
        log_dir / f"{NAME}-old-gunicorn.log",
        workers=SERVICE_WORKERS,
        env=old_release.env(),
        root=old_release.root,
    )
    new: Service | None = None
    router = Router(old.url).start()
    try:
        old_release.check_imported()
        users = audit.make_users(old_release, old.url, migrate_log, [*LOAD_USERS, "seed"], BUCKETS)
        seeding = time.monotonic()
        seeded = seed(router.url, users["seed"])
        audit.note(
            f"seeded through the old release: {seeded.accepted} jobs of one user, one running, "
            f"one completed, one waiting, the rest queued ({time.monotonic() - seeding:.1f} s)"
        )
        clock = Clock()
        phases = Phases(clock)
        attempts: list[Attempt] = []
        pool = WorkerPool(
            router.url, [users[n] for n in LOAD_USERS], clock, QUEUE_WORKERS, heartbeat=True
        ).start()
        try:
            with crowd(
                router.url, clock, producer_calls(users), threads=PRODUCERS, attempts=attempts
            ):
                time.sleep(BEFORE_S)
                migrated = _migrate(
                    audit, new_release, postgres.url, migrate_log, phases, from_version
                )
                # A migration that failed rolled back: the old release must serve on as before.
                time.sleep(AFTER_S)
                if migrated:
                    new = Service.start(
                        postgres.url,
                        log_dir / f"{NAME}-new-gunicorn.log",
                        workers=SERVICE_WORKERS,
                        env=new_release.env(),
                        root=new_release.root,
                    )
                    _switch(audit, router, old, new, phases)
                    time.sleep(NEW_S)
        finally:
            log = pool.stop()
        _count(audit, attempts, log, phases)
        if new is not None:
            check_seeded(audit, new.url, seeded)
        audit.jobs(attempts, [users[n] for n in LOAD_USERS])
        audit.queue(log, [users[n] for n in LOAD_USERS])
        audit.finite_bucket([users[n] for n in LOAD_USERS], FINITE)
        for release, service in (("old", old), ("new", new)):
            if service is None:
                continue
            audit.note(
                f"router: {router.relayed[service.url]} connections to the {release} release"
            )
            refused = router.refused[service.url]
            audit.check(not refused, f"the {release} release refused {refused} connections")
            audit.check("Traceback" not in service.log(), f"{service.log_path.name}: a traceback")
    finally:
        router.close()
        old.stop()
        if new is not None:
            new.stop()


def _migrate(
    audit: Audit,
    release: releases.Release,
    database_url: str,
    log_path: Path,
    phases: Phases,
    from_version: str,
) -> bool:
    """The new release's `alembic upgrade head`, timed, while the old one serves; whether it
    succeeded (a deploy whose migration fails goes no further)."""
    phases.begin("old, migrating")
    started = time.monotonic()
    try:
        seconds = release.migrate(database_url, log_path)
    except releases.ReleaseError as error:
        failed_after = time.monotonic() - started
        audit.check(False, f"the migration failed after {failed_after:.2f} s: {error}")
        return False
    finally:
        phases.begin("old, migrated")
    to_version = releases.schema_version(database_url)
    if to_version == from_version:
        audit.note(f"no migration to run: the old release is at {to_version} too ({seconds:.2f} s)")
    else:
        audit.note(f"alembic upgrade head {from_version} -> {to_version}: {seconds:.2f} s")
    return True


def _switch(audit: Audit, router: Router, old: Service, new: Service, phases: Phases) -> None:
    """As a platform does: traffic to the new release once it is ready, then the old one is
    let finish what it holds and stopped."""
    ready = send(new.url, "GET", "/health/ready")
    audit.check(ready.status == 200, f"the new release's /health/ready: {ready.kind}")
    router.switch(new.url)
    phases.begin("new")
    drained = router.wait_drained(old.url, DRAIN_LIMIT_S)
    audit.check(drained, f"the old release still held connections {DRAIN_LIMIT_S:g} s after")
    stopping = time.monotonic()
    old.stop()
    audit.note(
        f"old release exited {time.monotonic() - stopping:.2f} s after SIGTERM, "
        f"status {old.process.returncode}"
    )
    audit.check(old.process.returncode == 0, f"the old release exited {old.process.returncode}")


def _count(audit: Audit, attempts: Sequence[Attempt], log: WorkerLog, phases: Phases) -> None:
    """Every answer by phase: producers' and workers'; none may be a 5xx or no answer."""
    by_phase: dict[str, Counter[str]] = {phase: Counter() for phase in PHASES}
    slowest: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    events: list[tuple[float, float, str, Any]] = [
        (a.sent_at, a.latency, f"{_shape(a.call.path)} {a.kind}", a.reply) for a in attempts
    ]
    events += [
        (a.sent_at, a.answered_at - a.sent_at, f"{a.route} {a.kind}", a.reply) for a in log.answers
    ]
    bad = Counter[str]()
    for sent_at, latency, label, reply in events:
        phase = phases.of(sent_at)
        by_phase[phase][label] += 1
        slowest[phase] = max(slowest[phase], latency)
        if reply.status is None or reply.status >= 500:
            bad[f"{phase}: {label}"] += 1
    for phase in PHASES:
        audit.note(
            f"{phase}: {dict(sorted(by_phase[phase].items()))}, slowest {slowest[phase]:.2f} s"
        )
        audit.check(by_phase[phase].total() > 0, f"no request was answered in phase {phase!r}")
    audit.check(not bad, f"5xx or no answer: {dict(bad)}")
    audit.result.sent = len(attempts)
    audit.result.answers = Counter(a.kind for a in attempts)


def _shape(path: str) -> str:
    return "atomic" if path.endswith("/atomic") else "batch" if "/batch" in path else "single"
