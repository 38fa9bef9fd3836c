"""Promotion requests on SQLAlchemy (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from services.approvals import ApprovalRepository, ApprovalRequest
from services.audit import canonical
from services.clock import Clock, iso, parse_iso, utcnow
from services.errors import NotFound
from services.store.db import approval_requests, guarded

SOURCE = "approval store"


class SqlApprovalRepository(ApprovalRepository):
    source = SOURCE

    def __init__(self, engine: Engine, clock: Clock = utcnow):
        self.engine = engine
        self.clock = clock

    def create(self, *, endpoint: str, model: str | None, action: str, params: dict, requester: str,
               reason: str, plan_hash: str, plan: Any, ttl: timedelta) -> ApprovalRequest:
        now = self.clock()
        with guarded("recording the request", SOURCE), self.engine.begin() as conn:
            rid = conn.execute(insert(approval_requests).values(
                endpoint=endpoint, model=model, action=action, params=canonical(params), requester=requester,
                reason=reason, plan_hash=plan_hash, plan=canonical(plan), created_at=iso(now),
                expires_at=iso(now + ttl), status="pending", row_version=1,
            ).returning(approval_requests.c.id)).scalar_one()
        return self.get(rid)

    def get(self, request_id: int) -> ApprovalRequest:
        with guarded("reading a request", SOURCE), self.engine.connect() as conn:
            row = conn.execute(select(approval_requests).where(approval_requests.c.id == request_id)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no approval request #{request_id}", source=SOURCE)
        return _request(row)

    def list(self, *, status: str | None = None, endpoint: str | None = None, limit: int = 500
             ) -> list[ApprovalRequest]:
        q = select(approval_requests).order_by(approval_requests.c.id.desc()).limit(limit)
        if status:
            q = q.where(approval_requests.c.status == status)
        if endpoint:
            q = q.where(approval_requests.c.endpoint == endpoint)
        with guarded("reading requests", SOURCE), self.engine.connect() as conn:
            return [_request(r) for r in conn.execute(q).mappings()]

    def transition(self, request_id: int, *, from_status: str, to_status: str, row_version: int,
                   by: str | None = None, reason: str | None = None) -> bool:
        """Compare-and-set the status. True when this call won."""
        values: dict[str, Any] = {"status": to_status, "row_version": row_version + 1}
        if by is not None:
            values.update(decided_by=by, decided_at=iso(self.clock()), decision_reason=reason or "")
        with guarded("updating a request", SOURCE), self.engine.begin() as conn:
            res = conn.execute(update(approval_requests).where(
                approval_requests.c.id == request_id, approval_requests.c.status == from_status,
                approval_requests.c.row_version == row_version).values(**values))
            return res.rowcount == 1


def _request(row) -> ApprovalRequest:
    return ApprovalRequest(
        id=row["id"], endpoint=row["endpoint"], model=row["model"], action=row["action"],
        params=json.loads(row["params"]), requester=row["requester"], reason=row["reason"],
        plan_hash=row["plan_hash"], plan=json.loads(row["plan"]), created_at=parse_iso(row["created_at"]),
        expires_at=parse_iso(row["expires_at"]), status=row["status"], decided_by=row["decided_by"],
        decided_at=parse_iso(row["decided_at"]) if row["decided_at"] else None,
        decision_reason=row["decision_reason"], row_version=row["row_version"],
    )
