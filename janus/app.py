"""The application factory: routes, error handlers, and the collaborators they are given."""

from __future__ import annotations

import json
from functools import partial

import falcon

from janus import metrics
from janus.db.configs import ConfigVersionStore
from janus.db.health import check_database
from janus.db.history import HistoryStore
from janus.db.jobs import AdmissionStore
from janus.db.keys import KeyStoreOnPool
from janus.db.pool import Pool
from janus.db.queue import QueueStore
from janus.db.queue_depth import read_queue_depth
from janus.db.queue_view import QueueViewStore
from janus.grouping import GroupingAdmitter
from janus.metrics import CountingAdmitter
from janus.resources.auth import AuthMiddleware
from janus.resources.caching import NoStoreMiddleware
from janus.resources.errors import add_error_handlers
from janus.resources.request_ids import RequestIdMiddleware
from janus.resources.telemetry import RequestTelemetryMiddleware
from janus.routes import Services, openapi_document, route_scopes, routes, shared_routes
from janus.settings import Settings


def create_app(settings: Settings, pool: Pool) -> falcon.App[falcon.Request, falcon.Response]:
    """The Janus WSGI app, serving every route of janus/routes.py's table from `pool`.

    The composition root: the only place that hands janus.db's implementations to the
    resources, which know them only as janus.admission's Admitter, janus.queue's JobQueue,
    janus.configs' ConfigStore, janus.history's JobHistory and ActivityReader, janus.quotas'
    QuotaReader, janus.queue_view's QueueReader, a readiness check and the read of the queue
    gauges; the AdmissionStore is wrapped so that a user's queued requests are decided in
    groups (janus.grouping), and its decisions counted (janus.metrics).
    """
    table = routes(settings.max_batch_jobs)
    keys = KeyStoreOnPool(pool)
    middleware: list[
        RequestTelemetryMiddleware | RequestIdMiddleware | NoStoreMiddleware | AuthMiddleware
    ] = [
        RequestTelemetryMiddleware(),
        RequestIdMiddleware(),
        NoStoreMiddleware(),
        AuthMiddleware(
            keys,
            route_scopes(table),
            service_token=settings.service_token,
            keys_required=settings.keys_required,
            shared=shared_routes(table),
        ),
    ]
    app = falcon.App(middleware=middleware)
    # Falcon's own JSON handler calls json.dumps(media, ensure_ascii=False), which builds an
    # encoder for every answer; this one is built once and writes the same text.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=json.JSONEncoder(ensure_ascii=False).encode
    )
    add_error_handlers(app)
    history = HistoryStore(
        pool,
        page_timeout_ms=settings.history_statement_timeout_ms,
        reads_per_second=settings.user_reads_per_second,
    )
    services = Services(
        admitter=CountingAdmitter(
            GroupingAdmitter(
                AdmissionStore(pool, retries=settings.conflict_retries),
                connections=settings.pool_size,
                max_jobs=settings.group_max_jobs,
                max_wait_s=settings.pool_timeout_ms / 1000,
                observe=metrics.observe_group,
            )
        ),
        queue=QueueStore(pool, retries=settings.conflict_retries),
        configs=ConfigVersionStore(pool),
        jobs=history,
        activity=history,
        quotas=history,
        queue_view=QueueViewStore(pool),
        keys=keys,
        check_database=partial(check_database, pool),
        read_queue=partial(read_queue_depth, pool, settings.partitioning),
        document=openapi_document(table, service_token=settings.service_token is not None),
    )
    for route in table:
        app.add_route(route.path, route.resource(services))
    return app
