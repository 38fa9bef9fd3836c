"""Intents (services.actions.intents_sql): what an action is about to do, written before the endpoint write and
closed when it is done. One left unfinished by a stopped process is the evidence "needs repair" shows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_intents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("approved_by", sa.String(255)),
        sa.Column("request_id", sa.Integer),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("lease_until", sa.String(40), nullable=False),
        sa.Column("closed_at", sa.String(40)),
        sa.Column("row_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_action_intents_state_endpoint", "action_intents", ["state", "endpoint"])


def downgrade() -> None:
    op.drop_index("ix_action_intents_state_endpoint", table_name="action_intents")
    op.drop_table("action_intents")
