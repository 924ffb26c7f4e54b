"""upload columns: the uploaded file's own column order, kept once the file itself is deleted

Exports list a row's original columns in the file's order; that order used to be read back from the upload,
which is now deleted once its batch is done (personal data, VOCE_KEEP_UPLOADS).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as b:
        # the upload's columns in file order (JSON list); None for batches registered before 0003
        b.add_column(sa.Column("columns", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("batches") as b:
        b.drop_column("columns")
