"""batches and batch_rows

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("api_key_hash", sa.String(64)),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("file_format", sa.String(8), nullable=False),
        sa.Column("file_path", sa.Text, nullable=False),
        sa.Column("file_bytes", sa.Integer, nullable=False),
        sa.Column("mapping", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16)),
        sa.Column("total_rows", sa.Integer),
        sa.Column("rows_done", sa.Integer, nullable=False),
        sa.Column("rows_error", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("run_started_at", sa.DateTime),
        sa.Column("run_rows_start", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("model_version", sa.String(128)),
        sa.Column("taxonomy_version", sa.String(128)),
        sa.Column("discovery", sa.JSON),
        sa.Column("discovery_error", sa.Text),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_rows",
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("row", sa.Integer, primary_key=True),
        sa.Column("doc_id", sa.String(128), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("original", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("warnings", sa.JSON),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("date", sa.Date),
        sa.Column("language", sa.String(8)),
        sa.Column("channel", sa.String(64)),
        sa.Column("segments", sa.JSON),
        sa.Column("nps", sa.Integer),
        sa.Column("csat", sa.Integer),
        sa.Column("ces", sa.Integer),
        sa.Column("sentiment", sa.String(8)),
        sa.Column("positive", sa.Float, nullable=False),
        sa.Column("negative", sa.Float, nullable=False),
        sa.Column("detractor", sa.Float),
        sa.Column("topics", sa.JSON),
        sa.Column("touchpoints", sa.JSON),
        sa.Column("discovered", sa.Integer),
    )
    op.create_index("ix_batch_rows_batch_discovered", "batch_rows", ["batch_id", "discovered"])


def downgrade() -> None:
    op.drop_index("ix_batch_rows_batch_discovered", table_name="batch_rows")
    op.drop_table("batch_rows")
    op.drop_index("ix_batches_status", table_name="batches")
    op.drop_table("batches")
