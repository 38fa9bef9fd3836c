"""At most one retraining of an endpoint starting at a time: a lease taken before the open-run check and held until
the run is recorded, so two people (or a person and a rule, or two workers) cannot both start one — a ``local``
retraining takes a while, and until its audit entry is written the open-run check cannot see it.

The port, an in-memory adapter (tests, and a container without a database), and the SQL one in
:mod:`services.retraining.leases_sql`. A lease a stopped process never released lapses at ``until``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from datetime import datetime, timedelta

from services.errors import Conflict

SOURCE = "retraining"
LEASE = timedelta(minutes=30)  # longer than a local retraining takes; what a crash blocks at most


def held_by(endpoint: str, holder: str, until: datetime) -> Conflict:
    who = holder.split("#", 1)[0]
    return Conflict(f"a retraining of {endpoint} is being started by {who} right now (held until "
                    f"{until:%H:%M:%S} UTC): wait for it, then look at its run", source=SOURCE)


class RetrainLeases(ABC):
    source = SOURCE

    @abstractmethod
    def acquire(self, endpoint: str, holder: str, *, now: datetime, until: datetime) -> None:
        """Take the endpoint's lease for ``holder`` (Conflict while another holds one that has not lapsed)."""

    @abstractmethod
    def release(self, endpoint: str, holder: str) -> None:
        """Give it back (nothing when ``holder`` no longer holds it)."""


class MemoryLeases(RetrainLeases):
    def __init__(self):
        self._held: dict[str, tuple[str, datetime]] = {}
        self._lock = threading.Lock()

    def acquire(self, endpoint: str, holder: str, *, now: datetime, until: datetime) -> None:
        with self._lock:
            cur = self._held.get(endpoint)
            if cur is not None and cur[1] > now and cur[0] != holder:
                raise held_by(endpoint, *cur)
            self._held[endpoint] = (holder, until)

    def release(self, endpoint: str, holder: str) -> None:
        with self._lock:
            if self._held.get(endpoint, ("",))[0] == holder:
                del self._held[endpoint]
