"""Batch jobs: the store, the pipeline that analyses one batch, and the executors that run it.

Three layers, so a distributed engine (Ray) can take over execution later
without touching the pipeline:

* :class:`BatchStore` — every database read/write of a job.  Claiming a job is
  a compare-and-set on its lease (``worker_id`` + ``heartbeat_at``), so any
  number of workers, in any process, can poll the same database safely.
* :func:`analyze_chunk` — a pure function: prepared rows in, row records out.
  It is the unit a remote executor would ship to its workers.
* :class:`BatchRunner` — drives one claimed batch: count, read in chunks,
  analyse, commit each chunk *and* the progress in one transaction (a crash
  loses at most the chunk in flight, which is redone, never duplicated), then
  discover topics on the stored embeddings.
* :class:`LocalExecutor` — N threads polling the store: in-process inside the
  API (embedded default) or in ``voce worker`` processes beside it.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import sessionmaker

from voce.models.analyzer import Analyzer
from voce.models.types import DocumentError, DocumentInput, DocumentResult
from voce.service.db import Batch, BatchRow, utcnow
from voce.service.uploads import (
    ColumnMapping,
    PreparedRow,
    UploadError,
    check_mapping,
    detect_format,
    guess_mapping,
    open_table,
    prepare_row,
    preview_rows,
)

log = logging.getLogger("voce.jobs")

#: characters per document in batches: long chat transcripts are windowed, not rejected
BATCH_MAX_CHARS = 100_000


#: the rows table for Core bulk statements (inserts of a whole chunk, bulk updates)
ROWS: Table = BatchRow.__table__  # type: ignore[assignment]


class LeaseLost(RuntimeError):
    """Another worker took the batch over (this one was presumed dead); stop without writing."""


# ------------------------------------------------------------------- store
class BatchStore:
    """All persistence of batch jobs (SQLite or PostgreSQL through SQLAlchemy)."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    # -- creation and reads
    def create(self, **fields: Any) -> Batch:
        with self.sessions() as s, s.begin():
            b = Batch(status="queued", rows_done=0, rows_error=0, run_rows_start=0, attempts=0, **fields)
            s.add(b)
        return b

    def get(self, batch_id: str) -> Batch | None:
        with self.sessions() as s:
            return s.get(Batch, batch_id)

    def list_batches(self, limit: int = 100, offset: int = 0) -> list[Batch]:
        with self.sessions() as s:
            q = select(Batch).order_by(Batch.created_at.desc(), Batch.id).limit(limit).offset(offset)
            return list(s.scalars(q))

    def delete(self, batch_id: str) -> bool:
        with self.sessions() as s, s.begin():
            b = s.get(Batch, batch_id)
            if b is None:
                return False
            s.execute(ROWS.delete().where(BatchRow.batch_id == batch_id))
            s.delete(b)
        return True

    # -- leases
    def claim(self, worker_id: str, lease_seconds: float, batch_id: str | None = None) -> Batch | None:
        """Take the oldest queued batch (or ``batch_id``), or a running one whose worker stopped reporting."""
        now = utcnow()
        stale = now - dt.timedelta(seconds=lease_seconds)
        with self.sessions() as s:
            q = (
                select(Batch.id)
                .where(Batch.status.in_(("queued", "running")))
                .where((Batch.worker_id.is_(None)) | (Batch.heartbeat_at < stale))
            )
            if batch_id is not None:
                q = q.where(Batch.id == batch_id)
            candidates = list(s.scalars(q.order_by(Batch.created_at).limit(5)))
        for batch_id in candidates:
            with self.sessions() as s, s.begin():
                res = s.execute(
                    update(Batch)
                    .where(Batch.id == batch_id, Batch.status.in_(("queued", "running")))
                    .where((Batch.worker_id.is_(None)) | (Batch.heartbeat_at < stale))
                    .values(
                        worker_id=worker_id, heartbeat_at=now, status="running", attempts=Batch.attempts + 1,
                        started_at=_coalesce(Batch.started_at, now), run_started_at=now,
                        run_rows_start=Batch.rows_done,
                    )
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    return s.get(Batch, batch_id)
        return None

    def _owned(self, s: Any, batch_id: str, worker_id: str, **values: Any) -> None:
        res = s.execute(
            update(Batch).where(Batch.id == batch_id, Batch.worker_id == worker_id).values(heartbeat_at=utcnow(), **values)
        )
        if res.rowcount != 1:
            raise LeaseLost(batch_id)

    def heartbeat(self, batch_id: str, worker_id: str, **values: Any) -> None:
        with self.sessions() as s, s.begin():
            self._owned(s, batch_id, worker_id, **values)

    def release(self, batch_id: str, worker_id: str) -> None:
        """Give the lease back (graceful stop) so another worker resumes at once; a graceful stop is not
        counted as a failed attempt."""
        with self.sessions() as s, s.begin():
            s.execute(
                update(Batch)
                .where(Batch.id == batch_id, Batch.worker_id == worker_id)
                .values(worker_id=None, attempts=Batch.attempts - 1)
            )

    def commit_chunk(self, batch_id: str, worker_id: str, rows: list[dict[str, Any]], next_row: int) -> None:
        """Rows and progress in one transaction: all or nothing, and only while we hold the lease."""
        n_err = sum(1 for r in rows if not r["ok"])
        try:
            with self.sessions() as s, s.begin():
                self._owned(s, batch_id, worker_id, rows_done=next_row, rows_error=Batch.rows_error + n_err)
                if rows:
                    s.execute(ROWS.insert(), [{"batch_id": batch_id, **r} for r in rows])
        except IntegrityError as exc:  # a row already written: someone else resumed this batch
            raise LeaseLost(batch_id) from exc

    def restart_rows(self, batch_id: str, worker_id: str) -> None:
        """Drop every stored row of the batch and its progress (the model changed under a resumed batch)."""
        with self.sessions() as s, s.begin():
            self._owned(s, batch_id, worker_id, rows_done=0, rows_error=0, run_rows_start=0, discovery=None)
            s.execute(ROWS.delete().where(ROWS.c.batch_id == batch_id))

    def finish(self, batch_id: str, worker_id: str, status: str, **values: Any) -> None:
        with self.sessions() as s, s.begin():
            self._owned(s, batch_id, worker_id, status=status, phase=None, finished_at=utcnow(), **values)
            s.execute(update(Batch).where(Batch.id == batch_id).values(worker_id=None))

    # -- rows
    def iter_rows(self, batch_id: str, page: int = 2000, columns: tuple[str, ...] = ()) -> Iterator[Any]:
        """Rows in upload order, a page at a time (exports of 100k rows never load them all).

        With ``columns`` the items are light SQLAlchemy rows (attribute access) instead of ORM objects.
        """
        cols = [getattr(BatchRow, c) for c in ("row", *[c for c in columns if c != "row"])] if columns else [BatchRow]
        last = -1
        while True:
            with self.sessions() as s:
                q = select(*cols).where(BatchRow.batch_id == batch_id, BatchRow.row > last).order_by(BatchRow.row)
                items = [r if columns else r[0] for r in s.execute(q.limit(page))]
            if not items:
                return
            yield from items
            last = items[-1].row

    def rows_by_index(self, batch_id: str, rows: list[int]) -> dict[int, BatchRow]:
        if not rows:
            return {}
        with self.sessions() as s:
            q = select(BatchRow).where(BatchRow.batch_id == batch_id, BatchRow.row.in_(rows))
            return {r.row: r for r in s.scalars(q)}

    def set_discovered(self, batch_id: str, worker_id: str, rows: list[int], topics: list[int]) -> None:
        from sqlalchemy import bindparam

        with self.sessions() as s, s.begin():
            self._owned(s, batch_id, worker_id)
            s.execute(update(BatchRow).where(BatchRow.batch_id == batch_id).values(discovered=None))
            if rows:
                stmt = (
                    ROWS.update()
                    .where(ROWS.c.batch_id == batch_id)
                    .where(ROWS.c.row == bindparam("r"))
                    .values(discovered=bindparam("t"))
                )
                s.connection().execute(stmt, [{"r": r, "t": t} for r, t in zip(rows, topics, strict=True)])


def _coalesce(col: Any, value: Any) -> Any:
    from sqlalchemy import func

    return func.coalesce(col, value)


def submit_upload(
    store: BatchStore,
    path: Path,
    *,
    filename: str,
    mapping: ColumnMapping | None,
    batch_id: str,
    tenant: str = "default",
    api_key_hash: str | None = None,
    name: str | None = None,
) -> tuple[Batch, list[str]]:
    """Register a stored upload as a queued batch: detect its format, check (or guess) the mapping.

    ``path`` is already under the data folder; on a bad file it is removed and :class:`UploadError` raised.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
        fmt = detect_format(filename, head)
        final = path.with_suffix(f".{fmt}")
        path.rename(final)
        path = final
        table = open_table(path, fmt)
        if mapping is None:
            mapping = guess_mapping(table.columns, preview_rows(table, 20))
            if mapping is None:
                raise UploadError(f"no text column could be guessed; send a mapping. Columns: {table.columns}")
        check_mapping(mapping, table.columns)
    except UploadError:
        path.unlink(missing_ok=True)
        raise
    except (csv.Error, OSError, ValueError) as exc:  # a file no reader can make sense of: a clear 422, no orphan
        path.unlink(missing_ok=True)
        raise UploadError(f"the file cannot be read as {Path(filename).suffix or 'a table'}: {exc}") from exc
    clean_name = "".join(ch for ch in (name or filename or batch_id) if ch.isprintable())[:256] or batch_id
    batch = store.create(
        id=batch_id, tenant=tenant, api_key_hash=api_key_hash, name=clean_name,
        file_format=fmt, file_path=str(path.resolve()), file_bytes=path.stat().st_size, mapping=mapping.model_dump(),
    )
    return batch, table.columns


# ---------------------------------------------------------------- pipeline
def analyze_chunk(analyzer: Analyzer, prepared: list[PreparedRow]) -> list[dict[str, Any]]:
    """Analyse prepared rows into ``batch_rows`` records (pure: no database, no globals).

    Rows may repeat a caller id, so documents go through under positional ids
    and get their own id back afterwards.
    """
    docs = [p.doc.model_copy(update={"id": f"#{i}"}) for i, p in enumerate(prepared) if isinstance(p.doc, DocumentInput)]
    results, errors, vecs = analyzer.analyze_with_embeddings(docs) if docs else ([], [], np.zeros((0, 0), np.float32))
    by_pos: dict[str, tuple[DocumentResult | DocumentError, np.ndarray | None]] = {}
    for k, r in enumerate(results):
        by_pos[r.id] = (r, vecs[k])
    for e in errors:
        by_pos[e.id] = (e, None)
    out = []
    for i, p in enumerate(prepared):
        if isinstance(p.doc, DocumentError):
            item: DocumentResult | DocumentError = p.doc
            vec = None
        else:
            found, vec = by_pos[f"#{i}"]
            item = found.model_copy(update={"id": p.doc.id})
        out.append(_row_record(p, item, vec))
    return out


def _row_record(p: PreparedRow, item: DocumentResult | DocumentError, vec: np.ndarray | None) -> dict[str, Any]:
    doc = p.doc
    text = None
    if isinstance(doc, DocumentInput):
        text = doc.text if not doc.turns else None
    rec: dict[str, Any] = {
        "row": p.row,
        "doc_id": item.id,
        "original": p.original,
        "warnings": p.warnings or None,
        "date": p.date,
        "channel": p.channel,
        "segments": p.segments or None,
        "nps": p.nps,
        "csat": p.csat,
        "ces": p.ces,
        "discovered": None,
    }
    if isinstance(item, DocumentError):
        return rec | {
            "ok": False, "text": text, "result": item.model_dump(mode="json"), "embedding": None, "language": None,
            "sentiment": None, "positive": 0.0, "negative": 0.0, "detractor": None, "topics": None, "touchpoints": None,
        }
    return rec | {
        "ok": True,
        "text": item.text or text,
        "result": item.model_dump(mode="json", exclude_none=True),
        "embedding": None if vec is None else vec.astype(np.float16).tobytes(),
        "language": item.language,
        "sentiment": item.sentiment.label,
        "positive": item.sentiment.scores.positive,
        "negative": item.sentiment.scores.negative,
        "detractor": item.detractor.probability,
        "topics": [[t.id, t.sentiment.label] for t in item.topics],
        "touchpoints": [t.id for t in item.touchpoints],
    }


@dataclass(frozen=True)
class RunnerConfig:
    chunk_rows: int = 64
    lease_seconds: float = 60.0
    discovery: bool = True
    discovery_seed: int = 13
    # a batch claimed more often than this took its worker down each time: it fails instead of looping
    max_attempts: int = 3


class BatchRunner:
    """Runs one claimed batch to the end (or until stopped / the lease is lost)."""

    def __init__(
        self,
        store: BatchStore,
        analyzer: Analyzer,
        worker_id: str,
        config: RunnerConfig,
        stop: threading.Event | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        # batches window long documents (chat transcripts) instead of rejecting them like the sync API
        self.analyzer = analyzer.with_config(replace(analyzer.config, max_chars=BATCH_MAX_CHARS))
        self.worker_id = worker_id
        self.config = config
        self.stop = stop or threading.Event()
        self.on_chunk = on_chunk

    def run(self, batch: Batch) -> str:
        """Returns the final status: done, failed, or 'paused' (stopped/lease lost; another run resumes)."""
        if batch.attempts > self.config.max_attempts:
            # the batch took its worker down every time (out of memory, a crash): stop retrying it
            msg = f"the batch stopped its worker {batch.attempts - 1} times; giving up (rows analysed so far are kept)"
            self.store.finish(batch.id, self.worker_id, "failed", error=msg)
            return "failed"
        # the lease stays fresh while a long step runs (counting a big file, a chunk of long transcripts, discovery)
        beat = _Heartbeat(self.store, batch.id, self.worker_id, self.config.lease_seconds / 4)
        try:
            with beat:
                return self._run(batch)
        except LeaseLost:
            log.warning("batch %s: lease lost; another worker continues it", batch.id)
            return "paused"
        except Exception as exc:  # the job fails with a clear message; rows already stored stay
            ref = uuid.uuid4().hex[:12]
            log.exception("batch %s failed (reference %s)", batch.id, ref)
            try:
                self.store.finish(batch.id, self.worker_id, "failed", error=_public_error(exc, ref))
            except LeaseLost:
                return "paused"
            return "failed"

    def _run(self, batch: Batch) -> str:
        bid, wid = batch.id, self.worker_id
        mapping = ColumnMapping.model_validate(batch.mapping)
        path = Path(batch.file_path)
        if not path.is_file():
            raise BatchInputMissing("the uploaded file is no longer in the data folder")
        table = open_table(path, batch.file_format)  # type: ignore[arg-type]
        version = self.analyzer.bundle.version
        if batch.rows_done and batch.model_version and batch.model_version != version:
            # one batch, one model: rows from two versions would not be comparable
            log.warning("batch %s: started with model %s, resuming with %s; analysing it again from the start",
                        bid, batch.model_version, version)
            self.store.restart_rows(bid, wid)
            batch.rows_done = 0
        total = batch.total_rows
        if total is None:
            self.store.heartbeat(bid, wid, phase="reading")
            total = table.count()
        self.store.heartbeat(
            bid, wid, phase="analysing", total_rows=total, model_version=self.analyzer.bundle.version,
            taxonomy_version=self.analyzer.taxonomy.version,
        )
        start = batch.rows_done
        chunk: list[PreparedRow] = []
        row = -1
        for row, record in enumerate(table.records()):
            if row < start:
                continue
            chunk.append(prepare_row(row, record, mapping))
            if len(chunk) >= self.config.chunk_rows:
                self._commit(bid, chunk)
                chunk = []
                if self.stop.is_set():
                    self.store.release(bid, wid)
                    return "paused"
        if chunk:
            self._commit(bid, chunk)
        if row + 1 != total:  # the file changed under us; report instead of guessing
            self.store.heartbeat(bid, wid, total_rows=max(row + 1, 0))
        if self.config.discovery:
            self._discover(bid)
        self.store.finish(bid, wid, "done")
        return "done"

    def _commit(self, bid: str, chunk: list[PreparedRow]) -> None:
        records = analyze_chunk(self.analyzer, chunk)
        try:
            self.store.commit_chunk(bid, self.worker_id, records, next_row=chunk[-1].row + 1)
        except StatementError as exc:
            if isinstance(exc, OperationalError | IntegrityError):
                raise
            # one value the database refuses must not fail the batch: find it, store it as a per-row error
            log.warning("batch %s: chunk at row %d refused by the database (%s); storing row by row",
                        bid, chunk[0].row, type(exc).__name__)
            for rec in records:
                try:
                    self.store.commit_chunk(bid, self.worker_id, [rec], next_row=rec["row"] + 1)
                except StatementError as row_exc:
                    if isinstance(row_exc, OperationalError | IntegrityError):
                        raise
                    self.store.commit_chunk(bid, self.worker_id, [_storage_error(rec)], next_row=rec["row"] + 1)
        if self.on_chunk:
            self.on_chunk(chunk[-1].row + 1)

    def _discover(self, bid: str) -> None:
        """BERTopic on the stored embeddings; a failure here is recorded, the analysis stays usable."""
        self.store.heartbeat(bid, self.worker_id, phase="discovering")
        rows, texts, langs, assigned, vecs = [], [], [], [], []
        for r in self.store.iter_rows(bid, columns=("row", "ok", "text", "language", "topics", "embedding")):
            if not r.ok or r.embedding is None:
                continue
            rows.append(r.row)
            texts.append(r.text or "")
            langs.append(r.language)
            assigned.append([t[0] for t in (r.topics or [])])
            vecs.append(np.frombuffer(r.embedding, dtype=np.float16))
        try:
            from voce.models.discovery import discover_topics, taxonomy_topic_labels

            emb = np.vstack(vecs).astype(np.float32) if vecs else np.zeros((0, self.analyzer.encoder.dim), np.float32)
            labels = taxonomy_topic_labels(self.analyzer.taxonomy)
            result = discover_topics(
                texts, emb, langs, assigned_topics=assigned, topic_labels=labels, seed=self.config.discovery_seed
            )
            payload = result.model_dump(mode="json")
            assignments = payload.pop("assignments", [])
            self.store.set_discovered(bid, self.worker_id, rows, assignments)
            self.store.heartbeat(bid, self.worker_id, discovery=payload, discovery_error=None)
        except LeaseLost:
            raise
        except Exception as exc:
            ref = uuid.uuid4().hex[:12]
            log.exception("batch %s: topic discovery failed (reference %s)", bid, ref)
            self.store.heartbeat(bid, self.worker_id, discovery_error=_public_error(exc, ref))


class BatchInputMissing(RuntimeError):
    """The upload is gone (deleted, or this worker does not share the data folder)."""


def _public_error(exc: Exception, ref: str) -> str:
    """What a client may read about a failure: our own messages verbatim, anything else by reference only
    (a database error would echo SQL and customer text)."""
    if isinstance(exc, UploadError | BatchInputMissing):
        return f"{exc} (reference {ref})"
    return f"internal error while analysing the batch; reference {ref} in the service log"


def _storage_error(rec: dict[str, Any]) -> dict[str, Any]:
    """The row as a per-row error when the database refused one of its values."""
    doc_id = str(rec.get("doc_id") or f"row-{rec['row'] + 1}")[:128]
    return {
        "row": rec["row"], "doc_id": doc_id, "ok": False, "text": None, "original": {}, "warnings": None,
        "result": {"id": doc_id, "error": {"code": "UnstorableRow", "message": "a value of this row could not be stored"}},
        "embedding": None, "date": None, "channel": None, "segments": None, "nps": None, "csat": None, "ces": None,
        "language": None, "sentiment": None, "positive": 0.0, "negative": 0.0, "detractor": None, "topics": None,
        "touchpoints": None, "discovered": None,
    }


class _Heartbeat:
    """Keeps the lease fresh while a long step (topic discovery) runs."""

    def __init__(self, store: BatchStore, bid: str, wid: str, every: float) -> None:
        self.store, self.bid, self.wid, self.every = store, bid, wid, every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"voce-heartbeat-{bid[:8]}")

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            try:
                self.store.heartbeat(self.bid, self.wid)
            except LeaseLost:
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------- executors
class BatchExecutor(Protocol):
    """Runs queued batches.  A Ray executor would implement the same three methods and ship
    :func:`analyze_chunk` calls to its cluster; the store and the pipeline stay as they are."""

    def start(self) -> None: ...

    def notify(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...


class LocalExecutor:
    """``threads`` workers in this process, polling the store (woken at once by :meth:`notify`)."""

    def __init__(
        self,
        store: BatchStore,
        analyzer: Callable[[], Analyzer | None],
        config: RunnerConfig,
        threads: int = 1,
        poll_seconds: float = 2.0,
        name: str = "api",
    ) -> None:
        self.store = store
        self.analyzer = analyzer
        self.config = config
        self.threads = threads
        self.poll_seconds = poll_seconds
        self.worker_prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, args=(f"{self.worker_prefix}-{i}",), daemon=True, name=f"voce-worker-{i}")
            t.start()
            self._threads.append(t)

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=timeout)

    def run_until_idle(self, worker_id: str | None = None) -> int:
        """Process batches in the calling thread until none is claimable (CLI, tests); returns how many ran."""
        n = 0
        wid = worker_id or f"{self.worker_prefix}-fg"
        while not self._stop.is_set() and self._once(wid):
            n += 1
        return n

    def _once(self, wid: str) -> bool:
        analyzer = self.analyzer()
        if analyzer is None:
            return False
        batch = self.store.claim(wid, self.config.lease_seconds)
        if batch is None:
            return False
        log.info("worker %s: batch %s (%s), from row %d", wid, batch.id, batch.name, batch.rows_done)
        status = BatchRunner(self.store, analyzer, wid, self.config, stop=self._stop).run(batch)
        log.info("worker %s: batch %s -> %s", wid, batch.id, status)
        return True

    def _loop(self, wid: str) -> None:
        while not self._stop.is_set():
            try:
                worked = self._once(wid)
            except Exception:  # a database hiccup must not kill the worker thread
                log.exception("worker %s: polling failed", wid)
                worked = False
            if not worked:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()


def new_worker_name() -> str:
    return f"worker-{uuid.uuid4().hex[:8]}"


def eta_seconds(b: Batch, now: dt.datetime | None = None) -> float | None:
    """Remaining time from the current run's rate (None until it has a rate)."""
    if b.status != "running" or not b.total_rows or not b.run_started_at:
        return None
    now = now or utcnow()
    done = b.rows_done - b.run_rows_start
    elapsed = (now - b.run_started_at).total_seconds()
    if done <= 0 or elapsed <= 0:
        return None
    return round(max(b.total_rows - b.rows_done, 0) * elapsed / done, 1)


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
