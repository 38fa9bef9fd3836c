"""The audit trail on SQLAlchemy (SQLite or PostgreSQL).

``seq`` is the primary key and is always head + 1: two concurrent appends cannot both take the same
place; the loser re-reads the head and retries.

Besides the hashed fields (:data:`services.audit.FIELDS`) each row carries three **derived index
columns**, ``endpoint``, ``model`` and ``version`` (:func:`index_columns`). They are not part of the hash
chain: they are computed from the hashed fields (and the approval request or endpoint an entry names), so
the chain of entries written before they existed still verifies, and they exist only so that the
``endpoint`` / ``model`` / ``version`` filters of :meth:`SqlAuditTrail.entries` are indexed SQL. Migration
0003 backfilled them for older rows with the same function.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
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
from services.store.db import approval_requests, audit_log, endpoints, guarded, writing

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
                with guarded("writing the audit trail", SOURCE), writing(self.engine) as conn:
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
                    index = _index_columns_for(conn, target, before, after, details)
                    conn.execute(insert(audit_log).values(**row, **index))
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

    PAGE = 1000  # no longer used: the model/version filters are SQL now (kept for callers that set it)

    def entries(self, *, limit: int | None = 500, actor: str | None = None, action: str | None = None,
                target_contains: str | None = None, result: str | None = None,
                since: str | None = None, until: str | None = None, endpoint: str | None = None,
                model: str | None = None, version: str | None = None) -> list[AuditEntry]:
        """Newest first. ``since``/``until`` are ISO strings as :func:`time_bound` makes them (inclusive);
        ``endpoint``, ``model`` and ``version`` match the derived index columns exactly
        (:func:`index_columns`: the endpoint an entry is about, its registered model, its main version)."""
        q = select(audit_log).order_by(audit_log.c.seq.desc())
        if actor:
            q = q.where(audit_log.c.actor == actor)
        if action:
            q = q.where(audit_log.c.action == action)
        if result:
            q = q.where(audit_log.c.result == result)
        if target_contains:
            q = q.where(self._contains(audit_log.c.target, target_contains))
        if since:
            q = q.where(audit_log.c.ts >= since)
        if until:
            q = q.where(audit_log.c.ts <= until)
        for column, value in (("endpoint", endpoint), ("model", model), ("version", version)):
            value = (value or "").strip()
            if value:
                q = q.where(audit_log.c[column] == value)
        if limit:
            q = q.limit(limit)
        with guarded("reading the audit trail", SOURCE), self.engine.connect() as conn:
            return [_entry(dict(r)) for r in conn.execute(q).mappings()]

    def targets(self) -> list[str]:
        """Every distinct target in the trail, sorted (for filter pickers)."""
        with guarded("reading the audit trail", SOURCE), self.engine.connect() as conn:
            return sorted(conn.execute(select(audit_log.c.target).distinct()).scalars())

    def _contains(self, column, value: str):
        return (func.instr(column, value) if self._sqlite else func.strpos(column, value)) > 0

    @property
    def _sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def head_at(self, seq: int) -> str | None:
        with guarded("reading the audit trail", SOURCE), self.engine.connect() as conn:
            return conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == int(seq))).scalar()

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


# -- derived index columns -------------------------------------------------------------------------------
_REQUEST_TARGET = re.compile(r"request #(\d+)")
INDEX_WIDTHS = {"endpoint": 512, "model": 512, "version": 64}


def request_id_of(target: str, details: Any) -> int | None:
    """The approval request an entry names: its target ``request #N`` or ``details.request_id``."""
    m = _REQUEST_TARGET.fullmatch(str(target or "").strip())
    rid = m.group(1) if m else (details.get("request_id") if isinstance(details, dict) else None)
    try:
        return int(rid) if rid is not None and not isinstance(rid, bool) else None
    except (TypeError, ValueError):
        return None


def index_columns(entry: AuditEntry | Mapping, *, request: Mapping | None = None,
                  endpoint_models: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """Pure: the derived index columns of an entry (``before``/``after``/``details`` as decoded JSON).

    ``request`` is the approval request the entry names (:func:`request_id_of`; a mapping with
    ``endpoint``, ``model``, ``params``), ``endpoint_models`` the registered model of each endpoint.

    * **endpoint**: the ``target``, unless it is ``request #N``: then that request's endpoint (None when
      the request does not exist).
    * **model**: ``details.model`` (:func:`~services.audit.entry_subjects`), else the request's model, else
      the model the endpoint serves.
    * **version**, the main version the entry is about: the first of these that is one of the entry's
      versions (:func:`~services.audit.entry_subjects`, plus the request's ``params`` for entries that do
      not carry their own): ``params.version``, ``params.to_version`` (the entry's ``details.params``, else
      the request's), ``details.version``, ``after.stable_version`` when the stable version changed,
      ``after.canary_version`` when the canary changed, ``before.canary_version`` when a canary was removed,
      the canary in place (``after``, then ``before``), the stable version in place (``after``, then
      ``before``); else the highest of the entry's versions; None when it names none.

    Values longer than the column (:data:`INDEX_WIDTHS`) are cut to fit.
    """
    get = entry.get if isinstance(entry, Mapping) else lambda k: getattr(entry, k, None)
    target = str(get("target") or "")
    details = get("details") if isinstance(get("details"), dict) else {}
    request = request or {}
    req_params = request.get("params")
    if isinstance(req_params, str):
        try:
            req_params = json.loads(req_params)
        except ValueError:
            req_params = None

    endpoint = request.get("endpoint") if _REQUEST_TARGET.fullmatch(target.strip()) else (target or None)
    model, versions = entry_subjects(entry)
    model = model or request.get("model") or ((endpoint_models or {}).get(endpoint) if endpoint else None)

    params = details.get("params")
    if not isinstance(params, dict):
        params = req_params if isinstance(req_params, dict) else {}
        versions = versions | {_norm(params.get(k)) for k in ("version", "to_version") if _is_version(params.get(k))}
    before = get("before") if isinstance(get("before"), dict) else {}
    after = get("after") if isinstance(get("after"), dict) else {}
    candidates = [params.get("version"), params.get("to_version"), details.get("version")]
    if after.get("stable_version") != before.get("stable_version"):
        candidates.append(after.get("stable_version"))
    if after.get("canary_version") != before.get("canary_version"):
        candidates += [after.get("canary_version"), before.get("canary_version")]
    candidates += [after.get("canary_version"), before.get("canary_version"), after.get("stable_version"),
                   before.get("stable_version")]
    version = next((_norm(c) for c in candidates if _is_version(c) and _norm(c) in versions), None)
    if version is None and versions:
        version = max(versions, key=lambda v: (len(v), v))
    out = {"endpoint": endpoint, "model": model, "version": version}
    return {k: (str(v)[:INDEX_WIDTHS[k]] if v not in (None, "") else None) for k, v in out.items()}


def _norm(v: Any) -> str:
    return str(v).strip()


def _is_version(v: Any) -> bool:
    return v is not None and not isinstance(v, dict | list | bool) and _norm(v) not in ("", "None")


def request_facts(conn: Connection, request_id: int | None) -> dict | None:
    """The approval request's endpoint, model and params (what :func:`index_columns` needs), or None."""
    if request_id is None:
        return None
    row = conn.execute(select(approval_requests.c.endpoint, approval_requests.c.model, approval_requests.c.params)
                       .where(approval_requests.c.id == request_id)).mappings().first()
    return dict(row) if row else None


def _index_columns_for(conn: Connection, target: str, before: Any, after: Any, details: Any) -> dict:
    """:func:`index_columns` of a new entry, reading the request and the endpoint it names in ``conn``."""
    entry = {"target": target, "before": before, "after": after, "details": details}
    request = request_facts(conn, request_id_of(target, details))
    models: dict[str, str | None] = {}
    has_model = isinstance(details, dict) and details.get("model") not in (None, "")
    endpoint = index_columns(entry, request=request)["endpoint"]
    if endpoint and not has_model and not (request or {}).get("model"):
        models[endpoint] = conn.execute(select(endpoints.c.model).where(endpoints.c.name == endpoint)).scalar()
    return index_columns(entry, request=request, endpoint_models=models)


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
