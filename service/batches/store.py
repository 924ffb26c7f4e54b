"""Every database read and write of a batch job (SQLite or PostgreSQL through SQLAlchemy).

Claiming a job is a compare-and-set on its lease (``worker_id`` + ``heartbeat_at``), so any number of workers, in
any process, can poll the same database safely; every write after the claim checks the lease is still ours.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from voce.service.db import Batch, BatchRow, open_database, utcnow

#: the rows table for Core bulk statements (inserts of a whole chunk, bulk updates)
ROWS: Table = BatchRow.__table__  # type: ignore[assignment]


class LeaseLost(RuntimeError):
    """Another worker took the batch over (this one was presumed dead); stop without writing."""


class BatchStore:
    """All persistence of batch jobs."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    @classmethod
    def open(cls, url: str) -> BatchStore:
        """The store on the database at ``url``, its schema migrated to the newest revision."""
        return cls(open_database(url))

    # -- creation and reads
    def create(self, **fields: Any) -> Batch:
        with self.sessions() as s, s.begin():
            b = Batch(status="queued", rows_done=0, rows_error=0, run_rows_start=0, attempts=0, **fields)
            s.add(b)
        return b

    def get(self, batch_id: str) -> Batch | None:
        with self.sessions() as s:
            return s.get(Batch, batch_id)

    def list_batches(self, limit: int = 100, offset: int = 0, tenant: str | None = None) -> list[Batch]:
        """Newest first; of one tenant (index on tenant, created_at), or of all of them when ``tenant`` is None."""
        with self.sessions() as s:
            q = select(Batch)
            if tenant is not None:
                q = q.where(Batch.tenant == tenant)
            q = q.order_by(Batch.created_at.desc(), Batch.id).limit(limit).offset(offset)
            return list(s.scalars(q))

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
        for candidate in candidates:
            with self.sessions() as s, s.begin():
                res = s.execute(
                    update(Batch)
                    .where(Batch.id == candidate, Batch.status.in_(("queued", "running")))
                    .where((Batch.worker_id.is_(None)) | (Batch.heartbeat_at < stale))
                    .values(
                        worker_id=worker_id, heartbeat_at=now, status="running", attempts=Batch.attempts + 1,
                        started_at=func.coalesce(Batch.started_at, now), run_started_at=now,
                        run_rows_start=Batch.rows_done,
                    )
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    return s.get(Batch, candidate)
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

    def cancel(self, batch_id: str) -> str:
        """Cancel a batch: a queued one at once (``cancelled``); a running one is asked to stop (``cancelling``: its
        worker stores no further chunk, keeps the rows stored so far and marks it cancelled); a finished one is left
        as it is (its status is returned)."""
        now = utcnow()
        with self.sessions() as s, s.begin():
            res = s.execute(
                update(Batch).where(Batch.id == batch_id, Batch.status == "queued")
                .values(status="cancelled", phase=None, finished_at=now, cancel_requested_at=now)
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                return "cancelled"
            res = s.execute(
                update(Batch).where(Batch.id == batch_id, Batch.status == "running")
                .values(cancel_requested_at=func.coalesce(Batch.cancel_requested_at, now))
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                return "cancelling"
            status = s.scalar(select(Batch.status).where(Batch.id == batch_id))
            return str(status) if status is not None else "missing"

    def cancel_requested(self, batch_id: str) -> bool:
        with self.sessions() as s:
            return s.scalar(select(Batch.cancel_requested_at).where(Batch.id == batch_id)) is not None

    def note_finished(self, batch_id: str, **values: Any) -> None:
        """Set fields of a batch no worker holds any more (the outage note of the run that finished it)."""
        with self.sessions() as s, s.begin():
            s.execute(update(Batch).where(Batch.id == batch_id, Batch.worker_id.is_(None)).values(**values))

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

    def set_discovered(
        self, batch_id: str, worker_id: str, rows: list[int], topics: list[int], reset: bool = True
    ) -> None:
        """Each row's discovered theme; ``reset`` first clears every row's (False: a later page of the same run)."""
        with self.sessions() as s, s.begin():
            self._owned(s, batch_id, worker_id)
            if reset:
                s.execute(update(BatchRow).where(BatchRow.batch_id == batch_id).values(discovered=None))
            if rows:
                stmt = (
                    ROWS.update()
                    .where(ROWS.c.batch_id == batch_id)
                    .where(ROWS.c.row == bindparam("r"))
                    .values(discovered=bindparam("t"))
                )
                s.connection().execute(stmt, [{"r": r, "t": t} for r, t in zip(rows, topics, strict=True)])
