"""The life of a batch's personal data after analysis: its upload deleted once done, everything erased on delete,
old batches purged.

* :func:`private_file`: uploads are written 0600 in a 0700 folder.
* :func:`discard_upload`: the uploaded file goes once its batch is done (``VOCE_KEEP_UPLOADS=false``, the
  default) and ``batches.file_deleted_at`` says when; a resumed batch still has its file, since only a *finished*
  one loses it.  :func:`sweep_uploads` finishes the job for a worker that stopped between the two steps, and
  :func:`sweep_orphans` removes a file no batch owns (a server killed after receiving an upload and before its
  batch row committed; a preview's scratch file left by a crash) once it is older than ``ORPHAN_AFTER_SECONDS``.
* :func:`erase`: the right to erasure.  The batch row (with its discovered topics), every stored row (texts,
  original cells, results, embeddings), the upload and any export left in the data folder.  On SQLite the
  freed pages are overwritten (``secure_delete``) and the write-ahead log truncated, so the erased text does not
  linger in the database file; PostgreSQL reclaims the dead tuples at its next (auto)vacuum.
* :func:`purge_expired` and :class:`RetentionTask`: ``VOCE_RETENTION_DAYS`` erases batches created longer ago
  than that, at start and every hour, in the API and in ``voce worker``; ``voce batch purge`` does it by hand.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, select, text, update

from voce.service.batches.objects import LocalUploads, UploadStore
from voce.service.batches.store import ROWS, BatchStore
from voce.service.db import Batch, utcnow

log = logging.getLogger("voce.jobs")

#: a batch in these states belongs to a worker: it is erased once it has finished
_ACTIVE = ("queued", "running")
#: how often the retention task looks for expired batches
PURGE_EVERY_SECONDS = 3600.0
#: a file in uploads/ or tmp/ that no batch owns is removed once it was last written this long ago (an upload
#: being received is written at least every megabyte, and registered within seconds of its end)
ORPHAN_AFTER_SECONDS = 3600.0


def private_folder(folder: Path) -> None:
    """A folder of the data directory that holds customer files: created, and readable by the service's user only."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


@contextmanager
def private_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for writing, created 0600 (never readable by other users, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        yield fh


def export_leftovers(data_dir: Path, batch_id: str) -> list[Path]:
    """XLSX exports of the batch still in the data folder (each is deleted once sent; a crash can leave one)."""
    folder = data_dir / "exports"
    return sorted(folder.glob(f"{batch_id}-*.xlsx")) if folder.is_dir() else []


def discard_upload(store: BatchStore, batch_id: str, file_path: str, uploads: UploadStore | None = None) -> None:
    """Delete a finished batch's uploaded file (in the data folder or the object store) and record when
    (``batches.file_deleted_at``)."""
    (uploads or LocalUploads()).delete(file_path)
    with store.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.id == batch_id).values(file_deleted_at=utcnow()))


def sweep_uploads(store: BatchStore, uploads: UploadStore | None = None) -> int:
    """Delete the uploads of done batches that still have one (a worker stopped between finishing and deleting);
    returns how many files went."""
    with store.sessions() as s:
        found = list(s.execute(
            select(Batch.id, Batch.file_path).where(Batch.status == "done", Batch.file_deleted_at.is_(None))
        ))
    for bid, file_path in found:
        discard_upload(store, bid, file_path, uploads)
    return len(found)


def sweep_orphans(store: BatchStore, data_dir: Path, older_than: float = ORPHAN_AFTER_SECONDS,
                  now: float | None = None) -> list[Path]:
    """Remove the files of ``<data_dir>/uploads`` that no batch owns and the scratch files of ``<data_dir>/tmp``,
    last written more than ``older_than`` seconds ago; returns what went."""
    cutoff = (time.time() if now is None else now) - older_than
    stale = [
        p for folder in ("uploads", "tmp") if (data_dir / folder).is_dir()
        for p in (data_dir / folder).iterdir() if p.is_file() and p.stat().st_mtime < cutoff
    ]
    uploads = [p for p in stale if p.parent.name == "uploads"]
    ids = {p.name.split(".", 1)[0] for p in uploads}
    owned: set[str] = set()
    if ids:
        with store.sessions() as s:
            owned = set(s.scalars(select(Batch.id).where(Batch.id.in_(sorted(ids)))))
    gone = [p for p in stale if p.parent.name == "tmp" or p.name.split(".", 1)[0] not in owned]
    for p in gone:
        p.unlink(missing_ok=True)
    if gone:
        log.info("retention: %d file(s) that no batch owns removed", len(gone))
    return gone


def erase(store: BatchStore, batch: Batch, data_dir: Path, uploads: UploadStore | None = None) -> None:
    """Delete a batch and everything of it: rows (texts, cells, results, embeddings), the batch row (with its
    discovered topics and their example comments), the upload, leftover exports."""
    with store.sessions() as s, s.begin():
        sqlite = s.connection().dialect.name == "sqlite"
        if sqlite:  # freed pages are zeroed, not left readable in the file
            s.execute(text("PRAGMA secure_delete = ON"))
        s.execute(ROWS.delete().where(ROWS.c.batch_id == batch.id))
        s.execute(delete(Batch).where(Batch.id == batch.id))
    if sqlite:
        with store.sessions() as s:
            # best effort: a reader still in the log keeps its frames until it finishes
            s.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    (uploads or LocalUploads()).delete(batch.file_path)
    for leftover in export_leftovers(data_dir, batch.id):
        leftover.unlink(missing_ok=True)


def expired(store: BatchStore, days: float, now: dt.datetime | None = None) -> list[Batch]:
    """Finished batches created more than ``days`` days before ``now``, oldest first."""
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    with store.sessions() as s:
        q = select(Batch).where(Batch.created_at < cutoff, Batch.status.not_in(_ACTIVE)).order_by(Batch.created_at)
        return list(s.scalars(q))


def purge_expired(
    store: BatchStore, data_dir: Path, days: float, now: dt.datetime | None = None, uploads: UploadStore | None = None
) -> list[str]:
    """Erase every finished batch older than ``days``; returns their ids."""
    gone = []
    for b in expired(store, days, now):
        erase(store, b, data_dir, uploads)
        gone.append(b.id)
    if gone:
        log.info("retention: %d batch(es) older than %s days erased", len(gone), days)
    return gone


class RetentionTask:
    """Purges expired batches, finishes interrupted upload deletions and removes files no batch owns, at start and
    every ``every`` seconds."""

    def __init__(
        self, store: BatchStore, data_dir: Path, days: float | None, *, keep_uploads: bool = False,
        every: float = PURGE_EVERY_SECONDS, uploads: UploadStore | None = None,
    ) -> None:
        self.store, self.data_dir, self.days, self.keep_uploads, self.every = store, data_dir, days, keep_uploads, every
        self.uploads = uploads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[str]:
        sweep_orphans(self.store, self.data_dir)
        if not self.keep_uploads:
            sweep_uploads(self.store, self.uploads)
        return purge_expired(self.store, self.data_dir, self.days, uploads=self.uploads) if self.days else []

    def _loop(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # a database hiccup must not stop retention for good: the next round retries
                log.exception("retention: purge failed")
            if self._stop.wait(self.every):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="voce-retention")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
