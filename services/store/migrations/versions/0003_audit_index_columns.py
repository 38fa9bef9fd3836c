"""audit_log.endpoint / model / version: derived index columns (not part of the hash chain), backfilled.

The values come from :func:`services.audit.sql.index_columns` (the rule is documented there): the endpoint
is the target unless it is ``request #N`` (then that request's endpoint), the model is ``details.model``,
else the request's or the endpoint's model, the version is the main version the entry is about. The hashed
fields are not touched, so the chain still verifies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHUNK = 1000
COLUMNS = (("endpoint", 512), ("model", 512), ("version", 64))


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        for name, width in COLUMNS:
            batch.add_column(sa.Column(name, sa.String(width), nullable=True))
    for name, _ in COLUMNS:
        op.create_index(f"ix_audit_log_{name}", "audit_log", [name])
    backfill(op.get_bind())


def backfill(conn) -> int:
    """Fill the three columns of every row from its hashed fields; returns the number of rows."""
    from services.audit.sql import index_columns, request_id_of

    audit = sa.table("audit_log", sa.column("seq"), sa.column("target"), sa.column("before"), sa.column("after"),
                     sa.column("details"), *(sa.column(n) for n, _ in COLUMNS))
    requests = sa.table("approval_requests", sa.column("id"), sa.column("endpoint"), sa.column("model"),
                        sa.column("params"))
    endpoints = sa.table("endpoints", sa.column("name"), sa.column("model"))
    by_id = {r.id: {"endpoint": r.endpoint, "model": r.model, "params": r.params}
             for r in conn.execute(sa.select(requests))}
    models = {r.name: r.model for r in conn.execute(sa.select(endpoints))}
    update = (sa.update(audit).where(audit.c.seq == sa.bindparam("b_seq"))
              .values(endpoint=sa.bindparam("b_endpoint"), model=sa.bindparam("b_model"),
                      version=sa.bindparam("b_version")))
    last, done = 0, 0
    while True:
        rows = conn.execute(sa.select(audit.c.seq, audit.c.target, audit.c.before, audit.c.after, audit.c.details)
                            .where(audit.c.seq > last).order_by(audit.c.seq).limit(CHUNK)).all()
        if not rows:
            return done
        params = []
        for r in rows:
            entry = {"target": r.target, "before": _load(r.before), "after": _load(r.after),
                     "details": _load(r.details)}
            cols = index_columns(entry, request=by_id.get(request_id_of(r.target, entry["details"])),
                                 endpoint_models=models)
            params.append({"b_seq": r.seq, **{f"b_{k}": v for k, v in cols.items()}})
        conn.execute(update, params)
        done += len(rows)
        last = rows[-1].seq


def _load(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def downgrade() -> None:
    for name, _ in COLUMNS:
        op.drop_index(f"ix_audit_log_{name}", "audit_log")
    with op.batch_alter_table("audit_log") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
