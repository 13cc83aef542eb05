"""The one table of the API: every route's path, the resource that serves it, and what the
OpenAPI document says of each of its methods.

janus/app.py adds these routes and GET /openapi.json describes these operations, so the two
cannot disagree. Adding a route is one entry here, its resource, its schemas and its
operation (janus/openapi/), its store and SQL, and docs/api.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from janus import metrics
from janus.admission import Admitter, BatchMode, Mode, Source
from janus.configs import MAX_VERSION, ConfigStore
from janus.dashboard import FILES as DASHBOARD_FILES
from janus.dashboard import File
from janus.history import ActivityReader, JobHistory
from janus.keys import KeyStore, Scope
from janus.openapi import config, history, jobs, keys
from janus.openapi.document import build_document
from janus.openapi.operations import (
    DOCUMENT,
    LIVENESS,
    METRICS,
    READINESS,
    Operation,
    dashboard_file,
    held_to_user_share,
)
from janus.queue import JobQueue, QueueDepth
from janus.queue_view import QueueReader
from janus.quotas import QuotaReader
from janus.resources.configs import (
    ConfigActivateResource,
    ConfigResource,
    ConfigVersionsResource,
    PauseHistoryResource,
    PauseResource,
)
from janus.resources.dashboard import DashboardFile
from janus.resources.health import HealthResource, ReadinessResource
from janus.resources.history import (
    ActivityResource,
    JobListResource,
    JobRecordResource,
    QueueViewResource,
    QuotaResource,
)
from janus.resources.jobs import BatchResource, QuoteResource, SingleJobResource
from janus.resources.keys import KeyRevokeResource, KeysResource
from janus.resources.metrics import MetricsResource
from janus.resources.openapi import OpenApiResource
from janus.resources.queue import (
    CancelResource,
    ClaimResource,
    CompleteManyResource,
    FinishResource,
    HeartbeatResource,
    RetryResource,
)
from janus.resources.routes import SharedRoute

# falcon's `{name:converter(args)}` in a route's path; OpenAPI writes `{name}`.
_FIELD = re.compile(r"\{(\w+)(?::[^}]+)?\}")


@dataclass(frozen=True)
class Services:
    """What the resources are given: janus.db's implementations (wired by janus/app.py), as
    the domain's protocols, and the document GET /openapi.json serves."""

    admitter: Admitter
    queue: JobQueue
    configs: ConfigStore
    jobs: JobHistory
    activity: ActivityReader
    quotas: QuotaReader
    queue_view: QueueReader
    keys: KeyStore
    # Returns when the database answers; raises DatabaseUnavailable when it does not.
    check_database: Callable[[], None]
    # The queue of every user, for GET /metrics; raises DatabaseUnavailable as above.
    read_queue: Callable[[], QueueDepth]
    document: Mapping[str, Any]


@dataclass(frozen=True)
class Route:
    """One path: the resource serving it, built from the Services, and its methods."""

    # falcon's template: a malformed `{job_id:uuid}` or `{version:int(...)}` matches no route.
    path: str
    resource: Callable[[Services], object]
    operations: tuple[Operation, ...]

    @property
    def openapi_path(self) -> str:
        """The path as OpenAPI writes it: `/system/jobs/{job_id}/heartbeat`."""
        return _FIELD.sub(r"{\1}", self.path)


def _job_routes(source: Source, max_batch_jobs: int) -> list[Route]:
    """POST /{source}/jobs, .../batch, .../batch/atomic and .../quote; /dashboard/jobs also
    lists the user's jobs (both sources), GET /dashboard/jobs/{job_id} shows one,
    POST /dashboard/jobs/{job_id}/cancel cancels it and .../retry sends it back to wait."""
    prefix = f"/{source.value}/jobs"

    def submit(services: Services) -> object:
        resource = SingleJobResource(services.admitter, source)
        if source is Source.DASHBOARD:
            # The dashboard reads the user's jobs where it submits them.
            return SharedRoute(resource, JobListResource(services.jobs))
        return resource

    def batch(mode: BatchMode) -> Route:
        return Route(
            f"{prefix}/batch/atomic" if mode is Mode.ATOMIC else f"{prefix}/batch",
            lambda s: BatchResource(s.admitter, source, mode, max_jobs=max_batch_jobs),
            (jobs.batch(mode, max_batch_jobs),),
        )

    dashboard = source is Source.DASHBOARD
    table = [
        Route(prefix, submit, (jobs.submit(), *([history.JOBS] if dashboard else []))),
        batch(Mode.PARTIAL),
        batch(Mode.ATOMIC),
        Route(
            f"{prefix}/quote",
            lambda s: QuoteResource(s.admitter, source, max_jobs=max_batch_jobs),
            (jobs.quote(max_batch_jobs),),
        ),
    ]
    if dashboard:
        table += [
            Route(f"{prefix}/{{job_id:uuid}}", lambda s: JobRecordResource(s.jobs), (history.JOB,)),
            Route(
                f"{prefix}/{{job_id:uuid}}/cancel",
                lambda s: CancelResource(s.queue),
                (jobs.CANCEL,),
            ),
            Route(
                f"{prefix}/{{job_id:uuid}}/retry",
                lambda s: RetryResource(s.queue),
                (jobs.RETRY,),
            ),
        ]
    return table


def _queue_routes(max_batch_jobs: int) -> list[Route]:
    """The workers' routes: only the system family has them."""
    return [
        Route("/system/jobs/claim", lambda s: ClaimResource(s.queue), (jobs.CLAIM,)),
        Route(
            "/system/jobs/complete",
            lambda s: CompleteManyResource(s.queue, max_jobs=max_batch_jobs),
            (jobs.complete_many(max_batch_jobs),),
        ),
        Route(
            "/system/jobs/{job_id:uuid}/heartbeat",
            lambda s: HeartbeatResource(s.queue),
            (jobs.HEARTBEAT,),
        ),
        Route(
            "/system/jobs/{job_id:uuid}/complete",
            lambda s: FinishResource(s.queue, failed=False),
            (jobs.COMPLETE,),
        ),
        Route(
            "/system/jobs/{job_id:uuid}/fail",
            lambda s: FinishResource(s.queue, failed=True),
            (jobs.FAIL,),
        ),
    ]


def _dashboard_file(path: str, file: File) -> Route:
    return Route(path, lambda s: DashboardFile(file.name, file.media_type), (dashboard_file(file),))


# The user's own rules, config versions and pause, then the dashboard's reads.
_DASHBOARD_ROUTES = [
    Route("/dashboard/config", lambda s: ConfigResource(s.configs), (config.READ, config.REPLACE)),
    Route(
        "/dashboard/config/versions",
        lambda s: ConfigVersionsResource(s.configs),
        (config.VERSIONS,),
    ),
    # A version beyond MAX_VERSION matches no route (404), as no user can have one.
    Route(
        f"/dashboard/config/versions/{{version:int(min=1, max={MAX_VERSION})}}/activate",
        lambda s: ConfigActivateResource(s.configs),
        (config.ACTIVATE,),
    ),
    Route("/dashboard/pause", lambda s: PauseResource(s.configs, paused=True), (config.PAUSE,)),
    Route("/dashboard/resume", lambda s: PauseResource(s.configs, paused=False), (config.RESUME,)),
    Route(
        "/dashboard/pause/history",
        lambda s: PauseHistoryResource(s.configs),
        (config.PAUSE_HISTORY,),
    ),
    Route("/dashboard/activity", lambda s: ActivityResource(s.activity), (history.ACTIVITY,)),
    Route("/dashboard/quotas", lambda s: QuotaResource(s.quotas), (history.QUOTAS,)),
    Route("/dashboard/queue", lambda s: QueueViewResource(s.queue_view), (history.QUEUE,)),
    # The user's API keys.
    Route("/dashboard/keys", lambda s: KeysResource(s.keys), (keys.CREATE, keys.LIST)),
    Route("/dashboard/keys/{key_id}/revoke", lambda s: KeyRevokeResource(s.keys), (keys.REVOKE,)),
    # The dashboard's page itself (janus/dashboard/), which reads the routes above.
    *(_dashboard_file(path, file) for path, file in DASHBOARD_FILES.items()),
]


def routes(max_batch_jobs: int) -> list[Route]:
    """Every route of the API, for a service that takes batches of up to `max_batch_jobs`."""
    return [
        Route("/health", lambda s: HealthResource(), LIVENESS),
        Route("/health/ready", lambda s: ReadinessResource(s.check_database), READINESS),
        Route("/openapi.json", lambda s: OpenApiResource(s.document), (DOCUMENT,)),
        # Behind the service token when there is one: a scraper sends it as a bearer token.
        Route(
            "/metrics",
            lambda s: MetricsResource(
                partial(metrics.exposition, s.read_queue), metrics.CONTENT_TYPE
            ),
            (METRICS,),
        ),
        *(route for source in Source for route in _job_routes(source, max_batch_jobs)),
        *_queue_routes(max_batch_jobs),
        *_DASHBOARD_ROUTES,
    ]


def openapi_document(table: list[Route], *, service_token: bool) -> dict[str, Any]:
    """The OpenAPI document of the routes of `table`, as served with a service token or not."""
    return build_document(
        [(route.openapi_path, operation) for route in table for operation in route.operations],
        service_token=service_token,
    )


def shared_routes(table: list[Route]) -> frozenset[tuple[str, str]]:
    """(path, METHOD) of the calls held to a user's share of a worker's connections
    (held_to_user_share)."""
    return frozenset(
        (route.path, operation.method.upper())
        for route in table
        for operation in route.operations
        if held_to_user_share(route.path, operation)
    )


def route_scopes(table: list[Route]) -> dict[tuple[str, str], tuple[Scope, ...]]:
    """(path, METHOD) -> the scopes that may call it, for every user route of `table`: what
    janus/resources/auth.py checks a request against once falcon has routed it."""
    return {
        (route.path, operation.method.upper()): operation.scopes
        for route in table
        for operation in route.operations
        if operation.user
    }
