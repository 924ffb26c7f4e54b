"""Operations: liveness, readiness, model and limits, Prometheus metrics; and the taxonomy in use.

``/health`` and ``/ready`` are open (probes carry no key); ``/info`` and ``/v1/taxonomy`` need any valid key;
``/metrics`` needs an admin key unless ``VOCE_METRICS_PUBLIC`` opens it to a scraper.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from voce.models import __version__
from voce.models.labels import SENTIMENT_LABELS
from voce.service.deps import (
    AUTH_RESPONSES,
    EngineDep,
    MetricsDep,
    SettingsDep,
    require_key,
    require_metrics,
)

router = APIRouter()


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


@router.get("/health", response_model=StatusResponse, operation_id="health", tags=["ops"])
def health() -> StatusResponse:
    """Liveness: the process answers."""
    return StatusResponse(status="ok")


@router.get(
    "/ready", response_model=StatusResponse, operation_id="ready", tags=["ops"],
    responses={503: {"model": StatusResponse}},
)
def ready(engine: EngineDep, response: Response) -> StatusResponse:
    """Readiness: 200 once the model is loaded and warmed up, 503 before (or if loading failed)."""
    if engine.analyzer is not None:
        return StatusResponse(status="ready")
    response.status_code = 503
    if engine.error:
        return StatusResponse(status="failed", detail=engine.error)
    return StatusResponse(status="loading")


@router.get(
    "/info", response_model=InfoResponse, operation_id="info", tags=["ops"], dependencies=[Depends(require_key)],
    responses=AUTH_RESPONSES,
)
def info(engine: EngineDep, s: SettingsDep) -> InfoResponse:
    """Model versions, label sets and request limits."""
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
            # work per request: a document is cut after max_document_tokens tokens (with a warning), a request of
            # more than max_request_tokens is refused (413) before any work; an inline taxonomy is bounded too
            "max_document_tokens": (a.config if a else s.analyzer_spec().config).token_limit(),
            "max_request_tokens": s.max_request_tokens,
            "max_taxonomy_entries": s.max_taxonomy_entries,
            "max_taxonomy_examples": s.max_taxonomy_examples,
            "max_taxonomy_text_chars": s.max_taxonomy_text_chars,
            "max_taxonomy_tokens": s.max_taxonomy_tokens,
            # uploads (POST /v1/batches); an XLSX is also bounded once unzipped
            "max_upload_bytes": s.max_upload_bytes,
            "xlsx_max_uncompressed_bytes": s.xlsx_max_uncompressed_bytes,
            "xlsx_max_cells": s.xlsx_max_cells,
            "xlsx_max_rows": s.xlsx_max_rows,
            "xlsx_max_shared_strings": s.xlsx_max_shared_strings,
            "xlsx_max_shared_string_chars": s.xlsx_max_shared_string_chars,
            "xlsx_max_cell_chars": s.xlsx_max_cell_chars,
        },
        bundle_metrics=_bundle_metrics(a.bundle) if a else None,
    )


def _bundle_metrics(bundle: Any) -> dict[str, Any] | None:
    """The manifest's dev metrics, with None ("n/a") for benchmark metrics the bundle's taxonomy cannot be scored on
    (bundles trained before that rule recorded a fake 0.0 for them)."""
    from voce.eval.metrics import not_applicable

    metrics = bundle.manifest_extra.get("metrics")
    if not isinstance(metrics, dict):
        return None
    out = dict(metrics)
    not_applicable(out, bundle.taxonomy().topics.ids)
    return out


@router.get(
    "/metrics", operation_id="metrics", tags=["ops"], response_class=Response, dependencies=[Depends(require_metrics)],
    responses=AUTH_RESPONSES,
)
def metrics(m: MetricsDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
