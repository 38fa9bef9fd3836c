"""Alerts (services.alerts.sql): one row per firing of a rule on an endpoint, resolved in place.

``firing`` is 1 while the alert fires and NULL once it resolved; the unique key (endpoint, rule, firing) lets
one alert fire per endpoint and rule (two evaluators firing at once: one insert wins) and keeps any number of
resolved ones (NULLs never conflict, on SQLite as on PostgreSQL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("firing", sa.Integer),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("resolved_at", sa.String(40)),
        sa.Column("value", sa.Double),
        sa.Column("last_value", sa.Double),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("acknowledged_by", sa.String(255)),
        sa.Column("acknowledged_at", sa.String(40)),
        sa.UniqueConstraint("endpoint", "rule", "firing", name="uq_alerts_firing"),
    )
    op.create_index("ix_alerts_started_at", "alerts", ["started_at"])
    op.create_index("ix_alerts_endpoint_started_at", "alerts", ["endpoint", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_endpoint_started_at", table_name="alerts")
    op.drop_index("ix_alerts_started_at", table_name="alerts")
    op.drop_table("alerts")
