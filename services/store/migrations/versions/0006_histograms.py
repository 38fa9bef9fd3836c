"""Reference profiles and the histograms kept on them (services.drift.bins, services.predictions.histograms).

- ``prediction_rollups`` gains the per-minute prediction histogram: ``pred_00`` … ``pred_11`` (0 for the
  minutes already rolled up: their answers were not binned);
- ``reference_profiles``: each version's fixed bins, derived once;
- ``feature_histograms``: per hour × endpoint × version × role × feature, a count per slot (``bin_00`` …
  ``bin_11``, the last for missing values) and the sum and sum of squares of the values, added with ``+``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SLOTS = 12  # len(services.predictions.histograms.PREDICTION_SLOTS) when this revision was written


def upgrade() -> None:
    with op.batch_alter_table("prediction_rollups") as batch:
        for i in range(SLOTS):
            batch.add_column(sa.Column(f"pred_{i:02d}", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "reference_profiles",
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name="pk_reference_profiles"),
    )
    op.create_table(
        "feature_histograms",
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("hour", sa.String(40), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("feature", sa.String(255), nullable=False),
        *(sa.Column(f"bin_{i:02d}", sa.Integer, nullable=False) for i in range(SLOTS)),
        sa.Column("total", sa.Double, nullable=False),
        sa.Column("total_sq", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "hour", "version", "role", "feature", name="pk_feature_histograms"),
    )


def downgrade() -> None:
    op.drop_table("feature_histograms")
    op.drop_table("reference_profiles")
    with op.batch_alter_table("prediction_rollups") as batch:
        for i in range(SLOTS):
            batch.drop_column(f"pred_{i:02d}")
