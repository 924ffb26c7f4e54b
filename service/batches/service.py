"""What the routers, the page and the CLI do with batches: one method each, raising the domain errors of
:mod:`voce.service.batches.errors` (never HTTP errors), so every entry point gives the same answers.

:class:`BatchService` holds what the calls share: the store, where uploads go, the upload limit, where topic
labels come from (the loaded analyzer's taxonomy in the API, the configured taxonomy in the CLI: the same one),
who to tell when a batch is queued, and the facts of recently viewed batches.
"""
from __future__ import annotations

import copy
import csv
import datetime as dt
import functools
import json
import re
import shutil
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from sqlalchemy import select

from voce.models.caches import LRUCache
from voce.service import analytics
from voce.service.analytics import Filters, RowFacts
from voce.service.batches import exports, retention, rows
from voce.service.batches.errors import (
    BatchBusy,
    BatchNotFound,
    InvalidFilter,
    InvalidUpload,
    TopicNotFound,
    UploadStoreUnavailable,
    UploadTooLarge,
)
from voce.service.batches.objects import LocalUploads, UploadStore, UploadStoreError, is_remote
from voce.service.batches.progress import ChunkRate, NotesTally, RowNotes
from voce.service.batches.retention import private_file, private_folder
from voce.service.batches.schemas import BatchCreated, BatchList, BatchStatus, PreviewResponse, RowPage, batch_status
from voce.service.batches.store import BatchStore
from voce.service.db import Batch, BatchRow, utcnow
from voce.service.privacy import Redactor
from voce.service.uploads import (
    ColumnMapping,
    UploadError,
    UploadLimitExceeded,
    check_mapping,
    detect_format,
    guess_mapping,
    mapping_summary,
    normalise_xlsx,
    open_table,
    preview_rows,
    profile_columns,
    validation_message,
)
from voce.service.xlsx import XlsxLimits

if TYPE_CHECKING:
    from voce.models.taxonomy import Taxonomy
    from voce.service.privacy import PiiMode
    from voce.service.settings import Settings

ExportFormat = Literal["jsonl", "csv", "xlsx"]
#: rows of an upload's head that roles are guessed from and the mapping summary counts (the page shows 5)
SAMPLE_ROWS, PREVIEW_ROWS = 200, 5
Granularity = Literal["auto", "day", "week", "month"]
Sentiment = Literal["positive", "neutral", "negative", "mixed"]
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: a discovered theme as a taxonomy entry: up to this many example comments, each at most this long
_ENTRY_EXAMPLES, _ENTRY_EXAMPLE_CHARS = 12, 300


@dataclass(frozen=True)
class Caller:
    """Who made a call: its tenant (chosen by its API key) and the SHA-256 of that key, recorded on its batches."""

    tenant: str = "default"
    api_key_hash: str | None = None


@dataclass(frozen=True)
class Export:
    """A batch's results in one format: streamed ``chunks`` (JSONL, CSV) or a written temporary ``path`` (XLSX,
    which the caller moves or deletes)."""

    stem: str
    extension: ExportFormat
    media_type: str
    chunks: Iterator[bytes] | None = None
    path: Path | None = None

    @property
    def filename(self) -> str:
        return f"{self.stem}-voce.{self.extension}"


# ------------------------------------------------------------------ inputs
def _coded(error: InvalidUpload | UploadTooLarge, exc: UploadError) -> InvalidUpload | UploadTooLarge:
    """The batch error with the upload error's code and parameters as the envelope's ``details`` (the page
    translates them; the message stays the readable English one)."""
    error.details = [{"code": exc.code, **exc.params}]  # type: ignore[union-attr,attr-defined]
    return error


def parse_mapping(raw: str | None) -> ColumnMapping | None:
    """A column mapping sent as JSON text (form field, CLI option); blank means: guess it from the file."""
    if raw is None or not raw.strip():
        return None
    try:
        return ColumnMapping.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise _coded(InvalidUpload(f"mapping: not valid JSON ({exc.msg})"),
                     UploadError("", "upload.mapping_invalid", reason=exc.msg)) from exc
    except ValidationError as exc:
        raise _coded(InvalidUpload(f"mapping.{validation_message(exc)}"),
                     UploadError("", "upload.mapping_invalid", reason=validation_message(exc))) from exc


def touchpoint_names(taxonomy: Taxonomy, language: str = "en") -> dict[str, str]:
    """Touchpoint id -> display name: what names a channel that is a touchpoint id (topic ids may be raw channels)."""
    return {e.id: e.names.get(language) or next(iter(e.names.values())) for e in taxonomy.touchpoints.entries}


def make_filters(
    *,
    touchpoint: str | list[str] | None = None,
    channel: str | list[str] | None = None,
    topic: str | list[str] | None = None,
    language: str | list[str] | None = None,
    segment: str | list[str] | None = None,
    period: str | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> Filters:
    """The filters shared by the KPI report and the comments behind it (so the numbers and the list agree); each
    may be one value or several (any of them matches). Parsing is :class:`~voce.service.analytics.Filters`'s."""
    try:
        return Filters(
            touchpoint=touchpoint, channel=channel, topic=topic, language=language, segment=segment,  # type: ignore[arg-type]
            period=period, date_from=date_from, date_to=date_to,
        )
    except (ValueError, ValidationError) as exc:
        raise InvalidFilter(f"invalid filter: {exc}") from exc


def with_period(filters: Filters, period: str | None) -> Filters:
    """``filters`` narrowed to ``period`` instead of its own (one side of a comparison); blank keeps it as it is."""
    if period is None or not period.strip():
        return filters
    try:
        return Filters.model_validate({**filters.model_dump(), "period": period})
    except ValidationError as exc:
        raise InvalidFilter(f"invalid filter: {exc}") from exc


def register_upload(
    store: BatchStore,
    path: Path,
    *,
    filename: str,
    mapping: ColumnMapping | None,
    batch_id: str,
    caller: Caller = Caller(),
    name: str | None = None,
    pii_mode: PiiMode | None = None,
    xlsx_limits: XlsxLimits | None = None,
    uploads: UploadStore | None = None,
) -> tuple[Batch, list[str]]:
    """Register a stored upload as a queued batch: detect its format, check (or guess) the mapping.

    ``path`` is already under the data folder; on a bad file it is removed and :class:`InvalidUpload` raised.
    ``pii_mode`` is how the batch stores personal data (None: the worker's ``VOCE_PII_MODE``).
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
        fmt = detect_format(filename, head)
        final = path.with_suffix(f".{fmt}")
        path.rename(final)
        path = final
        if fmt == "xlsx":  # read once, within the limits, into rows the worker streams (uploads.normalise_xlsx)
            path = normalise_xlsx(path, xlsx_limits or XlsxLimits())
        table = open_table(path, fmt)
        if mapping is None:
            mapping = guess_mapping(table.columns, preview_rows(table, SAMPLE_ROWS))
            if mapping is None:
                raise UploadError(f"no text column could be guessed; send a mapping. Columns: {table.columns}",
                                  "upload.no_text_column", columns=", ".join(table.columns))
        check_mapping(mapping, table.columns)
        dialect = exports.upload_dialect(path, table.encoding, table.delimiter) if fmt == "csv" else None
    except UploadLimitExceeded as exc:  # an XLSX past a limit once unzipped: 413, naming the limit
        path.unlink(missing_ok=True)
        raise _coded(UploadTooLarge(str(exc)), exc) from exc
    except UploadError as exc:
        path.unlink(missing_ok=True)
        raise _coded(InvalidUpload(str(exc)), exc) from exc
    except (csv.Error, OSError, ValueError) as exc:  # a file no reader can make sense of: a clear 422, no orphan
        path.unlink(missing_ok=True)
        raise _coded(InvalidUpload(f"the file cannot be read as {Path(filename).suffix or 'a table'}: {exc}"),
                     UploadError("", "upload.unreadable", reason=str(exc))) from exc
    clean_name = "".join(ch for ch in (name or filename or batch_id) if ch.isprintable())[:256] or batch_id
    clean_name = Redactor(pii_mode or "redact").string(clean_name)  # "richiami_3331234567.csv"
    uploads = uploads or LocalUploads()
    size = path.stat().st_size
    try:  # checked and normalised: now where every worker can read it (the data folder, or VOCE_UPLOAD_STORE)
        file_path = uploads.put(path, path.name)  # <batch id>.<format>
    except UploadStoreError as exc:
        path.unlink(missing_ok=True)
        raise UploadStoreUnavailable(str(exc)) from exc
    try:
        batch = store.create(
            id=batch_id, tenant=caller.tenant, api_key_hash=caller.api_key_hash, name=clean_name,
            file_format=fmt, file_path=file_path, file_bytes=size, mapping=mapping.model_dump(),
            pii_mode=pii_mode, columns=table.columns,
        )
    except BaseException:
        if is_remote(file_path):  # not a batch: no object left behind
            uploads.delete(file_path)
        raise
    exports.record_upload_dialect(store, batch.id, dialect)  # its exports come back in the same dialect
    return batch, table.columns


# ------------------------------------------------------------------ discovered topics
def discovered_entry(topic: dict[str, Any], examples: list[str]) -> dict[str, Any]:
    """Taxonomy-entry draft for a discovered topic; validated against the taxonomy format."""
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


def entry_yaml(entry: dict[str, Any]) -> str:
    """A taxonomy entry as YAML to paste under ``topics:`` of a taxonomy file."""
    import yaml

    body = "# a discovered theme as a taxonomy entry: edit the id and names, then add it under `topics:`\n"
    return body + yaml.safe_dump([entry], allow_unicode=True, sort_keys=False, width=120)


# ------------------------------------------------------------------ the service
class BatchService:
    """Submit, follow, read back and delete batches; the one layer under the routers, the page and the CLI."""

    def __init__(
        self,
        store: BatchStore,
        *,
        data_dir: Path,
        max_upload_bytes: int,
        labels: Callable[[], dict[str, str]],
        touchpoint_labels: Callable[[], dict[str, str]] | None = None,
        notify: Callable[[], None] | None = None,
        facts_cache_size: int = 4,
        pii_mode: PiiMode = "redact",
        xlsx_limits: XlsxLimits | None = None,
        uploads: UploadStore | None = None,
    ) -> None:
        self.store = store
        # where uploads wait for their batch (the data folder, or an object store: VOCE_UPLOAD_STORE)
        self.uploads: UploadStore = uploads or LocalUploads()
        self.xlsx_limits = xlsx_limits or XlsxLimits()  # what an XLSX upload may hold once unzipped
        self.pii_mode: PiiMode = pii_mode  # how a new batch stores personal data unless its upload says otherwise
        self.data_dir = data_dir
        self.max_upload_bytes = max_upload_bytes
        self.labels = labels  # topic/touchpoint id -> display name, for the KPI report
        # touchpoint id -> display name, for the channels that are touchpoint ids (None: the labels above)
        self.touchpoint_labels = touchpoint_labels
        self.notify = notify  # told when a batch is queued (wakes the in-process executor)
        # a dashboard asks for KPIs and comment pages many times with different filters, and a finished batch
        # never changes: keep the facts of the last few, keyed by the batch's progress (a running one is re-read)
        self._facts: LRUCache[str, tuple[tuple[Any, ...], list[RowFacts]]] = LRUCache(facts_cache_size)
        # the one tenant this service sees (for_tenant); None: every tenant (the operator's CLI, the workers)
        self.tenant: str | None = None
        # per running batch, its chunk rate (the ETA) and its rows' warnings counted so far (progress.py); shared
        # by the tenant-scoped copies, guarded by one lock (status is polled from the thread pool)
        self._rates: LRUCache[str, ChunkRate] = LRUCache(256)
        self._tallies: LRUCache[str, NotesTally] = LRUCache(64)
        self._progress_lock = threading.Lock()

    def for_tenant(self, tenant: str) -> BatchService:
        """The same service seeing only ``tenant``'s batches: another tenant's batch is not found (never revealed)."""
        scoped = copy.copy(self)
        scoped.tenant = tenant
        return scoped

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: BatchStore | None = None,
        labels: Callable[[], dict[str, str]] | None = None,
        touchpoint_labels: Callable[[], dict[str, str]] | None = None,
        notify: Callable[[], None] | None = None,
    ) -> BatchService:
        """The service on the configured database; labels default to the configured taxonomy's (read once)."""
        spec = settings.analyzer_spec()

        @functools.cache
        def configured() -> Taxonomy:
            from voce.models.spec import load_taxonomy_for

            return load_taxonomy_for(spec)

        return cls(
            store or BatchStore.open(settings.resolved_database_url()), data_dir=settings.data_dir,
            max_upload_bytes=settings.max_upload_bytes,
            labels=labels or (lambda: configured().labels()),
            touchpoint_labels=touchpoint_labels or (lambda: touchpoint_names(configured())),
            notify=notify, pii_mode=settings.pii_mode, xlsx_limits=XlsxLimits.from_settings(settings),
            uploads=settings.uploads(),
        )

    # -- uploads
    def new_upload(self) -> tuple[str, Path]:
        """A fresh batch id and where its upload is kept."""
        batch_id = uuid.uuid4().hex
        return batch_id, self.data_dir / "uploads" / batch_id

    def scratch_path(self, prefix: str) -> Path:
        """A temporary file in the data folder (the caller removes it)."""
        return self.data_dir / "tmp" / f"{prefix}-{uuid.uuid4().hex}"

    async def receive(self, read: Callable[[int], Awaitable[bytes]], dest: Path) -> int:
        """Write an upload to ``dest`` a megabyte at a time, refusing it past the limit or when it is empty; on any
        failure (too large, empty, the request cancelled, the disk full) no part of it is left behind."""
        private_folder(dest.parent)
        size = 0
        try:
            with private_file(dest) as out:
                while chunk := await read(1 << 20):
                    size += len(chunk)
                    if size > self.max_upload_bytes:
                        raise _coded(UploadTooLarge(f"upload exceeds {self.max_upload_bytes} bytes"),
                                     UploadError("", "upload.too_large", limit=self.max_upload_bytes))
                    out.write(chunk)
            if size == 0:
                raise _coded(InvalidUpload("the uploaded file is empty"), UploadError("", "upload.empty"))
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return size

    def preview(self, path: Path, filename: str) -> PreviewResponse:
        """Columns, the first rows and a guessed column mapping of an upload (slow for an XLSX: run off the loop).

        An XLSX is read as at upload (within the limits, into normalised rows, removed here): openpyxl needed an
        ``.xlsx`` name, which the scratch file never had, so every XLSX preview used to fail."""
        rows_file: Path | None = None
        try:
            with path.open("rb") as fh:
                head = fh.read(8)
            fmt = detect_format(filename, head)
            if fmt == "xlsx":
                path = rows_file = normalise_xlsx(path, self.xlsx_limits)
            table = open_table(path, fmt)
            sample = preview_rows(table, SAMPLE_ROWS)
        except UploadLimitExceeded as exc:
            raise _coded(UploadTooLarge(str(exc)), exc) from exc
        except UploadError as exc:
            raise _coded(InvalidUpload(str(exc)), exc) from exc
        except csv.Error as exc:
            raise _coded(InvalidUpload(str(exc)), UploadError(str(exc), reason=str(exc))) from exc
        finally:
            if rows_file is not None:
                rows_file.unlink(missing_ok=True)
        guess = guess_mapping(table.columns, sample)
        return PreviewResponse(
            format=fmt, encoding=table.encoding, delimiter=table.delimiter, columns=table.columns,
            rows=sample[:PREVIEW_ROWS], guessed_mapping=guess.model_dump() if guess else None,
            sample_rows=len(sample),
            profiles={c: p.model_dump() for c, p in profile_columns(table.columns, sample).items()},
            summary=[i.model_dump() for i in mapping_summary(guess, table.columns, sample)] if guess else [],
        )

    def submit(
        self, path: Path, *, batch_id: str, filename: str, mapping: ColumnMapping | None, caller: Caller,
        name: str | None = None, pii_mode: PiiMode | None = None,
    ) -> BatchCreated:
        """Queue a received upload (its format checked, its mapping checked or guessed) and wake the executor;
        ``pii_mode`` (default: the deployment's) says how its personal data is stored.  An upload that does not
        become a batch (refused, or the database gone while it was registered) leaves no file behind."""
        try:
            batch, columns = register_upload(
                self.store, path, filename=filename, mapping=mapping, batch_id=batch_id, caller=caller, name=name,
                pii_mode=pii_mode or self.pii_mode, xlsx_limits=self.xlsx_limits, uploads=self.uploads,
            )
        except BaseException:
            if not self._registered(batch_id):  # under any name registration gave it: <id>.csv, <id>.xlsx.rows...
                for leftover in path.parent.glob(f"{batch_id}*"):
                    leftover.unlink(missing_ok=True)
            raise
        if self.notify is not None:
            self.notify()
        return BatchCreated(id=batch.id, status="queued", mapping=batch.mapping, columns=columns)

    def _registered(self, batch_id: str) -> bool:
        """Whether the batch row exists (a commit whose answer was lost may have gone through); False when the
        database cannot say."""
        try:
            return self.store.get(batch_id) is not None
        except Exception:
            return False

    def submit_file(
        self, src: Path, *, mapping: ColumnMapping | None, caller: Caller = Caller(), name: str | None = None,
        pii_mode: PiiMode | None = None,
    ) -> BatchCreated:
        """Queue a local file: copied into the data folder first, so the batch outlives the original."""
        if not src.is_file():
            raise InvalidUpload(f"{src} does not exist")
        batch_id, dest = self.new_upload()
        private_folder(dest.parent)
        with src.open("rb") as fh, private_file(dest) as out:
            shutil.copyfileobj(fh, out)
        return self.submit(
            dest, batch_id=batch_id, filename=src.name, mapping=mapping, caller=caller, name=name, pii_mode=pii_mode
        )

    # -- jobs
    def get(self, batch_id: str) -> Batch:
        """The batch, when it exists and belongs to this service's tenant (every read and delete goes through here)."""
        b = self.store.get(batch_id)
        if b is None or (self.tenant is not None and b.tenant != self.tenant):
            raise BatchNotFound(f"no batch {batch_id!r}")
        return b

    def exists(self, batch_id: str) -> bool:
        b = self.store.get(batch_id)
        return b is not None and (self.tenant is None or b.tenant == self.tenant)

    def status(self, batch_id: str) -> BatchStatus:
        """The batch's state, its ETA and its rows' warnings and errors counted by kind."""
        b = self.get(batch_id)
        return batch_status(b, eta=self._eta(b), notes=self.row_notes(b))

    def list_batches(self, limit: int = 100, offset: int = 0) -> BatchList:
        found = self.store.list_batches(limit, offset, tenant=self.tenant)
        return BatchList(batches=[batch_status(b, eta=self._eta(b)) for b in found])

    def _eta(self, b: Batch) -> float | None:
        """Seconds left from the batch's chunk rate (:class:`~voce.service.batches.progress.ChunkRate`), fed with
        the rows done and when they landed (a chunk's commit sets ``heartbeat_at``)."""
        if b.status != "running" or b.phase != "analysing" or not b.total_rows:
            return None
        now = utcnow()
        landed = min(b.heartbeat_at or now, now)  # another machine's clock a little ahead: not in the future
        with self._progress_lock:
            rate = self._rates.get(b.id)
            if rate is None:
                rate = ChunkRate()
                self._rates.put(b.id, rate)
            rate.observe(b.rows_done, landed.replace(tzinfo=dt.UTC).timestamp())
            return rate.eta(b.total_rows, now.replace(tzinfo=dt.UTC).timestamp())

    def row_notes(self, b: Batch) -> RowNotes:
        """The stored rows' warnings and errors by kind, each row read once (a running batch's new rows since the
        last call; a batch analysed again from the top is counted again)."""
        with self._progress_lock:
            tally = self._tallies.get(b.id)
            if tally is None or b.rows_done < tally.upto:
                tally = NotesTally()
                self._tallies.put(b.id, tally)
            if b.rows_done > tally.upto:
                upto = b.rows_done
                with self.store.sessions() as s:
                    base = (BatchRow.batch_id == b.id, BatchRow.row >= tally.upto, BatchRow.row < upto)
                    for row, doc_id, warnings in s.execute(
                        select(BatchRow.row, BatchRow.doc_id, BatchRow.warnings).where(*base).order_by(BatchRow.row)
                    ):
                        if warnings:
                            tally.add_warnings(row, doc_id, [str(w) for w in warnings])
                    for row, doc_id, result in s.execute(
                        select(BatchRow.row, BatchRow.doc_id, BatchRow.result).where(*base, BatchRow.ok.is_(False))
                        .order_by(BatchRow.row)
                    ):
                        error = (result or {}).get("error") or {}
                        tally.add_error(row, doc_id, str(error.get("code", "Error")), str(error.get("message", "")))
                tally.upto = upto
            return tally.notes()

    def cancel(self, batch_id: str) -> BatchStatus:
        """Cancel a queued or running batch (a running one stops at its next chunk, keeping the rows stored so far);
        a finished batch is returned as it is."""
        self.get(batch_id)  # not found (another tenant's, or none) before anything changes
        self.store.cancel(batch_id)
        return self.status(batch_id)

    def delete(self, batch_id: str) -> None:
        """Delete a finished batch, its rows and its uploaded file."""
        b = self.get(batch_id)
        if b.status in ("queued", "running"):
            raise BatchBusy("the batch is still being analysed; delete it when it has finished")
        retention.erase(self.store, b, self.data_dir, self.uploads)  # rows, embeddings, discovered topics, upload, exports

    # -- results
    def facts(self, b: Batch) -> list[RowFacts]:
        """The per-row facts of a batch, from memory while the batch has not moved."""
        from voce.service.learning import corrections  # analysts' corrections count instead of the prediction

        progress = (b.status, b.rows_done, b.rows_error, b.finished_at, b.taxonomy_version,
                    corrections.stamp(self.store.sessions, b.id))
        hit = self._facts.get(b.id)
        if hit is not None and hit[0] == progress:
            return hit[1]
        found = corrections.corrected_facts(
            rows.load_facts(self.store, b.id), corrections.active_changes(self.store.sessions, b.id)
        )
        self._facts.put(b.id, (progress, found))
        return found

    def kpis(self, batch_id: str, filters: Filters | None = None, granularity: Granularity = "auto") -> dict[str, Any]:
        """The KPI report (see :mod:`voce.service.analytics`) with topics, touchpoints and channels named by the
        configured taxonomy."""
        facts = self.facts(self.get(batch_id))
        channel_labels = self.touchpoint_labels() if self.touchpoint_labels is not None else None
        report = analytics.batch_kpis(
            facts, filters, labels=self.labels(), channel_labels=channel_labels, granularity=granularity
        )
        return {"batch_id": batch_id, **report.model_dump(mode="json")}

    def compare(
        self,
        batch_id: str,
        filters: Filters | None = None,
        *,
        b_batch: str | None = None,
        a_period: str | None = None,
        b_period: str | None = None,
    ) -> dict[str, Any]:
        """Side B (``b_batch``, default this batch, narrowed to ``b_period``) against side A (this batch in
        ``a_period``), the other filters on both sides (see :func:`voce.service.analytics.compare`); both batches
        are read through this service, so another tenant's batch on either side is not found."""
        a = self.get(batch_id)
        b = self.get(b_batch) if b_batch and b_batch != batch_id else a
        base = filters or Filters()
        fa, fb = with_period(base, a_period), with_period(base, b_period)
        result = analytics.compare(
            self.facts(a), self.facts(b), fa, fb, labels=self.labels(),
            label_a=" · ".join(x for x in (a.name, fa.period) if x), label_b=" · ".join(x for x in (b.name, fb.period) if x),
        )
        return {"batch_a": a.id, "batch_b": b.id, **result.model_dump(mode="json")}

    def rows_page(
        self,
        batch_id: str,
        filters: Filters | None = None,
        *,
        sentiment: Sentiment | None = None,
        discovered: int | None = None,
        errors: bool = False,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RowPage:
        """The comments behind a number: the rows the KPIs counted under ``filters``, narrowed and paged."""
        facts = analytics.apply_filters(self.facts(self.get(batch_id)), filters)
        wanted = [f.row for f in facts if (not errors or not f.ok) and (sentiment is None or f.sentiment == sentiment)]
        if discovered is not None or q:
            extra = {r.row: r for r in self.store.iter_rows(batch_id, columns=rows.SEARCH_COLUMNS)}
            needle = (q or "").lower()
            wanted = [
                i for i in wanted
                if (discovered is None or extra[i].discovered == discovered)
                and (not needle or needle in (extra[i].text or "").lower())
            ]
        page = wanted[offset : offset + limit]
        full = self.store.rows_by_index(batch_id, page)
        return RowPage(total=len(wanted), offset=offset, rows=[rows.row_item(full[i]) for i in page if i in full])

    def export(self, batch_id: str, fmt: ExportFormat, folder: Path | None = None) -> Export:
        """Every row so far with its original columns; an XLSX is written into ``folder`` (default: data exports)."""
        b = self.get(batch_id)
        stem = Path(b.name).stem or batch_id
        if fmt == "jsonl":
            return Export(stem, "jsonl", "application/x-ndjson", chunks=exports.jsonl_lines(self.store, batch_id))
        columns = exports.original_columns(b)
        if fmt == "csv":
            chunks = exports.csv_chunks(self.store, batch_id, columns)
            return Export(stem, "csv", "text/csv; charset=utf-8", chunks=chunks)
        path = exports.write_xlsx(self.store, batch_id, columns, folder or self.data_dir / "exports")
        return Export(stem, "xlsx", XLSX_MEDIA_TYPE, path=path)

    # -- discovered topics
    def discovered_topics(self, batch_id: str) -> dict[str, Any]:
        """Topics discovered in the batch, or why there are none (yet)."""
        b = self.get(batch_id)
        if b.discovery is None:
            if b.discovery_error:
                return {"batch_id": batch_id, "status": "failed", "error": b.discovery_error, "topics": []}
            return {"batch_id": batch_id, "status": "pending" if b.status in ("queued", "running") else "none",
                    "topics": []}
        return {"batch_id": batch_id, "status": "done", **b.discovery}

    def discovered_topic_entry(self, batch_id: str, topic_id: int) -> dict[str, Any]:
        """A discovered topic as a taxonomy entry: its representative comments first, then others it holds."""
        b = self.get(batch_id)
        topics = (b.discovery or {}).get("topics", [])
        found = next((t for t in topics if t.get("id") == topic_id), None)
        if found is None:
            raise TopicNotFound(f"batch {batch_id!r} has no discovered topic {topic_id}")
        examples = [r["text"] for r in found.get("representative", [])]
        for r in self.store.iter_rows(batch_id, columns=rows.SEARCH_COLUMNS):
            if len(examples) >= _ENTRY_EXAMPLES:
                break
            if r.discovered == topic_id and r.text and len(r.text) <= _ENTRY_EXAMPLE_CHARS and r.text not in examples:
                examples.append(r.text)
        return discovered_entry(found, examples)
