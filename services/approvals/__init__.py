"""The approvals port: promotion requests and their decisions.

A request is bound to the exact change it asks for by ``plan_hash``. Every status change is a
compare-and-set on ``(status, row_version)``, so of two approvers racing on one request exactly one
claims it. The SQL adapter is :mod:`services.approvals.sql`, the in-memory fake ``tests/fakes.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from services.clock import iso

STATUSES = ("pending", "applying", "approved", "rejected", "expired", "void", "failed")


@dataclass(frozen=True)
class ApprovalRequest:
    id: int
    endpoint: str
    model: str | None
    action: str
    params: dict
    requester: str
    reason: str
    plan_hash: str
    plan: dict
    created_at: datetime
    expires_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    row_version: int

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("created_at", "expires_at", "decided_at"):
            d[k] = iso(d[k]) if d[k] else None
        return d

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at



class ApprovalRepository(ABC):
    source = "approval store"

    @abstractmethod
    def create(self, *, endpoint: str, model: str | None, action: str, params: dict, requester: str,
               reason: str, plan_hash: str, plan: Any, ttl: timedelta) -> ApprovalRequest:
        """A new pending request, expiring ``ttl`` from now."""

    @abstractmethod
    def get(self, request_id: int) -> ApprovalRequest:
        """Raises NotFound for an unknown id."""

    @abstractmethod
    def list(self, *, status: str | None = None, endpoint: str | None = None, limit: int = 500
             ) -> list[ApprovalRequest]:
        """Newest first."""

    @abstractmethod
    def transition(self, request_id: int, *, from_status: str, to_status: str, row_version: int,
                   by: str | None = None, reason: str | None = None) -> bool:
        """Compare-and-set the status. True when this call won."""
