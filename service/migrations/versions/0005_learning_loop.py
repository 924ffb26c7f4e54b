"""learning loop: corrections and versioned taxonomies per tenant (issue 15)

Reserved revision: the learning-loop work fills it in.  Until then it changes nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""
from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
