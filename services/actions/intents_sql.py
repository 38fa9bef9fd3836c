"""Intents on SQLAlchemy (SQLite or PostgreSQL): the ``action_intents`` table (revision 0008).

Every change of an intent is a compare-and-set ``UPDATE … WHERE id = :id AND row_version = :seen``, so of a
repair and a late owner (or two repairs) exactly one moves it on. Closed intents are kept: they say what each
action got through, and cost one row per action.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from services.actions.intents import SOURCE, UNFINISHED, Intent, IntentStore, Owner
from services.audit import canonical
from services.clock import iso, parse_iso
from services.errors import NotFound
from services.store.db import action_intents, guarded, writing


class SqlIntentStore(IntentStore):
    source = SOURCE

    def __init__(self, engine: Engine):
        self.engine = engine

    def open(self, *, endpoint, model, action, actor, approved_by, request_id, plan_hash, plan, owner, now,
             lease_until) -> Intent:
        with guarded("recording what the action is about to do", SOURCE), writing(self.engine) as conn:
            iid = conn.execute(insert(action_intents).values(
                endpoint=endpoint, model=model, action=action, actor=actor, approved_by=approved_by,
                request_id=request_id, plan_hash=plan_hash, plan=canonical(plan), state="open", step="started",
                note="", owner=canonical(owner.as_dict()), started_at=iso(now), updated_at=iso(now),
                lease_until=iso(lease_until), closed_at=None, row_version=1,
            ).returning(action_intents.c.id)).scalar_one()
        return self.get(iid)

    def get(self, intent_id: int) -> Intent:
        with guarded("reading an intent", SOURCE), self.engine.connect() as conn:
            row = conn.execute(select(action_intents).where(action_intents.c.id == intent_id)).mappings().first()
        if row is None:
            raise NotFound(f"no intent #{intent_id}", source=SOURCE)
        return _intent(row)

    def unfinished(self, endpoint: str | None = None) -> list[Intent]:
        t = action_intents.c
        q = select(action_intents).where(t.state.in_(UNFINISHED)).order_by(t.id)
        if endpoint is not None:
            q = q.where(t.endpoint == endpoint)
        with guarded("reading unfinished actions", SOURCE), self.engine.connect() as conn:
            return [_intent(r) for r in conn.execute(q).mappings()]

    def update(self, intent_id: int, *, row_version: int, now: datetime, state: str | None = None,
               step: str | None = None, note: str | None = None, lease_until: datetime | None = None,
               owner: Owner | None = None) -> bool:
        values: dict = {"updated_at": iso(now), "row_version": row_version + 1}
        if state is not None:
            values["state"] = state
            if state not in UNFINISHED:
                values["closed_at"] = iso(now)
        if step is not None:
            values["step"] = step[:64]
        if note is not None:
            values["note"] = note
        if lease_until is not None:
            values["lease_until"] = iso(lease_until)
        if owner is not None:
            values["owner"] = canonical(owner.as_dict())
        t = action_intents.c
        with guarded("updating an intent", SOURCE), writing(self.engine) as conn:
            res = conn.execute(update(action_intents).where(t.id == intent_id, t.row_version == row_version)
                               .values(**values))
            return res.rowcount == 1


def _intent(row) -> Intent:
    return Intent(
        id=row["id"], endpoint=row["endpoint"], model=row["model"], action=row["action"], actor=row["actor"],
        approved_by=row["approved_by"], request_id=row["request_id"], plan_hash=row["plan_hash"],
        plan=json.loads(row["plan"]), state=row["state"], step=row["step"], note=row["note"],
        owner=Owner.from_dict(json.loads(row["owner"])), started_at=parse_iso(row["started_at"]),
        updated_at=parse_iso(row["updated_at"]), lease_until=parse_iso(row["lease_until"]),
        closed_at=parse_iso(row["closed_at"]) if row["closed_at"] else None, row_version=row["row_version"],
    )
