"""``POST /v1/analyze``: up to ``max_documents`` comments or chats in, typed results and per-document errors out.

A plain ``def`` route (FastAPI's thread pool) behind the admission gate, answered by the micro-batcher together
with the other requests in flight (one encoder call for all of them), so the event loop never blocks and an
overloaded service answers 429 instead of queueing without bound.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from voce.models.analyzer import Analyzer
from voce.models.cleaning import find_invalid
from voce.models.taxonomy import Taxonomy, TaxonomyError, parse_taxonomy
from voce.models.types import DocumentError, DocumentInput, DocumentResult
from voce.service.deps import (
    AUTH_RESPONSES,
    AdmissionDep,
    BatcherDep,
    MetricsDep,
    ScoringAnalyzerDep,
    SettingsDep,
    require_analyze,
)
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
    body: AnalyzeRequest, s: SettingsDep, analyzer: ScoringAnalyzerDep, admission: AdmissionDep, metrics: MetricsDep,
    batcher: BatcherDep,
) -> AnalyzeResponse:
    """Analyse up to 25 documents (configurable); per-document problems are reported in `errors`."""
    if len(body.documents) > s.max_documents:
        raise PayloadTooLarge(f"{len(body.documents)} documents in one request; the limit is {s.max_documents}")
    ids = [d.id for d in body.documents]
    if len(set(ids)) != len(ids):
        raise InvalidInput("document ids must be unique within a request")
    # the analyzer scores with the tenant's stored taxonomy (service/learning); an inline one is merged over it
    taxonomy = None
    if body.taxonomy is not None:
        where = _invalid_unicode(body.taxonomy, "taxonomy")
        if where:
            raise InvalidInput(f"{where[0]}: invalid character {where[1]} (NUL, lone surrogate or non-character)")
        try:
            taxonomy = parse_taxonomy(body.taxonomy, base=analyzer.taxonomy)
        except TaxonomyError as exc:
            raise InvalidInput(str(exc)) from exc
        _check_taxonomy_work(taxonomy, analyzer, s)
    tokens = sum(analyzer.document_tokens(body.documents))
    if tokens > s.max_request_tokens:
        raise PayloadTooLarge(
            f"the documents come to {tokens:,} tokens (emoji, symbols and combining marks count about one each); the "
            f"limit per request is {s.max_request_tokens:,} (VOCE_MAX_REQUEST_TOKENS): send fewer documents per request"
        )
    with admission.slot():  # answered together with the other requests in flight (voce.service.microbatch)
        results, errors = batcher.analyze(analyzer, body.documents, taxonomy=taxonomy, tokens=tokens)
    metrics.documents.labels("ok").inc(len(results))
    metrics.documents.labels("error").inc(len(errors))
    return AnalyzeResponse(
        model_version=analyzer.bundle.version,
        taxonomy_version=(taxonomy or analyzer.taxonomy).version,
        documents=results,
        errors=errors,
    )


def _invalid_unicode(value: Any, where: str) -> tuple[str, str] | None:
    """(path, code point) of the first invalid character in an inline taxonomy (keys included), or None: a
    taxonomy is configuration, so it is refused rather than cleaned (its texts would fail the encoder)."""
    if isinstance(value, str):
        bad = find_invalid(value)
        return (where, bad) if bad else None
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
        found = _invalid_unicode(key, where) if isinstance(key, str) else None
        found = found or _invalid_unicode(item, path)
        if found:
            return found
    return None


def _check_taxonomy_work(taxonomy: Taxonomy, analyzer: Analyzer, s: SettingsDep) -> None:
    """An inline taxonomy's sections are encoded before any document (about 12 ms per example): bound them by
    entries, examples, characters and tokens (the settings ``max_taxonomy_*``, listed in ``/info``)."""
    texts: list[str] = []
    for name in ("topics", "touchpoints"):
        section = getattr(taxonomy, name)
        if section is getattr(analyzer.taxonomy, name):
            continue  # not in the request: the configured section, already encoded
        if len(section.entries) > s.max_taxonomy_entries:
            raise PayloadTooLarge(f"taxonomy.{name} has {len(section.entries)} entries; the limit is "
                                  f"{s.max_taxonomy_entries} (VOCE_MAX_TAXONOMY_ENTRIES)")
        for entry in section.entries:
            if len(entry.examples) > s.max_taxonomy_examples:
                raise PayloadTooLarge(f"taxonomy.{name} entry {entry.id!r} has {len(entry.examples)} examples; the "
                                      f"limit is {s.max_taxonomy_examples} (VOCE_MAX_TAXONOMY_EXAMPLES)")
            for text in entry.prototype_texts():
                if len(text) > s.max_taxonomy_text_chars:
                    raise PayloadTooLarge(
                        f"taxonomy.{name} entry {entry.id!r} has a name, description or example of {len(text)} "
                        f"characters; the limit is {s.max_taxonomy_text_chars} (VOCE_MAX_TAXONOMY_TEXT_CHARS)"
                    )
                texts.append(text)
    tokens = sum(analyzer.token_counts(texts)) if texts else 0
    if tokens > s.max_taxonomy_tokens:
        raise PayloadTooLarge(f"the taxonomy's names, descriptions and examples come to {tokens:,} tokens; the limit "
                              f"is {s.max_taxonomy_tokens:,} (VOCE_MAX_TAXONOMY_TOKENS)")


router.post(
    "/v1/analyze", response_model=AnalyzeResponse, operation_id="analyze", dependencies=[Depends(require_analyze)]
)(_analyze)
router.post(
    "/analyze", response_model=AnalyzeResponse, operation_id="analyze_legacy", dependencies=[Depends(require_analyze)],
    description="Same as POST /v1/analyze (the path promised to early integrators).",
)(_analyze)
