"""The audit trail on SQLAlchemy (SQLite or PostgreSQL).

``seq`` is the primary key and is always head + 1: two concurrent appends cannot both take the same
place; the loser re-reads the head and retries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from services.audit import (
    FIELDS,
    GENESIS,
    AuditEntry,
    AuditTrail,
    VerifyResult,
    canonical,
    entry_hash,
    entry_subjects,
)
from services.clock import Clock, iso, utcnow
from services.errors import Unavailable
from services.store.db import audit_log, guarded

SOURCE = "audit store"


class SqlAuditTrail(AuditTrail):
    source = SOURCE

    def __init__(self, engine: Engine, clock: Clock = utcnow):
        self.engine = engine
        self.clock = clock

    MAX_ATTEMPTS = 20

    def append(self, *, actor: str, action: str, target: str, result: str, reason: str = "", error: str = "",
               before: Any = None, after: Any = None, gates: Any = None, details: Any = None) -> AuditEntry:
        last: Unavailable | None = None
        for attempt in range(self.MAX_ATTEMPTS):
            try:
                with guarded("writing the audit trail", SOURCE), self.engine.begin() as conn:
                    head = conn.execute(
                        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
                    ).first()
                    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
                    row = {
                        "seq": seq, "ts": iso(self.clock()), "actor": actor, "action": action,
                        "target": target, "result": result, "reason": reason or "", "error": error or "",
                        "before": canonical(before), "after": canonical(after), "gates": canonical(gates),
                        "details": canonical(details),
                    }
                    row["prev_hash"] = prev
                    row["hash"] = entry_hash(prev, row)
                    conn.execute(insert(audit_log).values(**row))
                return _entry(row)
            except Unavailable as exc:
                if not _lost_the_race(exc.__cause__):
                    raise  # a real failure (disk, permissions, server down): no point retrying
                last = exc
                time.sleep(min(0.002 * (2 ** attempt), 0.1))  # back off: the winner is committing
        raise Unavailable(f"could not append to the audit trail after {self.MAX_ATTEMPTS} attempts", source=SOURCE,
                          detail=last.detail if last else None)

    def count(self) -> int:
        with guarded("reading the audit trail", SOURCE), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())

    PAGE = 1000  # rows read per query while filtering by model/version in Python

    def entries(self, *, limit: int | None = 500, actor: str | None = None, action: str | None = None,
                target_contains: str | None = None, result: str | None = None,
                since: str | None = None, until: str | None = None, endpoint: str | None = None,
                model: str | None = None, version: str | None = None) -> list[AuditEntry]:
        """Newest first. ``since``/``until`` are ISO strings as :func:`time_bound` makes them (inclusive);
        ``endpoint`` matches ``target`` exactly; ``model``/``version`` match what an entry is about
        (:func:`entry_subjects`), filtered in Python in pages of :attr:`PAGE` rows, ``limit`` applied after."""
        q = select(audit_log).order_by(audit_log.c.seq.desc())
        if actor:
            q = q.where(audit_log.c.actor == actor)
        if action:
            q = q.where(audit_log.c.action == action)
        if result:
            q = q.where(audit_log.c.result == result)
        if endpoint:
            q = q.where(audit_log.c.target == endpoint)
        if target_contains:
            q = q.where(self._contains(audit_log.c.target, target_contains))
        if since:
            q = q.where(audit_log.c.ts >= since)
        if until:
            q = q.where(audit_log.c.ts <= until)
        model = (model or "").strip() or None
        version = (version or "").strip() or None
        if model is None and version is None:
            if limit:
                q = q.limit(limit)
            with guarded("reading the audit trail", SOURCE), self.engine.connect() as conn:
                return [_entry(dict(r)) for r in conn.execute(q).mappings()]
        # cheap superset in SQL: the value must appear, as JSON text, somewhere in the entry
        text = audit_log.c.details + audit_log.c.before + audit_log.c.after
        for value in (model, version):
            if value is not None:
                q = q.where(self._contains(text, json.dumps(value, ensure_ascii=False)[1:-1]))
        out: list[AuditEntry] = []
        for e in self._paged(q):
            m, vs = entry_subjects(e)
            if (model is None or m == model) and (version is None or version in vs):
                out.append(e)
                if limit and len(out) >= limit:
                    break
        return out

    def _paged(self, q) -> Iterator[AuditEntry]:
        """Entries of ``q`` (ordered by seq descending) read PAGE rows at a time (keyset on seq)."""
        cursor = None
        while True:
            page = q if cursor is None else q.where(audit_log.c.seq < cursor)
            with guarded("reading the audit trail", SOURCE), self.engine.connect() as conn:
                rows = [_entry(dict(r)) for r in conn.execute(page.limit(self.PAGE)).mappings()]
            yield from rows
            if len(rows) < self.PAGE:
                return
            cursor = rows[-1].seq

    def targets(self) -> list[str]:
        """Every distinct target in the trail, sorted (for filter pickers)."""
        with guarded("reading the audit trail", SOURCE), self.engine.connect() as conn:
            return sorted(conn.execute(select(audit_log.c.target).distinct()).scalars())

    def _contains(self, column, value: str):
        return (func.instr(column, value) if self._sqlite else func.strpos(column, value)) > 0

    @property
    def _sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def verify(self, *, start: VerifyResult | None = None) -> VerifyResult:
        """Check the whole chain, or with ``start`` (an earlier OK result) only what was appended since: the
        entry that was the head must still carry the head hash ``start`` saw, then the chain goes on from it.
        (An incremental check cannot see an edit inside the prefix it trusts; check in full now and then.)"""
        cols = [audit_log.c[f] for f in FIELDS] + [audit_log.c.prev_hash, audit_log.c.hash]
        prev, n = GENESIS, 0
        sha = hashlib.sha256
        with guarded("verifying the audit trail", SOURCE), self.engine.connect() as conn:
            q = select(*cols).order_by(audit_log.c.seq)
            if start is not None and start.ok and start.entries > 0:
                head = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == start.entries)).scalar()
                if head == start.head_hash:
                    prev, n = start.head_hash, start.entries
                    q = q.where(audit_log.c.seq > start.entries)
            expected_seq = n + 1
            result = conn.execution_options(yield_per=5000).execute(q)
            for r in result:
                n += 1
                seq = r[0]
                if seq != expected_seq:
                    return VerifyResult(False, n - 1, expected_seq if seq > expected_seq else seq,
                                        f"entry {expected_seq} is missing (next entry is {seq})", prev)
                if r[12] != prev:
                    return VerifyResult(False, n - 1, seq, f"entry {seq} does not follow entry {seq - 1} "
                                        "(previous-hash link broken: deleted, reordered or edited)", prev)
                payload = "\x1f".join([prev, *(str(x) for x in r[:12])])
                digest = sha(payload.encode("utf-8")).hexdigest()
                if digest != r[13]:
                    return VerifyResult(False, n - 1, seq, f"entry {seq} was altered (hash mismatch)", prev)
                prev = digest
                expected_seq += 1
        return VerifyResult(True, n, None, "", prev)


def _lost_the_race(exc: BaseException | None) -> bool:
    """True when another writer took the same ``seq`` (or held the lock): re-read the head and try again."""
    if isinstance(exc, IntegrityError):
        orig = getattr(exc, "orig", None)
        code = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
        return code == "23505" or "UNIQUE constraint failed: audit_log.seq" in str(orig)
    if isinstance(exc, OperationalError):
        text = str(getattr(exc, "orig", exc)).lower()
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)
        return code in ("40001", "40P01") or "database is locked" in text or "deadlock" in text
    return False


def _entry(row: dict) -> AuditEntry:
    def load(text):
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            return text

    return AuditEntry(
        seq=row["seq"], ts=row["ts"], actor=row["actor"], action=row["action"], target=row["target"],
        result=row["result"], reason=row["reason"], error=row["error"], before=load(row["before"]),
        after=load(row["after"]), gates=load(row["gates"]), details=load(row["details"]),
        prev_hash=row["prev_hash"], hash=row["hash"],
    )
