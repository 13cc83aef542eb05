"""The application factory: routes, error handlers, and the collaborators they are given."""

from __future__ import annotations

from functools import partial

import falcon

from janus import metrics
from janus.admission import Mode, Source
from janus.configs import MAX_VERSION
from janus.dashboard import FILES as DASHBOARD_FILES
from janus.db.configs import ConfigVersionStore
from janus.db.health import check_database
from janus.db.history import HistoryStore
from janus.db.jobs import AdmissionStore
from janus.db.pool import Pool
from janus.db.queue import QueueStore
from janus.metrics import CountingAdmitter
from janus.openapi.document import build_document
from janus.resources.auth import ServiceTokenMiddleware
from janus.resources.configs import (
    ConfigActivateResource,
    ConfigResource,
    ConfigVersionsResource,
    PauseHistoryResource,
    PauseResource,
)
from janus.resources.dashboard import DashboardFile
from janus.resources.errors import add_error_handlers
from janus.resources.health import HealthResource, ReadinessResource
from janus.resources.history import (
    ActivityResource,
    JobListResource,
    JobRecordResource,
    QuotaResource,
)
from janus.resources.jobs import BatchResource, QuoteResource, SingleJobResource
from janus.resources.metrics import MetricsResource
from janus.resources.openapi import OpenApiResource
from janus.resources.queue import (
    ClaimResource,
    CompleteManyResource,
    FinishResource,
    HeartbeatResource,
)
from janus.resources.request_ids import RequestIdMiddleware
from janus.resources.routes import SharedRoute
from janus.resources.telemetry import RequestTelemetryMiddleware
from janus.settings import Settings


def create_app(settings: Settings, pool: Pool) -> falcon.App[falcon.Request, falcon.Response]:
    """The Janus WSGI app, serving every route of the seed API from `pool`.

    The composition root: the only place that hands janus.db's implementations to the
    resources, which know them only as janus.admission's Admitter, janus.queue's JobQueue,
    janus.configs' ConfigStore, janus.history's JobHistory and ActivityReader, janus.quotas'
    QuotaReader and a readiness check; the AdmissionStore is wrapped so its decisions are
    counted (janus.metrics). Every route added here has its entry in
    janus/openapi/operations.py, the table GET /openapi.json is built from
    (tests/test_openapi.py holds the two together).
    """
    middleware: list[RequestTelemetryMiddleware | RequestIdMiddleware | ServiceTokenMiddleware] = [
        RequestTelemetryMiddleware(),
        RequestIdMiddleware(),
    ]
    if settings.service_token:
        middleware.append(ServiceTokenMiddleware(settings.service_token))
    app = falcon.App(middleware=middleware)
    add_error_handlers(app)
    store = CountingAdmitter(AdmissionStore(pool, retries=settings.conflict_retries))
    app.add_route("/health", HealthResource())
    app.add_route("/health/ready", ReadinessResource(partial(check_database, pool)))
    document = build_document(
        max_batch_jobs=settings.max_batch_jobs, service_token=settings.service_token is not None
    )
    app.add_route("/openapi.json", OpenApiResource(document))
    # Behind the service token when there is one: a scraper sends it as a bearer token.
    app.add_route("/metrics", MetricsResource(metrics.exposition, metrics.CONTENT_TYPE))
    history = HistoryStore(pool)
    for source in Source:
        prefix = f"/{source.value}/jobs"
        submit = SingleJobResource(store, source)
        if source is Source.DASHBOARD:
            # The dashboard reads the user's jobs (both sources) where it submits them.
            app.add_route(prefix, SharedRoute(submit, JobListResource(history)))
            app.add_route(f"{prefix}/{{job_id:uuid}}", JobRecordResource(history))
        else:
            app.add_route(prefix, submit)
        app.add_route(
            f"{prefix}/batch",
            BatchResource(store, source, Mode.PARTIAL, max_jobs=settings.max_batch_jobs),
        )
        app.add_route(
            f"{prefix}/batch/atomic",
            BatchResource(store, source, Mode.ATOMIC, max_jobs=settings.max_batch_jobs),
        )
        app.add_route(
            f"{prefix}/quote", QuoteResource(store, source, max_jobs=settings.max_batch_jobs)
        )
    # The queue is for workers, so only the system family has it. A malformed job_id in the
    # path matches no route: 404.
    queue = QueueStore(pool, retries=settings.conflict_retries)
    app.add_route("/system/jobs/claim", ClaimResource(queue))
    app.add_route(
        "/system/jobs/complete", CompleteManyResource(queue, max_jobs=settings.max_batch_jobs)
    )
    app.add_route("/system/jobs/{job_id:uuid}/heartbeat", HeartbeatResource(queue))
    app.add_route("/system/jobs/{job_id:uuid}/complete", FinishResource(queue, failed=False))
    app.add_route("/system/jobs/{job_id:uuid}/fail", FinishResource(queue, failed=True))
    # The dashboard: the user's own rules, config versions and pause (janus.configs' ConfigStore).
    configs = ConfigVersionStore(pool)
    app.add_route("/dashboard/config", ConfigResource(configs))
    app.add_route("/dashboard/config/versions", ConfigVersionsResource(configs))
    # A version beyond MAX_VERSION matches no route (404), as no user can have one.
    app.add_route(
        f"/dashboard/config/versions/{{version:int(min=1, max={MAX_VERSION})}}/activate",
        ConfigActivateResource(configs),
    )
    app.add_route("/dashboard/pause", PauseResource(configs, paused=True))
    app.add_route("/dashboard/resume", PauseResource(configs, paused=False))
    app.add_route("/dashboard/pause/history", PauseHistoryResource(configs))
    app.add_route("/dashboard/activity", ActivityResource(history))
    app.add_route("/dashboard/quotas", QuotaResource(history))
    # The dashboard's page itself (janus/dashboard/), which reads the routes above.
    for path, file in DASHBOARD_FILES.items():
        app.add_route(path, DashboardFile(file.name, file.media_type))
    return app
