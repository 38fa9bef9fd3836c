"""serving_changes: the serving history (services.history.sql), backfilled from endpoint_revisions.

Every revision the local serving backend recorded becomes one change with source "backend" and backend
"local" (``endpoint_revisions`` itself stays: it is the local backend's own revision list).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
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
        "serving_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("stable_version", sa.String(32)),
        sa.Column("canary_version", sa.String(32)),
        sa.Column("canary_weight", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("approved_by", sa.String(255)),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(32)),
    )
    op.create_index("ix_serving_changes_endpoint_at", "serving_changes", ["endpoint", "at"])
    cols = ("endpoint", "at", "stable_version", "canary_version", "canary_weight", "actor", "approved_by", "note")
    revisions = sa.table("endpoint_revisions", sa.column("id"), *(sa.column(c) for c in cols))
    changes = sa.table("serving_changes", *(sa.column(c) for c in (*cols, "source", "backend")))
    op.get_bind().execute(changes.insert().from_select(
        [*cols, "source", "backend"],
        sa.select(*(revisions.c[c] for c in cols if c != "note"), sa.func.coalesce(revisions.c.note, ""),
                  sa.literal("backend"), sa.literal("local")).order_by(revisions.c.id)))


def downgrade() -> None:
    op.drop_index("ix_serving_changes_endpoint_at", "serving_changes")
    op.drop_table("serving_changes")
