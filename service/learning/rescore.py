"""Re-scoring a finished batch with a newer taxonomy version, without its upload (deleted once a batch is done).

Zero-shot and few-shot entries need no retraining, so a batch's stored rows are analysed again from their stored
text with the tenant's active taxonomy; each row's prediction (result, sentiment, topics, touchpoints, detractor) is
replaced, its input facts (scores, date, channel, segments) and its analysts' corrections stay, and the batch then
records the new version.  The stored text is the redacted one when the batch redacted personal data, so a
re-scored row reads ``<EMAIL>`` where the first run read the address.  Chats stored as turns only (no single text)
keep their first prediction.

A re-score runs in a thread of the API process (:class:`Rescorer`); its progress is kept in memory (a restart
loses a re-score in flight: the rows done so far carry the new prediction, the batch still names the old version
until a re-score completes).
"""
from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from sqlalchemy import bindparam, update

from voce.models.types import DocumentInput, DocumentResult
from voce.service.batches.errors import BatchBusy
from voce.service.batches.store import ROWS, BatchStore
from voce.service.db import Batch
from voce.service.errors import InvalidInput

if TYPE_CHECKING:
    from voce.models.analyzer import Analyzer
    from voce.models.taxonomy import Taxonomy

log = logging.getLogger("voce.jobs")

#: rows analysed (and written) together
CHUNK_ROWS = 64
#: what a re-score reads of each stored row
_COLUMNS = ("row", "ok", "text", "language", "channel", "result")


class RescoreBusy(BatchBusy):
    """The batch is still being analysed, or already being re-scored (409)."""


class RescoreState(BaseModel):
    batch_id: str
    state: Literal["none", "running", "done", "failed"]
    taxonomy_version: str | None = None
    done: int = 0
    total: int = 0
    error: str | None = None


@dataclass
class _Job:
    state: RescoreState
    thread: threading.Thread | None = None


def rescore_rows(store: BatchStore, analyzer: Analyzer, batch_id: str, taxonomy: Taxonomy,
                 progress: Any = None) -> int:
    """Analyse every stored row with text again with ``taxonomy`` and store the new predictions; returns how many
    rows were re-scored.  ``progress(done)`` is told after each chunk."""
    from voce.service.batches.runner import BATCH_MAX_CHARS

    batch_analyzer = analyzer.with_config(replace(analyzer.config, max_chars=BATCH_MAX_CHARS))
    done = 0
    chunk: list[Any] = []

    def flush() -> None:
        nonlocal done
        docs = [DocumentInput(
            id=str(r.row), text=r.text, kind="chat" if "chat" in (r.result or {}) else "comment",
            language=r.language if r.language in ("it", "en") else None, channel=r.channel,
        ) for r in chunk]
        results, _errors = batch_analyzer.analyze(docs, taxonomy=taxonomy)
        by_row = {int(x.id): x for x in results}
        values = [_prediction(r, by_row[r.row]) for r in chunk if r.row in by_row]
        if values:
            stmt = (ROWS.update().where(ROWS.c.batch_id == batch_id).where(ROWS.c.row == bindparam("r"))
                    .values({k: bindparam(k) for k in values[0] if k != "r"}))
            with store.sessions() as s, s.begin():
                s.connection().execute(stmt, values)
        done += len(chunk)
        chunk.clear()
        if progress is not None:
            progress(done)

    for r in store.iter_rows(batch_id, columns=_COLUMNS):
        if not r.ok or not (r.text or "").strip():
            continue
        chunk.append(r)
        if len(chunk) >= CHUNK_ROWS:
            flush()
    if chunk:
        flush()
    with store.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.id == batch_id).values(taxonomy_version=taxonomy.version))
    return done


def _prediction(r: Any, item: DocumentResult) -> dict[str, Any]:
    """The stored prediction columns of a row analysed again (as :func:`voce.service.batches.rows.record` writes
    them), its id kept."""
    result = item.model_dump(mode="json", exclude_none=True) | {"id": (r.result or {}).get("id", item.id)}
    return {
        "r": r.row, "result": result, "language": item.language, "sentiment": item.sentiment.label,
        "positive": item.sentiment.scores.positive, "negative": item.sentiment.scores.negative,
        "detractor": item.detractor.probability, "topics": [[t.id, t.sentiment.label] for t in item.topics],
        "touchpoints": [t.id for t in item.touchpoints],
    }


def _countable(store: BatchStore, batch_id: str) -> int:
    return sum(1 for r in store.iter_rows(batch_id, columns=("row", "ok", "text")) if r.ok and (r.text or "").strip())


class Rescorer:
    """Re-scores run in background threads of this process, one per batch at a time."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def state(self, batch_id: str) -> RescoreState:
        with self._lock:
            job = self._jobs.get(batch_id)
            return job.state.model_copy() if job is not None else RescoreState(batch_id=batch_id, state="none")

    def start(self, store: BatchStore, analyzer: Analyzer, batch: Batch, taxonomy: Taxonomy) -> RescoreState:
        if batch.status != "done":
            raise RescoreBusy("the batch is still being analysed; re-score it once it is done")
        if batch.taxonomy_version == taxonomy.version:
            raise InvalidInput(f"the batch is already scored with taxonomy {taxonomy.version}",
                               details=[{"code": "rescore.same_version", "label": taxonomy.version}])
        with self._lock:
            running = self._jobs.get(batch.id)
            if running is not None and running.state.state == "running":
                raise RescoreBusy("the batch is already being re-scored")
            state = RescoreState(batch_id=batch.id, state="running", taxonomy_version=taxonomy.version,
                                 total=_countable(store, batch.id))
            job = _Job(state=state)
            self._jobs[batch.id] = job

        def progress(done: int) -> None:
            with self._lock:
                job.state.done = done

        def run() -> None:
            try:
                rescore_rows(store, analyzer, batch.id, taxonomy, progress)
                with self._lock:
                    job.state.state = "done"
            except Exception:
                ref = uuid.uuid4().hex[:12]
                log.exception("batch %s: re-scoring failed (reference %s)", batch.id, ref)
                with self._lock:
                    job.state.state = "failed"
                    job.state.error = f"internal error while re-scoring; reference {ref} in the service log"

        job.thread = threading.Thread(target=run, name=f"voce-rescore-{batch.id[:8]}", daemon=True)
        job.thread.start()
        return state.model_copy()

    def wait(self, batch_id: str, timeout: float | None = None) -> None:
        with self._lock:
            job = self._jobs.get(batch_id)
        if job is not None and job.thread is not None:
            job.thread.join(timeout)

