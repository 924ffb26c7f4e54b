"""HTTP API: a thin layer over :class:`voce.models.analyzer.Analyzer` and the batch service.

``create_app(settings)`` builds the app: its state, the lifespan, the middleware and the routers of
:mod:`voce.service.api`.  The lifespan loads and warms the model in a background thread so ``/health`` answers
at once and ``/ready`` turns 200 only when analysis can run; it also opens the batch store and starts the
in-process batch workers.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from voce.models import __version__
from voce.service.api import analyze, batches, compare, corrections, docs, keys, models, ops, pages, taxonomy
from voce.service.auth import install_access
from voce.service.batches.executor import build_executor
from voce.service.batches.retention import RetentionTask
from voce.service.batches.service import BatchService
from voce.service.batches.store import BatchStore
from voce.service.errors import BodyLimit, error_response, install_error_handlers
from voce.service.microbatch import MicroBatcher
from voce.service.protocol import RouteLabels, SecurityHeaders, declare_error_responses
from voce.service.settings import Settings
from voce.service.state import Admission, Engine, Metrics, ModelFollower

#: bytes a multipart upload adds around the file itself (boundaries, headers, the mapping field)
_MULTIPART_OVERHEAD = 65536


def _lifespan(settings: Settings) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine: Engine = app.state.engine
        # loads the registry's active version in the background, then follows promotions (hot swap; state.py)
        follower = app.state.follower = ModelFollower.from_settings(engine, settings)
        follower.start()
        store = BatchStore.open(settings.resolved_database_url())
        # personal data: expired batches erased, finished uploads deleted, now and hourly (batches/retention.py)
        retention = RetentionTask(
            store, settings.data_dir, settings.retention_days, keep_uploads=settings.keep_uploads,
            uploads=settings.uploads(),
        )
        retention.start()
        executor = None
        if settings.workers > 0:
            executor = build_executor(settings, store, lambda: engine.analyzer, threads=settings.workers,
                                      spec=lambda: engine.spec or settings.analyzer_spec())
            executor.start()
        app.state.store, app.state.executor = store, executor
        app.state.batches = BatchService.from_settings(
            settings, store=store, labels=engine.labels, touchpoint_labels=engine.touchpoint_labels,
            notify=executor.notify if executor else None,
        )
        from voce.service.insights.alerts import resume_pending  # alert webhooks a stopped service left pending
        from voce.service.insights.webhooks import WebhookPolicy

        resume_pending(store, WebhookPolicy.from_settings(settings))
        try:
            yield
        finally:
            retention.stop()
            follower.stop()
            app.state.batcher.close()
            if executor is not None:
                executor.stop()

    return lifespan


def _install_limits_and_metrics(app: FastAPI, settings: Settings) -> None:
    """Body limits (per route, also for chunked bodies) and request counts/latency for Prometheus, labelled by
    route template (``/v1/batches/{batch_id}``; ``<unmatched>`` for no route) so the series stay bounded."""

    def body_limit(path: str) -> int:
        if path.startswith("/v1/batches"):
            return settings.max_upload_bytes + _MULTIPART_OVERHEAD
        return settings.max_request_bytes

    app.add_middleware(BodyLimit, limit_for=body_limit)
    route_of = RouteLabels(app)

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next: Any) -> Response:
        metrics: Metrics = request.app.state.metrics
        path = request.url.path
        length = request.headers.get("content-length")
        limit = body_limit(path)
        if length and length.isdigit() and int(length) > limit:
            metrics.count(route_of(request.scope), 413)
            return error_response(413, "PayloadTooLarge", f"request body exceeds {limit} bytes")
        t0 = time.perf_counter()
        response: Response = await call_next(request)
        timed = path.startswith(("/v1/", "/analyze"))
        # the router has put the matched route on the scope by now
        metrics.count(route_of(request.scope), response.status_code, time.perf_counter() - t0 if timed else None)
        return response


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Voce",
        version=__version__,
        description="Offline Italian/English customer-feedback analysis: sentiment, topics, touchpoints, "
        "NPS-detractor probability, chat transcripts.",
        lifespan=_lifespan(settings),
        # served from vendored assets by voce.service.api.docs (FastAPI's own pages load them from a CDN)
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = Engine()
    app.state.admission = Admission(settings.max_concurrency, settings.max_waiting)
    app.state.metrics = Metrics.create()
    app.state.batcher = MicroBatcher(
        max_documents=settings.micro_batch_documents, max_tokens=settings.max_request_tokens,
        wait_ms=settings.micro_batch_wait_ms, observe=app.state.metrics.microbatch,
    )
    install_error_handlers(app)
    _install_limits_and_metrics(app, settings)
    install_access(app, settings)  # keys, sessions, Host/Origin guard (outermost): voce.service.auth
    app.add_middleware(SecurityHeaders)  # nosniff & co. on every response, the guard's refusals included
    for router in (
        ops.router, batches.router, compare.router, pages.router, analyze.router, keys.router, docs.router,
        corrections.router, taxonomy.router, taxonomy.page_router,  # the learning loop (service/learning)
        models.router,  # model versions: registry, promote, rollback (hot swap)
    ):
        app.include_router(router)
    from voce.service.api import alerts, views  # saved views and alerts (service/insights)

    for router in (views.router, views.page_router, alerts.router):
        app.include_router(router)
    declare_error_responses(app)  # every error status of every route in the OpenAPI, with the envelope
    return app
