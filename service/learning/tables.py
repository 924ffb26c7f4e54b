"""The learning loop's tables (created by migration ``0005_learning_loop``), on :class:`voce.service.db.Base`."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from voce.service.db import Base, utcnow


class Correction(Base):
    """An analyst's fix of one batch row's prediction.

    ``change`` holds only what the analyst changed (``sentiment``, ``topics_add``/``topics_remove``,
    ``touchpoints_add``/``touchpoints_remove``, ``detractor``); ``original`` the row's prediction when it was made.
    A row's corrected value is its prediction with its active corrections applied in order; reverting one sets
    ``reverted_at`` (the history is kept).
    """

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[str] = mapped_column(String(32), ForeignKey("batches.id", ondelete="CASCADE"))
    row: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # the model (bundle version) and taxonomy version whose prediction this corrects
    model_version: Mapped[str | None] = mapped_column(String(128))
    taxonomy_version: Mapped[str | None] = mapped_column(String(128))
    original: Mapped[dict] = mapped_column(JSON)
    change: Mapped[dict] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    reverted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reverted_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_corrections_batch_row", "batch_id", "row"),
        Index("ix_corrections_tenant_created", "tenant", "created_at"),
    )


class TaxonomyVersion(Base):
    """One version of a tenant's taxonomy: the whole taxonomy (as its YAML/JSON object), who made it, when, and
    what changed from the version before (a list of readable changes)."""

    __tablename__ = "taxonomy_versions"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    # the taxonomy's version string (what batches and /v1/analyze record): "<name>+v<version>"
    label: Mapped[str] = mapped_column(String(128))
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    message: Mapped[str | None] = mapped_column(Text)
    content: Mapped[dict] = mapped_column(JSON)
    changes: Mapped[list] = mapped_column(JSON)
    # set when this version is a rollback: the version it restored
    restored_from: Mapped[int | None] = mapped_column(Integer)
