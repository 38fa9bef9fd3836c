"""Retraining leases (services.retraining.leases_sql): one row per endpoint while a retraining of it is being
started, so at most one starts at a time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retrain_leases",
        sa.Column("endpoint", sa.String(255), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("taken_at", sa.String(40), nullable=False),
        sa.Column("until", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retrain_leases")
