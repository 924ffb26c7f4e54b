"""trust: API keys (hashed, scoped, per tenant) and a batch's personal-data policy

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        # the first characters of the key, shown in listings (the key itself is never stored)
        sa.Column("prefix", sa.String(16), nullable=False),
        # scrypt/sha256 hash of the whole key (see service/auth)
        sa.Column("key_hash", sa.String(256), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime),
        sa.Column("last_used_at", sa.DateTime),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    with op.batch_alter_table("batches") as b:
        # redact | mask | keep: how personal data in this batch's texts is stored
        b.add_column(sa.Column("pii_mode", sa.String(8)))
        # the uploaded file was deleted (or redacted) once parsed
        b.add_column(sa.Column("file_deleted_at", sa.DateTime))
    op.create_index("ix_batches_tenant_created", "batches", ["tenant", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_tenant_created", table_name="batches")
    with op.batch_alter_table("batches") as b:
        b.drop_column("file_deleted_at")
        b.drop_column("pii_mode")
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_index("ix_api_keys_prefix", table_name="api_keys")
    op.drop_table("api_keys")
