"""The pipeline that analyses one claimed batch: read the file in chunks, analyse, commit, discover topics.

* :func:`analyze_chunk` is pure: prepared rows in, row records out.  It is the unit a remote executor (Ray)
  would ship to its workers.
* :class:`BatchRunner` drives one claimed batch: count, read in chunks, analyse, commit each chunk *and* the
  progress in one transaction (a crash loses at most the chunk in flight, which is redone, never duplicated),
  then discover topics on the stored embeddings.
* A database that goes away mid-batch (down, restarting, a network cut) is waited for, not taken for a failure:
  the chunk in flight is kept, retried with back-off until the database answers (``db_outage_seconds``), never
  stored twice, and the outage is written on the batch once it can be; past the wait the run gives the batch
  back (paused) and the next claim resumes it where it stopped.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, StatementError

from voce.models.analyzer import Analyzer
from voce.models.discovery import DiscoveryProcessDied
from voce.models.types import DocumentError, DocumentInput, DocumentResult
from voce.service.batches import retention, rows
from voce.service.batches.objects import LocalUploads, UploadStore, UploadStoreError, is_remote
from voce.service.batches.store import BatchStore, LeaseLost
from voce.service.db import Batch, connection_lost
from voce.service.insights.webhooks import WebhookPolicy
from voce.service.privacy import PiiMode, Redactor
from voce.service.uploads import ColumnMapping, PreparedRow, UploadError, open_table, prepare_row

if TYPE_CHECKING:
    from voce.service.settings import Settings

log = logging.getLogger("voce.jobs")

#: characters per document in batches: long chat transcripts are windowed, not rejected
BATCH_MAX_CHARS = 100_000
#: what a database that cannot be reached raises (server down or restarting, connection reset, network cut);
#: whether it is an outage is then told by the error (:func:`voce.service.db.connection_lost`) or asked of the
#: database itself (:meth:`BatchRunner._database_down`)
DB_OUTAGE_ERRORS = (OperationalError, InterfaceError)
#: a lost connection while the database answers is retried this many times in a row; past that the error is taken
#: for the statement's own (a client-side error that repeats on fresh connections is not a flaky network)
LOST_CONNECTION_RETRIES = 8


#: how often a running batch looks whether cancelling was asked (a light SELECT between chunks)
CANCEL_CHECK_SECONDS = 1.0


class DatabaseUnavailable(RuntimeError):
    """The database stayed unreachable longer than ``RunnerConfig.db_outage_seconds`` (or the worker was stopped
    while waiting): the run ends, the batch keeps its progress and the next claim resumes it."""


class ConnectionKeptFailing(RuntimeError):
    """A statement lost its connection ``LOST_CONNECTION_RETRIES`` times in a row while the database answered: taken
    for an error of the statement (the batch fails with a reference), not for a flaky network."""


def analyze_chunk(
    analyzer: Analyzer, prepared: list[PreparedRow], redactor: Redactor | None = None
) -> list[dict[str, Any]]:
    """Analyse prepared rows into ``batch_rows`` records (pure: no database, no globals).

    Rows may repeat a caller id, so documents go through under positional ids
    and get their own id back afterwards.  The analysis reads the original text; the records come out through
    ``redactor`` (personal data redacted or masked, evidence offsets moved onto the stored text).
    """
    docs = [p.doc.model_copy(update={"id": f"#{i}"}) for i, p in enumerate(prepared) if isinstance(p.doc, DocumentInput)]
    results, errors, vecs = analyzer.analyze_with_embeddings(docs) if docs else ([], [], np.zeros((0, 0), np.float32))
    by_pos: dict[str, tuple[DocumentResult | DocumentError, np.ndarray | None]] = {}
    for k, r in enumerate(results):
        by_pos[r.id] = (r, vecs[k])
    for e in errors:
        by_pos[e.id] = (e, None)
    channels = analyzer.taxonomy.channel_map()  # rows that could not be analysed get their channel resolved too
    out = []
    for i, p in enumerate(prepared):
        if isinstance(p.doc, DocumentError):
            item: DocumentResult | DocumentError = p.doc
            vec = None
        else:
            found, vec = by_pos[f"#{i}"]
            item = found.model_copy(update={"id": p.doc.id})
        out.append(rows.record(p, item, vec, channels, redactor))
    return out


class ChunkAnalysis(Protocol):
    """Analyses a batch's chunks and yields them back in order with their row records (:func:`analyze_chunk`).

    :class:`LocalChunks` runs them one after the other in this process; ``ray_executor.RayChunks`` spreads them
    over a pool of analyzer actors, several in flight.  The runner stores what comes back in order, so progress
    (``rows_done``) stays a prefix of the file and a resumed run starts where the stored rows end.
    """

    def map(
        self, chunks: Iterable[list[PreparedRow]], redactor: Redactor
    ) -> Iterator[tuple[list[PreparedRow], list[dict[str, Any]]]]: ...


class LocalChunks:
    """Each chunk analysed in the calling thread (the embedded default)."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer

    def map(
        self, chunks: Iterable[list[PreparedRow]], redactor: Redactor
    ) -> Iterator[tuple[list[PreparedRow], list[dict[str, Any]]]]:
        for chunk in chunks:
            yield chunk, analyze_chunk(self.analyzer, chunk, redactor)


class _RowsRead:
    """How far the runner has read the file (rows seen; whether any are left)."""

    rows = 0
    more = True


@dataclass(frozen=True)
class RunnerConfig:
    chunk_rows: int = 64
    lease_seconds: float = 60.0
    discovery: bool = True
    discovery_seed: int = 13
    # themes fitted on a seeded sample of this many comments, the rest assigned (0 = fit on all)
    discovery_sample: int = 20_000
    # child: discovery in a fresh process per batch (the service's settings); inline: in this one (a runner built by
    # hand, the tests)
    discovery_process: Literal["child", "inline"] = "inline"
    # a batch claimed more often than this took its worker down each time: it fails instead of looping
    max_attempts: int = 3
    # personal data in what is stored, for a batch that did not choose (batches.pii_mode); the upload once done
    pii_mode: PiiMode = "redact"
    keep_uploads: bool = False
    # how long a run waits for a database that went away (retrying with back-off) before it gives the batch back
    db_outage_seconds: float = 300.0
    # where uploads are kept (the data folder, or an object store: VOCE_UPLOAD_STORE) and where a worker copies an
    # object-store upload for its run
    uploads: UploadStore = field(default_factory=LocalUploads)
    scratch_dir: Path = Path("var") / "tmp"
    # where the alert rules evaluated on a finished batch may send webhooks (service/insights; default: nowhere)
    webhooks: WebhookPolicy = field(default_factory=WebhookPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerConfig:
        """The runner every entry point uses (API workers, ``voce worker``, ``voce batch submit --wait``)."""
        return cls(
            chunk_rows=settings.batch_chunk_rows, lease_seconds=settings.worker_lease_seconds,
            discovery=settings.discovery, discovery_seed=settings.discovery_seed, pii_mode=settings.pii_mode,
            discovery_sample=settings.discovery_sample, discovery_process=settings.discovery_process,
            keep_uploads=settings.keep_uploads, db_outage_seconds=settings.db_outage_seconds,
            uploads=settings.uploads(), scratch_dir=settings.data_dir / "tmp",
            webhooks=WebhookPolicy.from_settings(settings),
        )


class ExecutorUnavailable(RuntimeError):
    """The executor the settings ask for cannot run (Ray not installed, its cluster not reachable): the batch fails
    with this message, which names the setting to check."""


class BatchInputMissing(RuntimeError):
    """The upload is gone (deleted, or this worker does not share the data folder)."""


def public_error(exc: Exception, ref: str) -> str:
    """What a client may read about a failure: our own messages verbatim, anything else by reference only
    (a database error would echo SQL and customer text)."""
    if isinstance(exc, UploadError | BatchInputMissing | ExecutorUnavailable | UploadStoreError | ConnectionKeptFailing
                  | DiscoveryProcessDied):
        return f"{exc} (reference {ref})"
    return f"internal error while analysing the batch; reference {ref} in the service log"


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
        chunks: Callable[[Analyzer], ChunkAnalysis] | None = None,
        executor: str = "local",
    ) -> None:
        self.store = store
        # batches window long documents (chat transcripts) instead of rejecting them like the sync API
        self.analyzer = analyzer.with_config(replace(analyzer.config, max_chars=BATCH_MAX_CHARS))
        self.configured_taxonomy = analyzer.taxonomy  # what a tenant without a stored taxonomy scores with
        self.worker_id = worker_id
        self.config = config
        self.stop = stop or threading.Event()
        self.on_chunk = on_chunk
        # who analyses the chunks: this process, or the actors of a Ray cluster (ray_executor.RayChunks)
        self._chunk_source = chunks
        self._cancel_checked = float("-inf")
        self.executor = executor
        # set per batch from its pii_mode (see _run)
        self.redactor = Redactor(config.pii_mode)
        # what the batch records about database outages it went through (its `error`, once the database is back)
        self.outages: list[str] = []

    def run(self, batch: Batch) -> str:
        """Returns the final status: done, failed, or 'paused' (stopped/lease lost; another run resumes)."""
        if batch.attempts > self.config.max_attempts:
            # the batch took its worker down every time (out of memory, a crash): stop retrying it
            msg = f"the batch stopped its worker {batch.attempts - 1} times; giving up (rows analysed so far are kept)"
            self.store.finish(batch.id, self.worker_id, "failed", error=msg)
            return "failed"
        # the lease stays fresh while a long step runs (counting a big file, a chunk of long transcripts, discovery)
        beat = Heartbeat(self.store, batch.id, self.worker_id, self.config.lease_seconds / 4)
        try:
            with beat:
                self._durably(batch.id, "reading the batch's taxonomy", lambda: self._score_with(batch))
                return self._run(batch)
        except LeaseLost:
            log.warning("batch %s: lease lost; another worker continues it", batch.id)
            return "paused"
        except DatabaseUnavailable as exc:
            log.error("batch %s: %s; it keeps its stored rows and is resumed once the database answers", batch.id, exc)
            return "paused"
        except Exception as exc:  # the job fails with a clear message; rows already stored stay
            if isinstance(exc, DB_OUTAGE_ERRORS) and (connection_lost(exc) or self._database_down()):
                # a lost connection or a database that is gone: nothing failed in the batch (and no failure
                # could be recorded); the next claim resumes it
                log.error("batch %s: the database connection was lost (%s); the batch is resumed once it answers",
                          batch.id, type(exc).__name__)
                return "paused"
            ref = uuid.uuid4().hex[:12]
            log.exception("batch %s failed (reference %s)", batch.id, ref)
            try:
                # our own messages may quote the file (a bad line): redacted like the rows
                self.store.finish(batch.id, self.worker_id, "failed", error=self.redactor.string(public_error(exc, ref)))
            except LeaseLost:
                return "paused"
            return "failed"

    def _score_with(self, batch: Batch) -> None:
        """Score with the taxonomy version of the batch's tenant (service/learning: the stored version a resumed
        batch started with, else the tenant's active one, else the configured taxonomy)."""
        from voce.service.learning.taxonomies import TaxonomyStore, batch_taxonomy, with_taxonomy

        taxonomy = batch_taxonomy(TaxonomyStore(self.store.sessions), batch, self.configured_taxonomy)
        self.analyzer = with_taxonomy(self.analyzer, taxonomy)

    def _run(self, batch: Batch) -> str:
        bid = batch.id
        mapping = ColumnMapping.model_validate(batch.mapping)
        if not is_remote(batch.file_path) and not Path(batch.file_path).is_file():
            raise BatchInputMissing("the uploaded file is no longer in the data folder")
        try:  # an object-store upload is copied into this worker's data folder for the run
            path = self.config.uploads.fetch(batch.file_path, self.config.scratch_dir / bid)
        except FileNotFoundError as exc:
            raise BatchInputMissing("the uploaded file is no longer in the object store") from exc
        try:
            return self._analyse(batch, path, mapping)
        finally:
            self.config.uploads.release(batch.file_path, path)

    def _analyse(self, batch: Batch, path: Path, mapping: ColumnMapping) -> str:
        bid, wid = batch.id, self.worker_id
        if batch.cancel_requested_at is not None:  # asked while its last worker was down
            return self._cancelled(batch)
        table = open_table(path, batch.file_format)  # type: ignore[arg-type]
        version = self.analyzer.bundle.version
        if batch.rows_done and batch.model_version and batch.model_version != version:
            # one batch, one model: rows from two versions would not be comparable
            log.warning("batch %s: started with model %s, resuming with %s; analysing it again from the start",
                        bid, batch.model_version, version)
            self._durably(bid, "dropping the rows of the old model", lambda: self.store.restart_rows(bid, wid))
            batch.rows_done = 0
        total = batch.total_rows
        if total is None:
            self._durably(bid, "starting to read", lambda: self.store.heartbeat(bid, wid, phase="reading"))
            total = table.count()
        mode: PiiMode = batch.pii_mode or self.config.pii_mode  # type: ignore[assignment]
        self.redactor = Redactor(mode)
        self._durably(bid, "starting the analysis", lambda: self.store.heartbeat(
            bid, wid, phase="analysing", total_rows=total, model_version=self.analyzer.bundle.version,
            taxonomy_version=self.analyzer.taxonomy.version, pii_mode=mode, executor=self.executor,
        ))
        # built per run (not per runner): a Ray pool joins its cluster only when a batch is there to analyse
        self.chunks: ChunkAnalysis = (
            self._chunk_source(self.analyzer) if self._chunk_source is not None else LocalChunks(self.analyzer)
        )
        read = _RowsRead()
        analysed = self.chunks.map(self._prepared(table, batch.rows_done, mapping, read), self.redactor)
        try:
            for chunk, records in analysed:
                self._commit(bid, chunk, records)
                if read.more and self._cancel_asked(bid):
                    return self._cancelled(batch)  # what is in flight is dropped (the finally below)
                if self.stop.is_set() and read.more:
                    self._durably(bid, "giving the batch back", lambda: self.store.release(bid, wid))
                    return "paused"
        finally:
            close = getattr(analysed, "close", None)
            if close is not None:  # chunks still in flight on a remote executor are cancelled
                close()
        if read.rows != total:  # the file changed under us; report instead of guessing
            self._durably(bid, "correcting the row count", lambda: self.store.heartbeat(bid, wid, total_rows=read.rows))
        if self.config.discovery:  # run again as a whole if the database goes away meanwhile
            self._durably(bid, "discovering topics", lambda: self._discover(bid))
        # landed: a retry after a finish whose answer was lost finds the batch done (and its lease gone with it)
        self._durably(bid, "finishing", lambda: self.store.finish(bid, wid, "done"), landed=lambda: self._done(bid))
        if not self.config.keep_uploads:  # only now: until the batch is done, a resumed run reads the file again
            self._durably(bid, "deleting the upload", lambda: retention.discard_upload(
                self.store, bid, batch.file_path, self.config.uploads))
        from voce.service.insights.alerts import evaluate_batch  # the tenant's alert rules; never fails the batch

        evaluate_batch(self.store, bid, self.config.webhooks)
        return "done"

    def _cancel_asked(self, bid: str) -> bool:
        """Whether cancelling was asked, looked up at most every ``CANCEL_CHECK_SECONDS``; a lookup the database does
        not answer counts as "not asked" (the next chunk looks again), so it never fails or stalls the batch."""
        now = time.monotonic()
        if now - self._cancel_checked < CANCEL_CHECK_SECONDS:
            return False
        self._cancel_checked = now
        try:
            return self.store.cancel_requested(bid)
        except DB_OUTAGE_ERRORS:
            return False

    def _cancelled(self, batch: Batch) -> str:
        """Cancelling was asked: keep the rows stored so far, no discovery, mark it cancelled, drop the upload."""
        bid = batch.id
        log.info("batch %s: cancelled at row %s", bid, batch.rows_done)
        self._durably(bid, "cancelling", lambda: self.store.finish(bid, self.worker_id, "cancelled"),
                      landed=lambda: self._status(bid) == "cancelled")
        if not self.config.keep_uploads:  # a cancelled batch is never resumed
            self._durably(bid, "deleting the upload", lambda: retention.discard_upload(
                self.store, bid, batch.file_path, self.config.uploads))
        return "cancelled"

    def _status(self, bid: str) -> str | None:
        stored = self.store.get(bid)
        return stored.status if stored is not None else None

    def _prepared(
        self, table: Any, start: int, mapping: ColumnMapping, read: _RowsRead
    ) -> Iterator[list[PreparedRow]]:
        """The file's rows from ``start`` on, prepared, in chunks of ``chunk_rows`` (counted in ``read``)."""
        chunk: list[PreparedRow] = []
        for row, rec in enumerate(table.records()):
            read.rows = row + 1
            if row < start:
                continue
            chunk.append(prepare_row(row, rec, mapping))
            if len(chunk) >= self.config.chunk_rows:
                yield chunk
                chunk = []
        read.more = False
        if chunk:
            yield chunk

    def _commit(self, bid: str, chunk: list[PreparedRow], records: list[dict[str, Any]]) -> None:
        next_row = chunk[-1].row + 1
        try:
            self._durably(
                bid, f"storing rows {chunk[0].row + 1}-{next_row}",
                lambda: self.store.commit_chunk(bid, self.worker_id, records, next_row=next_row),
                landed=lambda: self._landed(bid, next_row),
            )
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
                    self.store.commit_chunk(bid, self.worker_id, [rows.unstorable(rec)], next_row=rec["row"] + 1)
        if self.on_chunk:
            self.on_chunk(chunk[-1].row + 1)

    # -- database outages
    def _database_down(self) -> bool:
        """Whether the database is unreachable now (not merely refusing one statement): a fresh ``SELECT 1``."""
        try:
            with self.store.sessions() as s:
                s.execute(text("SELECT 1"))
        except DB_OUTAGE_ERRORS:
            return True
        return False

    def _landed(self, bid: str, next_row: int) -> bool:
        """Whether a commit whose answer was lost went through (the connection died after COMMIT was sent)."""
        b = self.store.get(bid)
        if b is None or b.worker_id != self.worker_id:
            raise LeaseLost(bid)
        return b.rows_done >= next_row

    def _durably(self, bid: str, what: str, call: Callable[[], Any], landed: Callable[[], bool] | None = None) -> Any:
        """``call()``, waiting through a database outage: retried with back-off (0.5 s doubling to 10 s) until it
        goes through, ``landed()`` says it already had, or ``db_outage_seconds`` pass (DatabaseUnavailable).
        A lost connection (:func:`connection_lost`) is retried too while the database answers, up to
        ``LOST_CONNECTION_RETRIES`` times; any other error while the database answers is the statement's own and
        is raised at once."""
        started: float | None = None
        delay, ref, lost_while_up = 0.5, uuid.uuid4().hex[:12], 0
        while True:
            try:
                went_through = started is not None and landed is not None and landed()
                result = None if went_through else call()
            except DB_OUTAGE_ERRORS as exc:
                # a connection that died (server restarted, backend terminated) or a database that does not answer
                down = self._database_down()
                if down:
                    lost_while_up = 0  # an outage in between: the count of losses in a row starts again
                else:
                    lost_while_up += 1
                    if not connection_lost(exc):
                        raise
                    if lost_while_up > LOST_CONNECTION_RETRIES:
                        raise ConnectionKeptFailing(
                            f"the database answers but {what} lost its connection {lost_while_up} times in a row "
                            f"({type(exc.orig).__name__})") from exc
                now = time.monotonic()
                if started is None:
                    started = now
                    log.warning("batch %s: the database is unreachable while %s (%s); waiting for it up to %.0f s "
                                "(reference %s)", bid, what, type(exc).__name__, self.config.db_outage_seconds, ref)
                if now - started > self.config.db_outage_seconds:
                    raise DatabaseUnavailable(
                        f"the database was unreachable for more than {self.config.db_outage_seconds:.0f} s while "
                        f"{what} (reference {ref})") from exc
                # a database that answers gets the call again soon (only the connection was lost); one that does not,
                # with back-off
                if self.stop.wait(delay if down else 0.1):
                    raise DatabaseUnavailable(f"stopped while waiting for the database ({what})") from exc
                if down:
                    delay = min(delay * 2, 10.0)
                continue
            if started is not None:
                took = time.monotonic() - started
                note = (f"the database was unreachable for {took:.0f} s while {what} (reference {ref}); the batch went "
                        "on from its last stored row, nothing lost or stored twice")
                log.warning("batch %s: %s", bid, note)
                self.outages.append(note)
                self._durably(bid, "recording the outage", lambda: self._record_outages(bid))
            return result

    def _record_outages(self, bid: str) -> None:
        """The outages this run went through, on the batch (its ``error`` stays empty otherwise); once this run has
        finished the batch, it holds no lease any more and writes the note on the finished batch."""
        note = "; ".join(self.outages)
        if self._done(bid):
            self.store.note_finished(bid, error=note)
        else:
            self.store.heartbeat(bid, self.worker_id, error=note)

    def _done(self, bid: str) -> bool:
        stored = self.store.get(bid)
        return stored is not None and stored.status == "done"

    def _discovery_sample(self, bid: str) -> set[int] | None:
        """The rows themes are fitted on when the batch has more analysed rows than ``discovery_sample``; else None."""
        limit = self.config.discovery_sample
        if limit <= 0:
            return None
        ok = [r.row for r in self.store.iter_rows(bid, page=20_000, columns=("ok",)) if r.ok]
        return _sample_rows(ok, limit, self.config.discovery_seed) if len(ok) > limit else None

    def _assign_rest(
        self, bid: str, fitted: Any, sample_vecs: np.ndarray, sample_langs: list[str | None],
        sample_assigned: list[list[str]], sample: set[int], payload: dict[str, Any], page: int = 5_000,
    ) -> None:
        """Assign every analysed row outside the sample to the nearest theme found on it (a page at a time, so
        memory stays that of the sample), then count each theme's comments and languages over the whole batch."""
        from voce.models.discovery import fit_topic_assigner, normalize_language

        assigner = fit_topic_assigner(sample_vecs, sample_langs, fitted.assignments, assigned_topics=sample_assigned)
        sizes: Counter[int] = Counter(fitted.assignments)
        by_lang: Counter[tuple[int, str]] = Counter(
            (t, normalize_language(lang)) for t, lang in zip(fitted.assignments, sample_langs, strict=True)
        )
        buf_rows: list[int] = []
        buf_langs: list[str | None] = []
        buf_vecs: list[np.ndarray] = []

        def flush() -> None:
            if not buf_rows:
                return
            labels = assigner.assign(np.vstack(buf_vecs), buf_langs).tolist()
            self.store.set_discovered(bid, self.worker_id, buf_rows, labels, reset=False)
            sizes.update(labels)
            by_lang.update((t, normalize_language(lang)) for t, lang in zip(labels, buf_langs, strict=True))
            buf_rows.clear()
            buf_langs.clear()
            buf_vecs.clear()

        for r in self.store.iter_rows(bid, columns=("ok", "language", "embedding")):
            if not r.ok or r.embedding is None or r.row in sample:
                continue
            buf_rows.append(r.row)
            buf_langs.append(r.language)
            buf_vecs.append(rows.embedding(r))
            if len(buf_rows) >= page:
                flush()
        flush()
        total = sum(sizes.values())
        for topic in payload["topics"]:
            topic["size"] = sizes.get(topic["id"], 0)
            topic["languages"] = {lang: n for (t, lang), n in sorted(by_lang.items()) if t == topic["id"]}
        payload["fitted_on"] = payload["n_docs"]
        payload["n_docs"] = total
        payload["outlier_share"] = round(sizes.get(-1, 0) / total, 4) if total else None
        note = (f"themes found on a seeded sample of {payload['fitted_on']:,} of {total:,} comments "
                "(VOCE_DISCOVERY_SAMPLE); the others joined the nearest theme or stayed unassigned")
        payload["note"] = f"{payload['note']}; {note}" if payload.get("note") else note

    def _discover(self, bid: str) -> None:
        """BERTopic on the stored embeddings; a failure here is recorded, the analysis stays usable."""
        self.store.heartbeat(bid, self.worker_id, phase="discovering")
        sample = self._discovery_sample(bid)
        row_ids, texts, langs, assigned, vecs = [], [], [], [], []
        for r in self.store.iter_rows(bid, columns=rows.DISCOVERY_COLUMNS):
            if not r.ok or r.embedding is None or (sample is not None and r.row not in sample):
                continue
            row_ids.append(r.row)
            texts.append(r.text or "")
            langs.append(r.language)
            assigned.append([t[0] for t in (r.topics or [])])
            vecs.append(rows.embedding(r))
        try:
            from voce.models.discovery import discover_topics, discover_topics_in_child, taxonomy_topic_labels

            emb = np.vstack(vecs).astype(np.float32) if vecs else np.zeros((0, self.analyzer.encoder.dim), np.float32)
            labels = taxonomy_topic_labels(self.analyzer.taxonomy)
            discover = discover_topics_in_child if self.config.discovery_process == "child" else discover_topics
            result = discover(
                texts, emb, langs, assigned_topics=assigned, topic_labels=labels, seed=self.config.discovery_seed
            )
            payload = result.model_dump(mode="json")
            assignments = payload.pop("assignments", [])
            self.store.set_discovered(bid, self.worker_id, row_ids, assignments)
            if sample is not None:  # the rest of the batch joins the themes found on the sample
                del texts, vecs
                self._assign_rest(bid, result, emb, langs, assigned, sample, payload)
            self.store.heartbeat(bid, self.worker_id, discovery=payload, discovery_error=None)
        except LeaseLost:
            raise
        except Exception as exc:
            ref = uuid.uuid4().hex[:12]
            log.exception("batch %s: topic discovery failed (reference %s)", bid, ref)
            self.store.heartbeat(bid, self.worker_id, discovery_error=self.redactor.string(public_error(exc, ref)))


def _sample_rows(rows_ok: list[int], size: int, seed: int) -> set[int]:
    """A seeded sample of ``size`` of the batch's analysed rows (the same batch and seed: the same sample)."""
    rng = np.random.default_rng(seed)
    return {rows_ok[i] for i in rng.choice(len(rows_ok), size=size, replace=False)}


class Heartbeat:
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
            except DB_OUTAGE_ERRORS:  # the runner waits for the database and says so; beat again next time
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)
