"""The tables of saved views and alerts (created by migration ``0004_views_alerts``), on :class:`voce.service.db.Base`."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from voce.service.db import Base, utcnow


class SavedView(Base):
    """A named dashboard selection: the filters (a query string :class:`~voce.service.analytics.Filters` wrote and
    reads back), the trend granularity and the batch (None: the tenant's latest finished batch when opened).
    A view that is not ``shared`` is seen by its owner's key only; a shared one by the whole tenant."""

    __tablename__ = "saved_views"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("batches.id", ondelete="CASCADE"))
    query: Mapped[str] = mapped_column(Text)
    granularity: Mapped[str | None] = mapped_column(String(8))
    owner_key: Mapped[str] = mapped_column(String(64))  # the owner's key id ("open" with access control off)
    owner: Mapped[str] = mapped_column(String(128))  # its name, for people
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_saved_views_tenant_created", "tenant", "created_at"),)


class AlertRule(Base):
    """When to tell the tenant that something moved: a metric of a subject against a threshold, or a significant
    change against the previous batch or period; checked on every batch of the tenant that finishes."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    subject: Mapped[str] = mapped_column(String(16))  # overall | topic | touchpoint | channel | segment
    subject_id: Mapped[str | None] = mapped_column(String(256))  # the id; a segment as "column:value"
    metric: Mapped[str] = mapped_column(String(16))  # negative_share | share | nps | nps_impact | net_sentiment
    condition: Mapped[str] = mapped_column(String(8))  # above | below | change
    threshold: Mapped[float | None] = mapped_column(Float)
    compare_to: Mapped[str | None] = mapped_column(String(16))  # previous_batch | previous_period
    direction: Mapped[str | None] = mapped_column(String(8))  # any | up | down
    min_rows: Mapped[int] = mapped_column(Integer)
    query: Mapped[str] = mapped_column(Text, default="")  # extra filters of the population (Filters.query_params)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_alert_rules_tenant", "tenant"),)


class AlertEvent(Base):
    """A rule that fired on a finished batch (``status`` fired), or whose evaluation failed (``error``: recorded,
    never the batch's failure); with the webhook delivery's state."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    rule_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("alert_rules.id", ondelete="SET NULL"))
    rule_name: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[str] = mapped_column(String(32), ForeignKey("batches.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(8))  # fired | error
    code: Mapped[str] = mapped_column(String(64))  # what the page translates: alert.above, alert.change, ...
    params: Mapped[dict] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float)
    previous: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    rows: Mapped[int | None] = mapped_column(Integer)
    webhook_status: Mapped[str] = mapped_column(String(16), default="none")  # none|pending|delivered|failed|refused
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("rule_id", "batch_id", name="uq_alert_events_rule_batch"),
        Index("ix_alert_events_tenant_id", "tenant", "id"),
    )
