"""The typed shapes a batch is read back as (the API returns them; the CLI prints them)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from voce.service.batches.progress import RowNotes
from voce.service.batches.rows import RowItem
from voce.service.db import Batch, utcnow


class BatchStatus(BaseModel):
    id: str
    name: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    phase: str | None = Field(description="While running: reading | analysing | discovering.")
    format: str
    tenant: str
    rows_total: int | None = Field(description="Known once the file has been read through.")
    rows_done: int
    rows_error: int
    progress: float = Field(ge=0.0, le=1.0)
    eta_seconds: float | None = Field(
        description="Seconds left, from a rate averaged over chunks (none until a few chunks are measured); counts "
                    "down between chunks and does not climb on a little jitter."
    )
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int = Field(description="How many times a worker started it (>1 after a resume).")
    error: str | None
    model_version: str | None
    taxonomy_version: str | None
    executor: str | None = Field(default=None, description="Who analysed it: local or ray.")
    cancel_requested: bool = Field(
        default=False, description="Cancelling was asked: a running batch stops at its next chunk (then 'cancelled')."
    )
    mapping: dict[str, Any]
    discovery_error: str | None
    pii_mode: str | None = Field(
        default=None, description="How personal data in this batch is stored: redact, mask or keep."
    )
    file_deleted_at: dt.datetime | None = Field(
        default=None, description="When the uploaded file was deleted after the analysis (None: still kept)."
    )
    notes: RowNotes | None = Field(
        default=None, description="The stored rows' warnings and errors counted by kind, with a few example rows "
                                  "(GET /v1/batches/{id} only; not in the list)."
    )


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
    sample_rows: int = Field(default=0, description="Rows of the file's head the guess and the counts rest on.")
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per column, what the sample's values show (uploads.ColumnProfile)."
    )
    summary: list[dict[str, Any]] = Field(
        default_factory=list, description="What each role of the guessed mapping will do (uploads.SummaryItem)."
    )


class RowPage(BaseModel):
    total: int
    offset: int
    rows: list[RowItem]


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


def _utc(d: dt.datetime | None) -> dt.datetime | None:
    """Stored times are naive UTC; the API says so."""
    return d.replace(tzinfo=dt.UTC) if d is not None and d.tzinfo is None else d


def batch_status(b: Batch, *, eta: float | None | bool = True, notes: RowNotes | None = None) -> BatchStatus:
    """The batch as the API shows it; ``eta``: the estimate to show (True: from the run's average rate)."""
    total = b.total_rows
    progress = 1.0 if b.status == "done" else (min(b.rows_done / total, 1.0) if total else 0.0)
    return BatchStatus(
        id=b.id, name=b.name, status=b.status, phase=b.phase, format=b.file_format, tenant=b.tenant,  # type: ignore[arg-type]
        rows_total=total, rows_done=b.rows_done, rows_error=b.rows_error, progress=round(progress, 4),
        eta_seconds=eta_seconds(b) if eta is True else (None if eta is False else eta),
        created_at=_utc(b.created_at), started_at=_utc(b.started_at),
        finished_at=_utc(b.finished_at),
        attempts=b.attempts, error=b.error, model_version=b.model_version, taxonomy_version=b.taxonomy_version,
        executor=b.executor, cancel_requested=b.cancel_requested_at is not None,
        mapping=b.mapping, discovery_error=b.discovery_error, pii_mode=b.pii_mode,
        file_deleted_at=_utc(b.file_deleted_at), notes=notes,
    )
