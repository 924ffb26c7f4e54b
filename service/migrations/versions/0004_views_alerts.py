"""views and alerts: saved dashboard views and alert rules/events per tenant (issue 17)

Reserved revision: the analyst's-day work fills it in.  Until then it changes nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""
from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
