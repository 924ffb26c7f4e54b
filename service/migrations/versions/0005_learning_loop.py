"""learning loop: corrections of batch rows and versioned taxonomies per tenant (issue 15)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        # the model and taxonomy versions whose prediction is corrected
        sa.Column("model_version", sa.String(128)),
        sa.Column("taxonomy_version", sa.String(128)),
        # the row's prediction when corrected, and only what the analyst changed
        sa.Column("original", sa.JSON, nullable=False),
        sa.Column("change", sa.JSON, nullable=False),
        sa.Column("note", sa.Text),
        # a reverted correction is kept (history) and no longer applies
        sa.Column("reverted_at", sa.DateTime),
        sa.Column("reverted_by", sa.String(128)),
    )
    op.create_index("ix_corrections_batch_row", "corrections", ["batch_id", "row"])
    op.create_index("ix_corrections_tenant_created", "corrections", ["tenant", "created_at"])
    op.create_table(
        "taxonomy_versions",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        # the taxonomy's version string, recorded by batches and analyses that used it
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.Column("restored_from", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("taxonomy_versions")
    op.drop_index("ix_corrections_tenant_created", table_name="corrections")
    op.drop_index("ix_corrections_batch_row", table_name="corrections")
    op.drop_table("corrections")
