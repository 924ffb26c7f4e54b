"""``/v1/batches``: upload a file, follow its job, read results, KPIs, drivers and discovered topics."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask

from voce.service.db import Batch
from voce.service.errors import ApiError, InvalidInput, PayloadTooLarge
from voce.service.jobs import BatchStore, eta_seconds, submit_upload
from voce.service.settings import Settings
from voce.service.uploads import (
    ColumnMapping,
    UploadError,
    detect_format,
    guess_mapping,
    open_table,
    preview_rows,
    validation_message,
)


class NotFound(ApiError):
    status, code = 404, "NotFound"


class Conflict(ApiError):
    status, code = 409, "Conflict"


# ------------------------------------------------------------------ schemas
class BatchStatus(BaseModel):
    id: str
    name: str
    status: Literal["queued", "running", "done", "failed"]
    phase: str | None = Field(description="While running: reading | analysing | discovering.")
    format: str
    tenant: str
    rows_total: int | None = Field(description="Known once the file has been read through.")
    rows_done: int
    rows_error: int
    progress: float = Field(ge=0.0, le=1.0)
    eta_seconds: float | None
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int = Field(description="How many times a worker started it (>1 after a resume).")
    error: str | None
    model_version: str | None
    taxonomy_version: str | None
    mapping: dict[str, Any]
    discovery_error: str | None


class BatchCreated(BaseModel):
    id: str
    status: str
    mapping: dict[str, Any]
    columns: list[str]


class BatchList(BaseModel):
    batches: list[BatchStatus]


class PreviewResponse(BaseModel):
    format: str
    encoding: str | None
    delimiter: str | None
    columns: list[str]
    rows: list[dict[str, Any]]
    guessed_mapping: dict[str, Any] | None


class RowItem(BaseModel):
    row: int
    id: str
    ok: bool
    text: str | None
    language: str | None
    date: dt.date | None
    nps: int | None
    sentiment: str | None
    detractor: float | None
    discovered: int | None
    topics: list[dict[str, Any]]
    touchpoints: list[dict[str, Any]]
    sentences: list[dict[str, Any]]
    error: dict[str, str] | None
    warnings: list[str]
    columns: dict[str, Any]


class RowPage(BaseModel):
    total: int
    offset: int
    rows: list[RowItem]


def batch_status(b: Batch) -> BatchStatus:
    total = b.total_rows
    progress = 1.0 if b.status == "done" else (min(b.rows_done / total, 1.0) if total else 0.0)
    return BatchStatus(
        id=b.id, name=b.name, status=b.status, phase=b.phase, format=b.file_format, tenant=b.tenant,  # type: ignore[arg-type]
        rows_total=total, rows_done=b.rows_done, rows_error=b.rows_error, progress=round(progress, 4),
        eta_seconds=eta_seconds(b), created_at=_utc(b.created_at), started_at=_utc(b.started_at),
        finished_at=_utc(b.finished_at),
        attempts=b.attempts, error=b.error, model_version=b.model_version, taxonomy_version=b.taxonomy_version,
        mapping=b.mapping, discovery_error=b.discovery_error,
    )


# ------------------------------------------------------------- dependencies
def get_store(request: Request) -> BatchStore:
    store: BatchStore | None = getattr(request.app.state, "store", None)
    if store is None:
        from voce.service.errors import NotReady

        raise NotReady("the batch store is not open yet")
    return store


def _settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def filter_params(
    touchpoint: str | None = None,
    topic: str | None = None,
    language: str | None = None,
    segment: Annotated[list[str] | None, Query(description="column:value; repeatable")] = None,
    period: Annotated[str | None, Query(description="2026-03, 2026-W09 or 2026-03-05")] = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> Any:
    """The filters shared by the KPI report and the comments behind it (so the numbers and the list agree)."""
    return _filters(touchpoint, topic, language, segment, period, date_from, date_to)


StoreDep = Annotated[BatchStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
FiltersDep = Annotated[Any, Depends(filter_params)]


def _caller(request: Request) -> tuple[str, str | None]:
    """Tenant and a hash of the API key that made the call (recorded now; enforced in a later release)."""
    tenant = (request.headers.get("x-tenant") or "default").strip()[:128] or "default"
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return tenant, hashlib.sha256(key.encode()).hexdigest() if key else None


def _get(store: BatchStore, batch_id: str) -> Batch:
    b = store.get(batch_id)
    if b is None:
        raise NotFound(f"no batch {batch_id!r}")
    return b


async def _save_upload(file: UploadFile, dest: Path, limit: int) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with dest.open("wb") as out:
        while chunk := await file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                dest.unlink(missing_ok=True)
                raise PayloadTooLarge(f"upload exceeds {limit} bytes")
            out.write(chunk)
    if size == 0:
        dest.unlink(missing_ok=True)
        raise InvalidInput("the uploaded file is empty")
    return size


def _parse_mapping(raw: str | None) -> ColumnMapping | None:
    if raw is None or not raw.strip():
        return None
    try:
        return ColumnMapping.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"mapping: not valid JSON ({exc.msg})") from exc
    except ValidationError as exc:
        raise InvalidInput(f"mapping.{validation_message(exc)}") from exc


def _attachment(stem: str, ext: str) -> dict[str, str]:
    """Content-Disposition for any batch name: an ASCII fallback plus the RFC 5987 UTF-8 name."""
    from urllib.parse import quote

    name = "".join(ch for ch in f"{stem}-voce.{ext}" if ch.isprintable())
    ascii_name = "".join(ch if ch.isascii() and ch not in '"\\' else "_" for ch in name)
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"}


def _utc(d: dt.datetime | None) -> dt.datetime | None:
    """Stored times are naive UTC; the API says so."""
    return d.replace(tzinfo=dt.UTC) if d is not None and d.tzinfo is None else d


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(8)


# --------------------------------------------------------------------- routes
def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["batches"])

    @router.post("/batches/preview", response_model=PreviewResponse, operation_id="preview_batch_file")
    async def preview(
        s: SettingsDep, file: Annotated[UploadFile, File(description="CSV, XLSX or JSONL (the first rows are enough)")]
    ) -> PreviewResponse:
        """Columns, the first rows and a guessed column mapping, for the upload page."""
        tmp = s.data_dir / "tmp" / f"preview-{uuid.uuid4().hex}"
        try:
            await _save_upload(file, tmp, s.max_upload_bytes)

            def read() -> tuple[str, Any, list[dict[str, Any]]]:
                fmt = detect_format(file.filename or "", _head(tmp))
                table = open_table(tmp, fmt)
                return fmt, table, preview_rows(table, 5)

            try:  # parsing (an XLSX takes seconds) runs off the event loop
                fmt, table, rows = await run_in_threadpool(read)
            except (UploadError, csv.Error) as exc:
                raise InvalidInput(str(exc)) from exc
            guess = guess_mapping(table.columns, rows)
            return PreviewResponse(
                format=fmt, encoding=table.encoding, delimiter=table.delimiter, columns=table.columns, rows=rows,
                guessed_mapping=guess.model_dump() if guess else None,
            )
        finally:
            tmp.unlink(missing_ok=True)

    @router.post("/batches", response_model=BatchCreated, status_code=202, operation_id="create_batch")
    async def create_batch(
        request: Request,
        s: SettingsDep,
        store: StoreDep,
        file: Annotated[UploadFile, File(description="CSV (any delimiter; UTF-8/BOM/Latin-1/UTF-16), XLSX or JSONL")],
        mapping: Annotated[
            str | None,
            Form(description='JSON: {"text": "comment", "nps": "score", "date": "date", "segments": ["region"], ...};'
                             " omitted = guessed from the column names"),
        ] = None,
        name: Annotated[str | None, Form(max_length=256)] = None,
    ) -> BatchCreated:
        """Upload a file and queue its analysis; poll `GET /v1/batches/{id}` for progress."""
        batch_id = uuid.uuid4().hex
        cols = _parse_mapping(mapping)
        dest = s.data_dir / "uploads" / batch_id
        await _save_upload(file, dest, s.max_upload_bytes)
        tenant, key_hash = _caller(request)
        try:  # format checks and the database write run off the event loop
            batch, columns = await run_in_threadpool(
                submit_upload, store, dest, filename=file.filename or "", mapping=cols, batch_id=batch_id,
                tenant=tenant, api_key_hash=key_hash, name=name,
            )
        except UploadError as exc:
            raise InvalidInput(str(exc)) from exc
        executor = getattr(request.app.state, "executor", None)
        if executor is not None:
            executor.notify()
        return BatchCreated(id=batch.id, status="queued", mapping=batch.mapping, columns=columns)

    @router.get("/batches", response_model=BatchList, operation_id="list_batches")
    def list_batches(
        store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0)] = 0
    ) -> BatchList:
        """Batches, newest first."""
        return BatchList(batches=[batch_status(b) for b in store.list_batches(limit, offset)])

    @router.get("/batches/{batch_id}", response_model=BatchStatus, operation_id="get_batch")
    def get_batch(batch_id: str, store: StoreDep) -> BatchStatus:
        """Status, progress (rows done / total) and ETA."""
        return batch_status(_get(store, batch_id))

    @router.delete("/batches/{batch_id}", status_code=204, operation_id="delete_batch")
    def delete_batch(batch_id: str, store: StoreDep) -> None:
        """Delete a finished batch, its rows and its uploaded file."""
        b = _get(store, batch_id)
        if b.status in ("queued", "running"):
            raise Conflict("the batch is still being analysed; delete it when it has finished")
        store.delete(batch_id)
        Path(b.file_path).unlink(missing_ok=True)

    @router.get(
        "/batches/{batch_id}/results", operation_id="get_batch_results",
        responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}, "application/vnd.openxmlformats-"
                                     "officedocument.spreadsheetml.sheet": {}}}},
    )
    def results(
        batch_id: str, store: StoreDep, s: SettingsDep,
        format: Annotated[Literal["jsonl", "csv", "xlsx"], Query(description="jsonl | csv | xlsx")] = "jsonl",
    ) -> Any:
        """Every row: the `/v1/analyze` object (or its error) plus the original columns.  Rows analysed so far
        while the batch runs; all of them once it is done."""
        from voce.service import exports

        b = _get(store, batch_id)
        stem = Path(b.name).stem or batch_id
        if format == "jsonl":
            return StreamingResponse(
                exports.jsonl_lines(store, batch_id), media_type="application/x-ndjson",
                headers=_attachment(stem, "jsonl"),
            )
        columns = _original_columns(b)
        if format == "csv":
            return StreamingResponse(
                exports.csv_chunks(store, batch_id, columns), media_type="text/csv; charset=utf-8",
                headers=_attachment(stem, "csv"),
            )
        path = exports.write_xlsx(store, batch_id, columns, s.data_dir / "exports")
        return FileResponse(
            path, filename=f"{stem}-voce.xlsx", background=BackgroundTask(path.unlink, missing_ok=True),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )

    @router.get("/batches/{batch_id}/kpis", operation_id="get_batch_kpis")
    def kpis(
        request: Request,
        batch_id: str,
        store: StoreDep,
        filters: FiltersDep,
        granularity: Literal["auto", "day", "week", "month"] = "auto",
    ) -> dict[str, Any]:
        """NPS (with CI), CSAT, CES, sentiment, topic and touchpoint drivers (impact on NPS), trends, breakdowns."""
        from voce.service import analytics

        b = _get(store, batch_id)
        facts = _facts_cache(request).get(store, b)
        report = analytics.batch_kpis(facts, filters, labels=_labels(request), granularity=granularity)
        return {"batch_id": batch_id, **report.model_dump(mode="json")}

    @router.get("/batches/{batch_id}/topics", operation_id="get_batch_topics")
    def topics(batch_id: str, store: StoreDep) -> dict[str, Any]:
        """Topics discovered in this batch (BERTopic on its embeddings), mapped to the taxonomy where one fits."""
        b = _get(store, batch_id)
        if b.discovery is None:
            if b.discovery_error:
                return {"batch_id": batch_id, "status": "failed", "error": b.discovery_error, "topics": []}
            return {"batch_id": batch_id, "status": "pending" if b.status in ("queued", "running") else "none",
                    "topics": []}
        return {"batch_id": batch_id, "status": "done", **b.discovery}

    @router.get(
        "/batches/{batch_id}/topics/{topic_id}/taxonomy-entry", operation_id="get_discovered_topic_as_taxonomy_entry",
        responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
    )
    def taxonomy_entry(
        batch_id: str, topic_id: int, store: StoreDep,
        format: Annotated[Literal["yaml", "json"], Query(description="yaml (paste into a taxonomy file) | json")] = "yaml",
    ) -> Any:
        """A discovered theme as a taxonomy entry (names from its IT/EN keywords, its comments as examples), ready to
        edit and add to a custom taxonomy (`VOCE_TAXONOMY`), so a new theme becomes a tracked topic."""
        b = _get(store, batch_id)
        topics = (b.discovery or {}).get("topics", [])
        found = next((t for t in topics if t.get("id") == topic_id), None)
        if found is None:
            raise NotFound(f"batch {batch_id!r} has no discovered topic {topic_id}")
        examples = [r["text"] for r in found.get("representative", [])]
        for r in store.iter_rows(batch_id, columns=("row", "discovered", "text")):
            if len(examples) >= 12:
                break
            if r.discovered == topic_id and r.text and r.text[:300] not in examples and len(r.text) <= 300:
                examples.append(r.text)
        entry = discovered_entry(found, examples)
        if format == "json":
            return entry
        import yaml

        body = "# a discovered theme as a taxonomy entry: edit the id and names, then add it under `topics:`\n"
        body += yaml.safe_dump([entry], allow_unicode=True, sort_keys=False, width=120)
        return Response(body, media_type="application/yaml; charset=utf-8")

    @router.get("/batches/{batch_id}/rows", response_model=RowPage, operation_id="get_batch_rows")
    def rows(
        request: Request,
        batch_id: str,
        store: StoreDep,
        filters: FiltersDep,
        sentiment: Literal["positive", "neutral", "negative", "mixed"] | None = None,
        discovered: int | None = None,
        errors: bool = False,
        q: Annotated[str | None, Query(max_length=200, description="text contains (case-insensitive)")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> RowPage:
        """The comments behind a number: filter like the KPIs, then page through them with evidence spans."""
        from voce.service import analytics

        b = _get(store, batch_id)
        facts = analytics.apply_filters(_facts_cache(request).get(store, b), filters)
        wanted = [f.row for f in facts if (not errors or not f.ok) and (sentiment is None or f.sentiment == sentiment)]
        if discovered is not None or q:
            extra = {
                r.row: r for r in store.iter_rows(batch_id, columns=("row", "discovered", "text"))
            }
            needle = (q or "").lower()
            wanted = [
                i for i in wanted
                if (discovered is None or extra[i].discovered == discovered)
                and (not needle or needle in (extra[i].text or "").lower())
            ]
        page = wanted[offset : offset + limit]
        full = store.rows_by_index(batch_id, page)
        return RowPage(total=len(wanted), offset=offset, rows=[_row_item(full[i]) for i in page if i in full])

    return router


def discovered_entry(topic: dict[str, Any], examples: list[str]) -> dict[str, Any]:
    """Taxonomy-entry draft for a discovered topic; validated against the taxonomy format."""
    import re

    from voce.models.taxonomy import TaxonomyEntry

    keywords: dict[str, list[str]] = topic.get("keywords", {})
    words = [w for lang in ("en", "it") for w in keywords.get(lang, [])][:3] or [f"topic {topic.get('id')}"]
    slug = re.sub(r"[^a-z0-9]+", "_", "_".join(words).lower()).strip("_") or f"topic_{topic.get('id')}"
    names = {lang: ", ".join(kw[:3]) for lang, kw in keywords.items() if kw and lang in ("it", "en")}
    descriptions = {
        lang: ("Commenti su: " if lang == "it" else "Comments about: ") + ", ".join(kw[:8])
        for lang, kw in keywords.items() if kw and lang in ("it", "en")
    }
    entry = TaxonomyEntry(
        id=f"new_{slug}"[:60], names=names or {"en": ", ".join(words)}, descriptions=descriptions, examples=examples[:200]
    )
    return entry.model_dump(exclude_defaults=True)


def _original_columns(b: Batch) -> list[str]:
    try:
        return open_table(Path(b.file_path), b.file_format).columns  # type: ignore[arg-type]
    except (UploadError, OSError):
        return ColumnMapping.model_validate(b.mapping).columns()


def _filters(
    touchpoint: str | None, topic: str | None, language: str | None, segment: list[str] | None,
    period: str | None, date_from: dt.date | None, date_to: dt.date | None,
) -> Any:
    from voce.service import analytics

    try:
        seg: dict[str, str] = {}
        for item in segment or []:
            seg.update(analytics.parse_segment(item))
        return analytics.Filters(
            touchpoint=touchpoint, topic=topic, language=language, segment=seg or None, period=period,
            date_from=date_from, date_to=date_to,
        )
    except (ValueError, ValidationError) as exc:
        raise InvalidInput(f"invalid filter: {exc}") from exc


def _labels(request: Request) -> dict[str, str]:
    a = request.app.state.engine.analyzer
    return a.taxonomy.labels() if a is not None else {}


class FactsCache:
    """The per-row facts of recently viewed batches: a dashboard asks for KPIs and comment pages many times
    with different filters, and a finished batch never changes.  Keyed by the batch's progress, so a running
    batch is re-read as rows arrive."""

    def __init__(self, size: int = 4) -> None:
        self._items: OrderedDict[str, tuple[tuple[Any, ...], list[Any]]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, store: BatchStore, b: Batch) -> list[Any]:
        key = (b.status, b.rows_done, b.rows_error, b.finished_at)
        with self._lock:
            hit = self._items.get(b.id)
            if hit is not None and hit[0] == key:
                self._items.move_to_end(b.id)
                return hit[1]
        facts = load_facts(store, b.id)
        with self._lock:
            self._items[b.id] = (key, facts)
            self._items.move_to_end(b.id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return facts


def _facts_cache(request: Request) -> FactsCache:
    cache: FactsCache | None = getattr(request.app.state, "facts_cache", None)
    if cache is None:
        cache = request.app.state.facts_cache = FactsCache()
    return cache


_FACT_COLUMNS = ("row", "ok", "date", "language", "channel", "segments", "nps", "csat", "ces", "sentiment",
                 "positive", "negative", "detractor", "topics", "touchpoints")


def load_facts(store: BatchStore, batch_id: str) -> list[Any]:
    """The slim per-row facts the KPI code aggregates (no result JSON, no embeddings)."""
    from voce.service.analytics import RowFacts

    out = []
    for r in store.iter_rows(batch_id, page=5000, columns=_FACT_COLUMNS):
        out.append(
            RowFacts(
                row=r.row, date=r.date, language=r.language, channel=r.channel, segments=r.segments or {},
                nps=r.nps, csat=r.csat, ces=r.ces, sentiment=r.sentiment, positive=r.positive or 0.0,
                negative=r.negative or 0.0, detractor=r.detractor,
                topics=tuple((t[0], t[1]) for t in (r.topics or [])), touchpoints=tuple(r.touchpoints or ()), ok=r.ok,
            )
        )
    return out


def _row_item(r: Any) -> RowItem:
    res = r.result
    return RowItem(
        row=r.row, id=r.doc_id, ok=r.ok, text=r.text, language=r.language, date=r.date, nps=r.nps,
        sentiment=r.sentiment, detractor=r.detractor, discovered=r.discovered,
        topics=[{"id": t["id"], "sentiment": t["sentiment"]["label"], "score": t["score"], "evidence": t["evidence"]}
                for t in res.get("topics", [])],
        touchpoints=[{"id": t["id"], "score": t["score"], "evidence": t["evidence"]} for t in res.get("touchpoints", [])],
        sentences=[{"offset": x["offset"], "length": x["length"], "sentiment": x["sentiment"]["label"]}
                   for x in res.get("sentences", [])],
        error=res.get("error"), warnings=list(res.get("warnings", [])) + list(r.warnings or []),
        columns=r.original or {},
    )
