"""Local replicas (issue 12): the local serving backend's scaling bounds and target on ``endpoints`` (NULL: the
gateway's default) and ``replica_samples``, the gateway's worker counts per endpoint and version over time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("min_replicas", sa.Integer))
        batch.add_column(sa.Column("max_replicas", sa.Integer))
        batch.add_column(sa.Column("scale_metric", sa.String(16)))
        batch.add_column(sa.Column("scale_target", sa.Integer))
    op.create_table(
        "replica_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("in_flight", sa.Integer, nullable=False),
    )
    op.create_index("ix_replica_samples_endpoint_at", "replica_samples", ["endpoint", "at"])


def downgrade() -> None:
    op.drop_index("ix_replica_samples_endpoint_at", table_name="replica_samples")
    op.drop_table("replica_samples")
    with op.batch_alter_table("endpoints") as batch:
        for name in ("scale_target", "scale_metric", "max_replicas", "min_replicas"):
            batch.drop_column(name)
