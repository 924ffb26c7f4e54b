"""upload dialect: a CSV upload's delimiter, encoding and byte-order mark, kept for its exports

The people's export (GET /v1/batches/{id}/export) writes a CSV the way the upload was written (a ';' file from
Italian Excel comes back ';' with a BOM); the upload itself is deleted once its batch is done.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as b:
        # {"delimiter": ";", "encoding": "utf-8" | "cp1252" | "utf-16", "bom": true}; None: not a CSV, or before 0007
        b.add_column(sa.Column("upload_dialect", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("batches") as b:
        b.drop_column("upload_dialect")
