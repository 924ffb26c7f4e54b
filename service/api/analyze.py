"""``POST /v1/analyze``: up to ``max_documents`` comments or chats in, typed results and per-document errors out.

A plain ``def`` route (FastAPI's thread pool) behind the admission gate, so the event loop never blocks and an
overloaded service answers 429 instead of queueing without bound.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from voce.models.taxonomy import TaxonomyError, parse_taxonomy
from voce.models.types import DocumentError, DocumentInput, DocumentResult
from voce.service.deps import AUTH_RESPONSES, AdmissionDep, AnalyzerDep, MetricsDep, SettingsDep, require_analyze
from voce.service.errors import InvalidInput, PayloadTooLarge

router = APIRouter(tags=["analysis"], responses=AUTH_RESPONSES)


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


def _analyze(
    body: AnalyzeRequest, s: SettingsDep, analyzer: AnalyzerDep, admission: AdmissionDep, metrics: MetricsDep
) -> AnalyzeResponse:
    """Analyse up to 25 documents (configurable); per-document problems are reported in `errors`."""
    if len(body.documents) > s.max_documents:
        raise PayloadTooLarge(f"{len(body.documents)} documents in one request; the limit is {s.max_documents}")
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
    metrics.documents.labels("ok").inc(len(results))
    metrics.documents.labels("error").inc(len(errors))
    return AnalyzeResponse(
        model_version=analyzer.bundle.version,
        taxonomy_version=(taxonomy or analyzer.taxonomy).version,
        documents=results,
        errors=errors,
    )


router.post(
    "/v1/analyze", response_model=AnalyzeResponse, operation_id="analyze", dependencies=[Depends(require_analyze)]
)(_analyze)
router.post(
    "/analyze", response_model=AnalyzeResponse, operation_id="analyze_legacy", dependencies=[Depends(require_analyze)],
    description="Same as POST /v1/analyze (the path promised to early integrators).",
)(_analyze)
