"""The serving history on SQLAlchemy (SQLite or PostgreSQL): the ``serving_changes`` table.

``at`` is stored as the fixed-width ISO string of :func:`services.clock.iso`, so text order is time order
and the ``(endpoint, at)`` index answers both a time window (:meth:`SqlServingHistory.changes`) and "what
served at T" (:meth:`SqlServingHistory.served_at`: one indexed query for the last change at or before T).
Changes at the same instant keep the order they were recorded in (``id``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select

from services.clock import Clock, iso, parse_iso, utcnow
from services.history import ServedState, ServingHistory
from services.store.db import guarded, serving_changes, writing

SOURCE = "serving history"


class SqlServingHistory(ServingHistory):
    """``backend`` names the serving backend the changes happen on (written with each change). ``clock`` is
    accepted like the other adapters' but never read: every change carries its own time (``entry.at``)."""

    source = SOURCE

    def __init__(self, engine: Engine, *, backend: str | None = None, clock: Clock = utcnow):
        self.engine = engine
        self.backend = backend
        self.clock = clock

    def record(self, entry: ServedState) -> None:
        with guarded("recording a serving change", SOURCE), writing(self.engine) as conn:
            record_change(conn, entry, backend=self.backend)

    def changes(self, endpoint: str, start: datetime | None = None, end: datetime | None = None
                ) -> list[ServedState]:
        t = serving_changes.c
        q = select(serving_changes).where(t.endpoint == endpoint)
        if start is not None:
            q = q.where(t.at >= iso(start))
        if end is not None:
            q = q.where(t.at <= iso(end))
        with guarded(f"reading the serving history of {endpoint!r}", SOURCE), self.engine.connect() as conn:
            return [_state(r) for r in conn.execute(q.order_by(t.at, t.id)).mappings()]

    def served_at(self, endpoint: str, t: datetime) -> ServedState | None:
        c = serving_changes.c
        q = (select(serving_changes).where(c.endpoint == endpoint, c.at <= iso(t))
             .order_by(c.at.desc(), c.id.desc()).limit(1))
        with guarded(f"reading the serving history of {endpoint!r}", SOURCE), self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return _state(row) if row else None


def record_change(conn: Connection, entry: ServedState, *, backend: str | None = None) -> None:
    """Insert one change in the caller's transaction (the local backend writes it with its own change)."""
    conn.execute(insert(serving_changes).values(
        endpoint=entry.endpoint, at=iso(entry.at),
        stable_version=None if entry.stable_version is None else str(entry.stable_version),
        canary_version=None if entry.canary_version is None else str(entry.canary_version),
        canary_weight=int(entry.canary_weight or 0), actor=entry.actor, approved_by=entry.approved_by,
        note=entry.note or "", source=entry.source, backend=backend))


def _state(row) -> ServedState:
    return ServedState(endpoint=row["endpoint"], at=parse_iso(row["at"]), stable_version=row["stable_version"],
                       canary_version=row["canary_version"], canary_weight=int(row["canary_weight"] or 0),
                       actor=row["actor"], approved_by=row["approved_by"], note=row["note"] or "",
                       source=row["source"])
