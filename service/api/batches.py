"""``/v1/batches``: upload a file, follow its job, read results, KPIs, drivers and discovered topics.

Each route is an adapter: parameters in, one :class:`~voce.service.batches.service.BatchService` call, the
answer out.  Errors are the service's domain errors, turned into statuses by :mod:`voce.service.errors`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from voce.service.batches import exports
from voce.service.batches.schemas import BatchCreated, BatchList, BatchStatus, PreviewResponse, RowPage
from voce.service.batches.service import BatchService, Granularity, Sentiment, entry_yaml, parse_mapping
from voce.service.deps import AUTH_RESPONSES, CallerDep, FiltersDep, ReadBatchesDep, WriteBatchesDep
from voce.service.errors import ErrorEnvelope
from voce.service.privacy.modes import PiiMode

if TYPE_CHECKING:
    from voce.models.taxonomy import Taxonomy

router = APIRouter(prefix="/v1", tags=["batches"], responses=AUTH_RESPONSES)

#: integer parameters are bounded (422 past them): an offset past int64 was a 500 from the database driver
MAX_OFFSET = 1_000_000_000
#: a discovered topic's id (-1: BERTopic's outliers)
TopicId = Annotated[int, Path(ge=-1, le=1_000_000)]


def _attachment(stem: str, ext: str) -> dict[str, str]:
    """Content-Disposition for any batch name: an ASCII fallback plus the RFC 5987 UTF-8 name."""
    name = "".join(ch for ch in f"{stem}-voce.{ext}" if ch.isprintable())
    ascii_name = "".join(ch if ch.isascii() and ch not in '"\\' else "_" for ch in name)
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"}


@router.post("/batches/preview", response_model=PreviewResponse, operation_id="preview_batch_file")
async def preview(
    batches: WriteBatchesDep, file: Annotated[UploadFile, File(description="CSV, XLSX or JSONL (the first rows are enough)")]
) -> PreviewResponse:
    """Columns, the first rows and a guessed column mapping, for the upload page."""
    tmp = batches.scratch_path("preview")
    try:
        await batches.receive(file.read, tmp)
        # parsing (an XLSX takes seconds) runs off the event loop
        return await run_in_threadpool(batches.preview, tmp, file.filename or "")
    finally:
        tmp.unlink(missing_ok=True)


@router.post("/batches", response_model=BatchCreated, status_code=202, operation_id="create_batch")
async def create_batch(
    batches: WriteBatchesDep,
    caller: CallerDep,
    file: Annotated[UploadFile, File(description="CSV (any delimiter; UTF-8/BOM/Latin-1/UTF-16), XLSX or JSONL")],
    mapping: Annotated[
        str | None,
        Form(description='JSON: {"text": "comment", "nps": "score", "date": "date", "segments": ["region"], ...};'
                         " omitted = guessed from the column names"),
    ] = None,
    name: Annotated[str | None, Form(max_length=256)] = None,
    pii_mode: Annotated[
        PiiMode | None,
        Form(description="How personal data (e-mails, phones, IBANs, cards, codici fiscali, partite IVA, names after "
                         "a cue) is stored: redact (<EMAIL>), mask (m****@e******.com) or keep; omitted = the "
                         "deployment's VOCE_PII_MODE. The analysis always reads the original text."),
    ] = None,
) -> BatchCreated:
    """Upload a file and queue its analysis; poll `GET /v1/batches/{id}` for progress.  Personal data is redacted
    before anything is stored, and the uploaded file is deleted once the batch is done."""
    columns = parse_mapping(mapping)
    batch_id, dest = batches.new_upload()
    await batches.receive(file.read, dest)
    # format checks and the database write run off the event loop
    return await run_in_threadpool(
        batches.submit, dest, batch_id=batch_id, filename=file.filename or "", mapping=columns, caller=caller, name=name,
        pii_mode=pii_mode,
    )


@router.get("/batches", response_model=BatchList, operation_id="list_batches")
def list_batches(
    batches: ReadBatchesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> BatchList:
    """Batches, newest first."""
    return batches.list_batches(limit, offset)


@router.get("/batches/{batch_id}", response_model=BatchStatus, operation_id="get_batch")
def get_batch(batch_id: str, batches: ReadBatchesDep) -> BatchStatus:
    """Status, progress (rows done / total) and ETA."""
    return batches.status(batch_id)


@router.post("/batches/{batch_id}/cancel", status_code=202, operation_id="cancel_batch")
def cancel_batch(batch_id: str, batches: WriteBatchesDep) -> BatchStatus:
    """Cancel a queued or running batch: a queued one at once, a running one at its next chunk (``cancel_requested``
    until then); the rows analysed so far are kept, the upload is deleted; a finished batch is returned unchanged."""
    return batches.cancel(batch_id)


@router.delete(
    "/batches/{batch_id}", status_code=204, operation_id="delete_batch",
    responses={409: {"model": ErrorEnvelope, "description": "the batch is still being analysed"}},
)
def delete_batch(batch_id: str, batches: WriteBatchesDep) -> None:
    """Delete a finished batch, its rows and its uploaded file."""
    batches.delete(batch_id)


@router.get(
    "/batches/{batch_id}/results", operation_id="get_batch_results",
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}, "application/vnd.openxmlformats-"
                                 "officedocument.spreadsheetml.sheet": {}}}},
)
def results(
    batch_id: str, batches: ReadBatchesDep,
    format: Annotated[Literal["jsonl", "csv", "xlsx"], Query(description="jsonl | csv | xlsx")] = "jsonl",
) -> Any:
    """Every row: the `/v1/analyze` object (or its error) plus the original columns.  Rows analysed so far
    while the batch runs; all of them once it is done."""
    export = batches.export(batch_id, format)
    if export.path is not None:
        return FileResponse(
            export.path, filename=export.filename, media_type=export.media_type,
            background=BackgroundTask(export.path.unlink, missing_ok=True),
        )
    return StreamingResponse(
        export.chunks, media_type=export.media_type, headers=_attachment(export.stem, export.extension)
    )


ExportSentiment = Annotated[Sentiment | None, Query(description="drawer list: only this sentiment")]


@router.get(
    "/batches/{batch_id}/export", operation_id="export_batch_for_people",
    responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}},
)
def export(
    batch_id: str,
    request: Request,
    batches: ReadBatchesDep,
    filters: FiltersDep,
    format: Annotated[Literal["xlsx", "csv"], Query(description="xlsx (with a summary sheet) | csv")] = "xlsx",
    lang: Annotated[
        Literal["it", "en"], Query(description="language of headers and labels (the page's ?lang); `language` filters")
    ] = "it",
    delimiter: Annotated[
        Literal["comma", "semicolon", "tab", "pipe"] | None, Query(description="CSV: omitted = the upload's own")
    ] = None,
    encoding: Annotated[
        Literal["utf-8", "cp1252", "utf-16"] | None, Query(description="CSV: omitted = the upload's own")
    ] = None,
    bom: Annotated[bool | None, Query(description="CSV: a byte-order mark (omitted: as the upload; UTF-8 keeps one)")] = None,
    decimal: Annotated[
        Literal["comma", "point"] | None, Query(description="CSV numbers: omitted = comma with ';', else point")
    ] = None,
    sentiment: ExportSentiment = None,
    discovered: Annotated[int | None, Query(ge=-1, le=1_000_000, description="drawer list: a discovered theme")] = None,
    errors: Annotated[bool, Query(description="drawer list: only rows that could not be analysed")] = False,
    q: Annotated[str | None, Query(max_length=200, description="drawer list: text contains")] = None,
) -> Any:
    """The rows of the dashboard's current view (its filters, as `/kpis` takes them) or of a comments list (the
    same filters plus the list's `sentiment`, `discovered`, `errors`, `q`, as `/rows` takes them), for people:
    labels in `lang` with ids in separate columns, a column per topic and touchpoint holding its sentiment,
    the evidence, numbers as numbers; CSV in the upload's delimiter and encoding unless chosen; XLSX with a
    frozen, filterable header and a summary sheet of the same rows' KPIs."""
    selection = exports.Selection(filters, sentiment=sentiment, discovered=discovered, errors=errors, q=q or None)
    taxonomy = _taxonomy_of(request, batches, batch_id)
    out = exports.people_export(
        batches, batch_id, format, selection=selection, language=lang, taxonomy=taxonomy,
        delimiter=exports.DELIMITERS[delimiter] if delimiter else None, encoding=encoding, bom=bom,
        decimal={"comma": ",", "point": "."}[decimal] if decimal else None,
    )
    if out.path is not None:
        return FileResponse(
            out.path, filename=out.filename, media_type=out.media_type,
            background=BackgroundTask(out.path.unlink, missing_ok=True),
        )
    return StreamingResponse(out.chunks, media_type=out.media_type, headers=_attachment(out.stem, out.extension))


def _taxonomy_of(request: Request, batches: BatchService, batch_id: str) -> Taxonomy | None:
    """The taxonomy the batch was scored with (the tenant's stored version, else the configured one), for the
    export's names; None while the model loads (the export then shows ids)."""
    engine = getattr(request.app.state, "engine", None)
    analyzer = getattr(engine, "analyzer", None)
    if analyzer is None:
        return None
    from voce.service.deps import get_taxonomy_store
    from voce.service.learning.taxonomies import batch_taxonomy

    taxonomy: Taxonomy = batch_taxonomy(get_taxonomy_store(request), batches.get(batch_id), analyzer.taxonomy)
    return taxonomy


@router.get("/batches/{batch_id}/kpis", operation_id="get_batch_kpis")
def kpis(
    batch_id: str,
    batches: ReadBatchesDep,
    filters: FiltersDep,
    granularity: Granularity = "auto",
) -> dict[str, Any]:
    """NPS (with CI), CSAT, CES, sentiment, topic and touchpoint drivers (impact on NPS), trends, breakdowns.

    Touchpoints are what the comments are about (from the text); `by_channel` is where they were collected (the
    upload's channel column), and `touchpoint_channel` crosses the two. A theme is a `driver` only when significant,
    on at least `min_driver_support` NPS answers and not the catch-all topic (reported apart as `unclassified`);
    `driver_notes` says why not, `concentration` when it rests on one channel or segment value. Every figure has its
    95% interval; one on fewer than `small_group` rows is marked small. Every filter is repeatable (any value)."""
    return batches.kpis(batch_id, filters, granularity)


@router.get("/batches/{batch_id}/topics", operation_id="get_batch_topics")
def topics(batch_id: str, batches: ReadBatchesDep) -> dict[str, Any]:
    """Topics discovered in this batch (BERTopic on its embeddings), mapped to the taxonomy where one fits."""
    return batches.discovered_topics(batch_id)


@router.get(
    "/batches/{batch_id}/topics/{topic_id}/taxonomy-entry", operation_id="get_discovered_topic_as_taxonomy_entry",
    responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
)
def taxonomy_entry(
    batch_id: str, topic_id: TopicId, batches: ReadBatchesDep,
    format: Annotated[Literal["yaml", "json"], Query(description="yaml (paste into a taxonomy file) | json")] = "yaml",
) -> Any:
    """A discovered theme as a taxonomy entry (names from its IT/EN keywords, its comments as examples), ready to
    edit and add to a custom taxonomy (`VOCE_TAXONOMY`), so a new theme becomes a tracked topic."""
    entry = batches.discovered_topic_entry(batch_id, topic_id)
    if format == "json":
        return entry
    return Response(entry_yaml(entry), media_type="application/yaml; charset=utf-8")


@router.get("/batches/{batch_id}/rows", response_model=RowPage, operation_id="get_batch_rows")
def rows(
    batch_id: str,
    batches: ReadBatchesDep,
    filters: FiltersDep,
    sentiment: Sentiment | None = None,
    discovered: Annotated[int | None, Query(ge=-1, le=1_000_000, description="a discovered topic's id")] = None,
    errors: bool = False,
    q: Annotated[str | None, Query(max_length=200, description="text contains (case-insensitive)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> RowPage:
    """The comments behind a number: filter like the KPIs, then page through them with evidence spans."""
    return batches.rows_page(
        batch_id, filters, sentiment=sentiment, discovered=discovered, errors=errors, q=q, limit=limit, offset=offset
    )
