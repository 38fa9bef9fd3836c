"""predictions and prediction_rollups: the prediction log (services.predictions.sql).

One row per instance of every logged request (exactly once per (request_id, row)) and per-minute rollups
of endpoint × version × role whose counters writers add with ``+``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BUCKETS = 13  # len(services.predictions.LATENCY_BUCKETS_MS) when this revision was written


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("model", sa.String(255)),
        sa.Column("version", sa.String(32)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("prediction", sa.Text, nullable=False),
        sa.Column("latency_ms", sa.Double),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("labelled_at", sa.String(40)),
        sa.PrimaryKeyConstraint("request_id", "row", name="pk_predictions"),
    )
    op.create_index("ix_predictions_endpoint_at", "predictions", ["endpoint", "at"])
    op.create_table(
        "prediction_rollups",
        sa.Column("minute", sa.String(40), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("latency_sum_ms", sa.Double, nullable=False),
        *(sa.Column(f"latency_le_{i:02d}", sa.Integer, nullable=False) for i in range(BUCKETS)),
        sa.Column("labelled", sa.Integer, nullable=False),
        sa.Column("correct", sa.Integer, nullable=False),
        sa.Column("abs_error_sum", sa.Double, nullable=False),
        sa.Column("sq_error_sum", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "minute", "version", "role", name="pk_prediction_rollups"),
    )


def downgrade() -> None:
    op.drop_table("prediction_rollups")
    op.drop_index("ix_predictions_endpoint_at", "predictions")
    op.drop_table("predictions")
