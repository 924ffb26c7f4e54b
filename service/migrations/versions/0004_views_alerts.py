"""views and alerts: saved dashboard views and alert rules/events per tenant (issue 17)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_views",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        # None: the tenant's most recent finished batch when the view is opened
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id", ondelete="CASCADE")),
        # the dashboard's filters as a query string written by analytics.Filters.query_params
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("granularity", sa.String(8)),
        sa.Column("owner_key", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_saved_views_tenant_created", "saved_views", ["tenant", "created_at"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        # overall | topic | touchpoint | channel | segment, and which one
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(256)),
        # negative_share | share | nps | nps_impact | net_sentiment
        sa.Column("metric", sa.String(16), nullable=False),
        # above | below | change
        sa.Column("condition", sa.String(8), nullable=False),
        sa.Column("threshold", sa.Float),
        # change rules: previous_batch | previous_period, and any | up | down
        sa.Column("compare_to", sa.String(16)),
        sa.Column("direction", sa.String(8)),
        sa.Column("min_rows", sa.Integer, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook_secret", sa.String(128)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_alert_rules_tenant", "alert_rules", ["tenant"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        # the rule may be deleted later: its event stays, named
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("alert_rules.id", ondelete="SET NULL")),
        sa.Column("rule_name", sa.String(128), nullable=False),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        # fired | error (the evaluation failed: recorded, never the batch's failure)
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("previous", sa.Float),
        sa.Column("p_value", sa.Float),
        sa.Column("rows", sa.Integer),
        # none | pending | delivered | failed | refused
        sa.Column("webhook_status", sa.String(16), nullable=False),
        sa.Column("webhook_attempts", sa.Integer, nullable=False),
        sa.Column("webhook_error", sa.Text),
        sa.Column("delivered_at", sa.DateTime),
        sa.UniqueConstraint("rule_id", "batch_id", name="uq_alert_events_rule_batch"),
    )
    op.create_index("ix_alert_events_tenant_id", "alert_events", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_events_tenant_id", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_index("ix_alert_rules_tenant", table_name="alert_rules")
    op.drop_table("alert_rules")
    op.drop_index("ix_saved_views_tenant_created", table_name="saved_views")
    op.drop_table("saved_views")
