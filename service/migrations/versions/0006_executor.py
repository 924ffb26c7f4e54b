"""executor and cancellation: which executor analysed a batch (local, or ray: a Ray cluster's analyzer actors), and
when cancelling it was asked (its worker stops at the next chunk)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as b:
        b.add_column(sa.Column("executor", sa.String(16)))
        b.add_column(sa.Column("cancel_requested_at", sa.DateTime))


def downgrade() -> None:
    with op.batch_alter_table("batches") as b:
        b.drop_column("cancel_requested_at")
        b.drop_column("executor")
