"""Every FastAPI dependency of the routers: settings, the model, admission, metrics, the batch layer, the caller.

Routers take what they need from here and nothing from ``app.state`` directly, so this is the one place where
per-request policy goes: tenant checks will be added to :func:`get_caller` / :func:`get_batches` (a service scoped
to the caller's tenant) without touching any route.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated

from fastapi import Depends, Query, Request

from voce.models.analyzer import Analyzer
from voce.service.analytics import Filters
from voce.service.batches.service import BatchService, Caller, make_filters
from voce.service.batches.store import BatchStore
from voce.service.errors import NotReady
from voce.service.settings import Settings
from voce.service.state import Admission, Engine, Metrics


def get_settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_analyzer(request: Request) -> Analyzer:
    """The loaded analyzer; 503 while it loads (or after it failed to)."""
    engine = get_engine(request)
    if engine.analyzer is None:
        raise NotReady("the model is still loading" if engine.error is None else "the model failed to load")
    return engine.analyzer


def get_admission(request: Request) -> Admission:
    a: Admission = request.app.state.admission
    return a


def get_metrics(request: Request) -> Metrics:
    m: Metrics = request.app.state.metrics
    return m


def get_store(request: Request) -> BatchStore:
    store: BatchStore | None = getattr(request.app.state, "store", None)
    if store is None:
        raise NotReady("the batch store is not open yet")
    return store


def find_batches(request: Request) -> BatchService | None:
    """The batch layer, or None before the lifespan opened the store (the page still renders)."""
    service: BatchService | None = getattr(request.app.state, "batches", None)
    return service


def get_batches(request: Request) -> BatchService:
    service = find_batches(request)
    if service is None:
        raise NotReady("the batch store is not open yet")
    return service


def get_caller(request: Request) -> Caller:
    """Tenant and a hash of the API key that made the call (recorded now; enforced in a later release)."""
    tenant = (request.headers.get("x-tenant") or "default").strip()[:128] or "default"
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return Caller(tenant=tenant, api_key_hash=hashlib.sha256(key.encode()).hexdigest() if key else None)


def filter_params(
    touchpoint: Annotated[str | None, Query(description="a touchpoint id found in the text")] = None,
    channel: Annotated[
        str | None, Query(description="where the feedback was collected, as in by_channel; 'unknown': rows without one")
    ] = None,
    topic: str | None = None,
    language: str | None = None,
    segment: Annotated[list[str] | None, Query(description="column:value; repeatable")] = None,
    period: Annotated[str | None, Query(description="2026-03, 2026-W09 or 2026-03-05")] = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> Filters:
    """The filters shared by the KPI report and the comments behind it (so the numbers and the list agree)."""
    return make_filters(
        touchpoint=touchpoint, channel=channel, topic=topic, language=language, segment=segment, period=period,
        date_from=date_from, date_to=date_to,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
AnalyzerDep = Annotated[Analyzer, Depends(get_analyzer)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StoreDep = Annotated[BatchStore, Depends(get_store)]
BatchesDep = Annotated[BatchService, Depends(get_batches)]
MaybeBatchesDep = Annotated[BatchService | None, Depends(find_batches)]
CallerDep = Annotated[Caller, Depends(get_caller)]
FiltersDep = Annotated[Filters, Depends(filter_params)]
