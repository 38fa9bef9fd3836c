"""The serving-history port: what served on each endpoint, and when — every change with its time,
uncapped, for every backend.

``served_at(endpoint, t)`` answers "what served at T" (the incident timeline); ``changes(endpoint,
start, end)`` lists the changes in a window, oldest first. A backend that keeps the history in the same
transaction as its own write (``ServingBackend.records_history``, the local backend) records it there;
for the others (KServe) the use case records each change it applied. The SQL adapter is
:mod:`services.history.sql`, the in-memory fake ``tests/fakes.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime


@dataclass(frozen=True)
class ServedState:
    """The state an endpoint had from ``at`` until its next change."""

    endpoint: str
    at: datetime
    stable_version: str | None
    canary_version: str | None = None
    canary_weight: int = 0
    actor: str | None = None  # who made (or requested) the change
    approved_by: str | None = None  # the second person, when it was approved
    note: str = ""
    source: str = "console"  # console | backend | seed | migration

    def as_dict(self) -> dict:
        return asdict(self)


class ServingHistory(ABC):
    source = "serving history"

    @abstractmethod
    def record(self, entry: ServedState) -> None:
        """Append one change (the time is ``entry.at``)."""

    @abstractmethod
    def changes(self, endpoint: str, start: datetime | None = None, end: datetime | None = None
                ) -> list[ServedState]:
        """Every change with ``start <= at <= end`` (either bound open when None), oldest first."""

    def served_at(self, endpoint: str, t: datetime) -> ServedState | None:
        """The state in force at ``t``: the last change at or before it (None before the first)."""
        before = self.changes(endpoint, None, t)
        return before[-1] if before else None

    def earlier_stable_versions(self, endpoint: str, current: str | None) -> list[str]:
        """Versions that were stable here before, most recent first, without ``current`` (rollback targets)."""
        out: list[str] = []
        for entry in reversed(self.changes(endpoint)):
            v = entry.stable_version
            if v and v != current and v not in out:
                out.append(v)
        return out
