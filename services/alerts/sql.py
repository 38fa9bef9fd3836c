"""The alert store on the console database (table ``alerts``, schema 0007).

One firing alert per endpoint and rule is the database's own rule: the unique key (endpoint, rule, firing),
``firing`` being 1 while the alert fires and NULL once resolved. Two evaluators firing the same rule at once:
on SQLite the write lock taken at BEGIN serialises them; on PostgreSQL the second insert waits for the first
and fails on the key, and its retry finds the firing alert and updates it. Times are ``services.clock.iso``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from services.alerts import Alert, AlertRule, AlertStore
from services.clock import Clock, iso, parse_iso, utcnow
from services.errors import Invalid, NotFound, Unavailable
from services.store.db import alerts, guarded, writing

SOURCE = "alert store"
FIRING = 1
MAX_LIMIT = 10_000


def _alert(r) -> Alert:
    def t(v):
        return parse_iso(v) if v else None

    return Alert(id=str(r["id"]), endpoint=r["endpoint"], rule=r["rule"], severity=r["severity"], state=r["state"],
                 started_at=parse_iso(r["started_at"]), resolved_at=t(r["resolved_at"]), value=r["value"],
                 last_value=r["last_value"], summary=r["summary"], acknowledged_by=r["acknowledged_by"],
                 acknowledged_at=t(r["acknowledged_at"]), source="console")


def _id(alert_id) -> int | None:
    text = str(alert_id).strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


def _num(v: float | None) -> float | None:
    return None if v is None else float(v)


class SqlAlertStore(AlertStore):
    source = SOURCE
    ATTEMPTS = 3

    def __init__(self, engine: Engine, *, clock: Clock = utcnow):
        self.engine = engine
        self.clock = clock

    def _firing(self, conn, endpoint: str, rule: str):
        return conn.execute(select(alerts).where(alerts.c.endpoint == endpoint, alerts.c.rule == rule,
                                                 alerts.c.firing == FIRING)).mappings().first()

    def fire(self, endpoint: str, rule: AlertRule, at: datetime, value: float | None, summary: str) -> Alert:
        for attempt in range(self.ATTEMPTS):
            try:
                with guarded(f"firing alert {rule.name!r} on {endpoint!r}", SOURCE), writing(self.engine) as conn:
                    have = self._firing(conn, endpoint, rule.name)
                    if have is not None:
                        conn.execute(update(alerts).where(alerts.c.id == have["id"])
                                     .values(last_value=_num(value), summary=summary))
                        return _alert({**have, "last_value": _num(value), "summary": summary})
                    row = {"endpoint": endpoint, "rule": rule.name, "severity": rule.severity, "state": "firing",
                           "firing": FIRING, "started_at": iso(at), "resolved_at": None, "value": _num(value),
                           "last_value": _num(value), "summary": summary, "acknowledged_by": None,
                           "acknowledged_at": None}
                    new_id = conn.execute(insert(alerts).values(**row).returning(alerts.c.id)).scalar_one()
                    return _alert({**row, "id": new_id})
            except Unavailable as exc:
                if not isinstance(exc.__cause__, IntegrityError) or attempt == self.ATTEMPTS - 1:
                    raise  # lost the race to another evaluator: the retry finds its alert and updates it
        raise AssertionError("unreachable")  # pragma: no cover

    def resolve(self, endpoint: str, rule_name: str, at: datetime) -> Alert | None:
        with guarded(f"resolving alert {rule_name!r} on {endpoint!r}", SOURCE), writing(self.engine) as conn:
            have = self._firing(conn, endpoint, rule_name)
            if have is None:
                return None
            done = conn.execute(update(alerts).where(alerts.c.id == have["id"], alerts.c.firing == FIRING)
                                .values(state="resolved", firing=None, resolved_at=iso(at))).rowcount
            if not done:  # resolved by another evaluator meanwhile
                return None
            return _alert({**have, "state": "resolved", "firing": None, "resolved_at": iso(at)})

    def alerts(self, *, endpoint: str | None = None, state: str | None = None, start: datetime | None = None,
               end: datetime | None = None, limit: int | None = 500) -> list[Alert]:
        if state not in (None, "firing", "resolved"):
            raise Invalid(f"state must be firing or resolved, not {state!r}", source=SOURCE)
        q = select(alerts)
        if endpoint is not None:
            q = q.where(alerts.c.endpoint == endpoint)
        if state is not None:
            q = q.where(alerts.c.state == state)
        if end is not None:
            q = q.where(alerts.c.started_at < iso(end))
        if start is not None:
            q = q.where(alerts.c.resolved_at.is_(None) | (alerts.c.resolved_at >= iso(start)))
        q = q.order_by(alerts.c.started_at.desc(), alerts.c.id.desc())
        if limit:
            q = q.limit(min(int(limit), MAX_LIMIT))
        with guarded("reading alerts", SOURCE), self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(q).mappings()]

    def get(self, alert_id: str) -> Alert | None:
        key = _id(alert_id)
        if key is None:
            return None
        with guarded("reading an alert", SOURCE), self.engine.connect() as conn:
            r = conn.execute(select(alerts).where(alerts.c.id == key)).mappings().first()
        return _alert(r) if r else None

    def acknowledge(self, alert_id: str, actor_subject: str, at: datetime) -> Alert:
        key = _id(alert_id)
        with guarded("acknowledging an alert", SOURCE), writing(self.engine) as conn:
            if key is not None:
                conn.execute(update(alerts).where(alerts.c.id == key, alerts.c.acknowledged_by.is_(None))
                             .values(acknowledged_by=actor_subject, acknowledged_at=iso(at)))
                r = conn.execute(select(alerts).where(alerts.c.id == key)).mappings().first()
            else:
                r = None
        if r is None:
            raise NotFound(f"no alert {alert_id!r}", source=SOURCE)
        return _alert(r)
