"""HTTP API: a thin layer over :class:`models.analyzer.Analyzer`.

``create_app(settings)`` builds the app; the lifespan loads and warms the model
in a background thread so ``/health`` answers at once and ``/ready`` turns 200
only when analysis can run.  Analysis runs in plain ``def`` routes (FastAPI's
thread pool) behind an admission gate, so the event loop never blocks and an
overloaded service answers 429 instead of queueing without bound.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field

from voce.models import __version__
from voce.models.analyzer import Analyzer
from voce.models.labels import SENTIMENT_LABELS
from voce.models.spec import load_analyzer
from voce.models.taxonomy import TaxonomyError, parse_taxonomy
from voce.models.types import DocumentError, DocumentInput, DocumentResult
from voce.service.batches_api import FactsCache, build_router
from voce.service.db import open_database
from voce.service.errors import (
    BodyLimit,
    ErrorEnvelope,
    InvalidInput,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    error_response,
    install_error_handlers,
)
from voce.service.jobs import BatchStore, LocalExecutor, RunnerConfig
from voce.service.settings import Settings
from voce.service.web import build_web_router

log = logging.getLogger("voce.service")


# ------------------------------------------------------------------ schemas
class AnalyzeRequest(BaseModel):
    """Up to ``max_documents`` comments or chats; an optional inline taxonomy replaces the default."""

    documents: list[DocumentInput] = Field(min_length=1, max_length=1000)
    taxonomy: dict[str, Any] | None = Field(
        default=None, description="Inline taxonomy (same format as the YAML file), replacing topics and/or touchpoints."
    )

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "documents": [
                        {"id": "1", "text": "Il call center mi ha lasciato in attesa 40 minuti. Vergognoso!"},
                        {"id": "2", "text": "Fast delivery, the parcel arrived intact.", "channel": "web"},
                        {"id": "3", "kind": "chat", "text": "Cliente: il pacco non è arrivato\nOperatore: verifico"},
                    ]
                }
            ]
        },
    }


class AnalyzeResponse(BaseModel):
    model_version: str
    taxonomy_version: str
    documents: list[DocumentResult]
    errors: list[DocumentError]


class InfoResponse(BaseModel):
    service_version: str
    model_version: str | None
    encoder: str | None
    ready: bool
    sentiment_labels: list[str]
    topics: list[str]
    learned_topics: list[str]
    touchpoints: list[str]
    taxonomy_version: str | None
    limits: dict[str, int]
    bundle_metrics: dict[str, Any] | None


class StatusResponse(BaseModel):
    status: str
    detail: str | None = None


# ------------------------------------------------------------------- state
class Admission:
    """At most ``concurrency`` analyses at once and ``waiting`` queued; the rest get 429."""

    def __init__(self, concurrency: int, waiting: int) -> None:
        self._sem = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._inside = 0
        self._limit = concurrency + waiting

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._inside >= self._limit:
                raise Overloaded("the service is busy; retry shortly")
            self._inside += 1
        try:
            with self._sem:
                yield
        finally:
            with self._lock:
                self._inside -= 1


@dataclass
class Engine:
    analyzer: Analyzer | None = None
    error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    documents: Counter
    latency: Histogram

    @classmethod
    def create(cls) -> Metrics:
        reg = CollectorRegistry()
        return cls(
            registry=reg,
            requests=Counter("voce_requests", "HTTP requests", ["route", "status"], registry=reg),
            documents=Counter("voce_documents", "Documents processed", ["outcome"], registry=reg),
            latency=Histogram("voce_request_seconds", "Request latency", ["route"], registry=reg),
        )


def _load(app: FastAPI, settings: Settings) -> None:
    engine: Engine = app.state.engine
    try:
        t0 = time.time()
        analyzer = load_analyzer(settings.analyzer_spec(), progress=lambda m: log.info("%s", m))
        analyzer.warm_up()
        engine.analyzer = analyzer
        log.info("model ready in %.1fs (%s, %s)", time.time() - t0, analyzer.bundle.version, analyzer.encoder.name)
    except Exception as exc:  # the service stays up and reports why it is not ready
        log.exception("model failed to load")
        engine.error = f"{type(exc).__name__}: {exc}"
    finally:
        engine.loaded.set()


# ------------------------------------------------------------- dependencies
def get_settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def get_analyzer(request: Request) -> Analyzer:
    engine: Engine = request.app.state.engine
    if engine.analyzer is None:
        raise NotReady("the model is still loading" if engine.error is None else "the model failed to load")
    return engine.analyzer


def get_admission(request: Request) -> Admission:
    a: Admission = request.app.state.admission
    return a


SettingsDep = Annotated[Settings, Depends(get_settings)]
AnalyzerDep = Annotated[Analyzer, Depends(get_analyzer)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        chunk_rows=settings.batch_chunk_rows, lease_seconds=settings.worker_lease_seconds,
        discovery=settings.discovery, discovery_seed=settings.discovery_seed,
    )


# --------------------------------------------------------------------- app
def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        thread = threading.Thread(target=_load, args=(app, settings), name="voce-model-loader", daemon=True)
        thread.start()
        app.state.store = BatchStore(open_database(settings.resolved_database_url()))
        executor = None
        if settings.workers > 0:
            executor = LocalExecutor(
                app.state.store, lambda: app.state.engine.analyzer, runner_config(settings), threads=settings.workers
            )
            executor.start()
        app.state.executor = executor
        try:
            yield
        finally:
            if executor is not None:
                executor.stop()

    app = FastAPI(
        title="Voce",
        version=__version__,
        description="Offline Italian/English customer-feedback analysis: sentiment, topics, touchpoints, "
        "NPS-detractor probability, chat transcripts.",
        lifespan=lifespan,
        responses={
            413: {"model": ErrorEnvelope},
            422: {"model": ErrorEnvelope},
            429: {"model": ErrorEnvelope},
            503: {"model": ErrorEnvelope},
        },
    )
    app.state.settings = settings
    app.state.engine = Engine()
    app.state.admission = Admission(settings.max_concurrency, settings.max_waiting)
    app.state.metrics = Metrics.create()
    app.state.facts_cache = FactsCache()
    install_error_handlers(app)

    def body_limit(path: str) -> int:
        return settings.max_upload_bytes + 65536 if path.startswith("/v1/batches") else settings.max_request_bytes

    app.add_middleware(BodyLimit, limit_for=body_limit)

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next: Any) -> Response:
        metrics: Metrics = request.app.state.metrics
        route = request.url.path
        length = request.headers.get("content-length")
        limit = body_limit(route)
        if length and length.isdigit() and int(length) > limit:
            metrics.requests.labels(route, "413").inc()
            return error_response(413, "PayloadTooLarge", f"request body exceeds {limit} bytes")
        t0 = time.perf_counter()
        response: Response = await call_next(request)
        if route.startswith(("/v1/", "/analyze")):
            metrics.latency.labels(route).observe(time.perf_counter() - t0)
        metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    @app.get("/health", response_model=StatusResponse, operation_id="health", tags=["ops"])
    def health() -> StatusResponse:
        """Liveness: the process answers."""
        return StatusResponse(status="ok")

    @app.get(
        "/ready", response_model=StatusResponse, operation_id="ready", tags=["ops"],
        responses={503: {"model": StatusResponse}},
    )
    def ready(request: Request, response: Response) -> StatusResponse:
        """Readiness: 200 once the model is loaded and warmed up, 503 before (or if loading failed)."""
        engine: Engine = request.app.state.engine
        if engine.analyzer is not None:
            return StatusResponse(status="ready")
        response.status_code = 503
        if engine.error:
            return StatusResponse(status="failed", detail=engine.error)
        return StatusResponse(status="loading")

    @app.get("/info", response_model=InfoResponse, operation_id="info", tags=["ops"])
    def info(request: Request, s: SettingsDep) -> InfoResponse:
        """Model versions, label sets and request limits."""
        engine: Engine = request.app.state.engine
        a = engine.analyzer
        return InfoResponse(
            service_version=__version__,
            model_version=a.bundle.version if a else None,
            encoder=a.encoder.name if a else None,
            ready=a is not None,
            sentiment_labels=SENTIMENT_LABELS,
            topics=a.taxonomy.topics.ids if a else [],
            learned_topics=a.bundle.topics.labels if a else [],
            touchpoints=a.taxonomy.touchpoints.ids if a else [],
            taxonomy_version=a.taxonomy.version if a else None,
            limits={
                "max_documents": s.max_documents,
                "max_chars": s.max_chars,
                "max_request_bytes": s.max_request_bytes,
            },
            bundle_metrics=a.bundle.manifest_extra.get("metrics") if a else None,
        )

    @app.get("/metrics", operation_id="metrics", tags=["ops"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        m: Metrics = request.app.state.metrics
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    def _analyze(
        body: AnalyzeRequest, request: Request, s: SettingsDep, analyzer: AnalyzerDep, admission: AdmissionDep
    ) -> AnalyzeResponse:
        """Analyse up to 25 documents (configurable); per-document problems are reported in `errors`."""
        if len(body.documents) > s.max_documents:
            raise PayloadTooLarge(
                f"{len(body.documents)} documents in one request; the limit is {s.max_documents}"
            )
        ids = [d.id for d in body.documents]
        if len(set(ids)) != len(ids):
            raise InvalidInput("document ids must be unique within a request")
        taxonomy = None
        if body.taxonomy is not None:
            try:
                taxonomy = parse_taxonomy(body.taxonomy, base=analyzer.taxonomy)
            except TaxonomyError as exc:
                raise InvalidInput(str(exc)) from exc
        with admission.slot():
            results, errors = analyzer.analyze(body.documents, taxonomy=taxonomy)
        m: Metrics = request.app.state.metrics
        m.documents.labels("ok").inc(len(results))
        m.documents.labels("error").inc(len(errors))
        return AnalyzeResponse(
            model_version=analyzer.bundle.version,
            taxonomy_version=(taxonomy or analyzer.taxonomy).version,
            documents=results,
            errors=errors,
        )

    @app.get("/v1/taxonomy", operation_id="get_taxonomy", tags=["analysis"])
    def taxonomy(analyzer: AnalyzerDep) -> dict[str, Any]:
        """The taxonomy in use: topic and touchpoint ids with their Italian/English names."""
        t = analyzer.taxonomy
        return {
            "version": t.version,
            "topics": [{"id": e.id, "names": e.names} for e in t.topics.entries],
            "touchpoints": [{"id": e.id, "names": e.names} for e in t.touchpoints.entries],
        }

    app.include_router(build_router())
    app.include_router(build_web_router())
    app.post("/v1/analyze", response_model=AnalyzeResponse, operation_id="analyze", tags=["analysis"])(_analyze)
    app.post(
        "/analyze", response_model=AnalyzeResponse, operation_id="analyze_legacy", tags=["analysis"],
        description="Same as POST /v1/analyze (the path promised to early integrators).",
    )(_analyze)
    return app
