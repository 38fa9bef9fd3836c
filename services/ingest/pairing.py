"""Halves waiting for their other half, in memory: bounded (the oldest goes first when full) and with a TTL.

Nothing half-paired is ever persisted: a request whose response never comes (or came to another replica)
expires here and is counted. Ids written recently are remembered (bounded too) so a redelivered half of an
already stored pair is answered at once instead of waiting out its TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from services.ingest.events import Half


class PendingHalves:
    def __init__(self, *, max_pending: int = 10_000, ttl_s: float = 60.0, remember: int = 20_000,
                 monotonic: Callable[[], float] = time.monotonic):
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.remember = remember
        self.monotonic = monotonic
        self._pending: OrderedDict[str, tuple[float, Half]] = OrderedDict()
        self._done: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.expired = 0
        self.evicted = 0

    def _expire(self, now: float) -> None:
        while self._pending:
            key, (since, _) = next(iter(self._pending.items()))
            if now - since < self.ttl_s:
                break
            del self._pending[key]
            self.expired += 1
        while self._done and now - next(iter(self._done.values())) >= self.ttl_s:
            self._done.popitem(last=False)

    def offer(self, half: Half) -> tuple[Half, Half] | None:
        """Keep ``half`` until its other half comes; return ``(request, response)`` when both are here."""
        with self._lock:
            now = self.monotonic()
            self._expire(now)
            other = self._pending.get(half.id)
            if other is not None and other[1].kind != half.kind:
                del self._pending[half.id]
                pair = (half, other[1]) if half.kind == "request" else (other[1], half)
                return pair
            self._pending[half.id] = (now, half)  # a repeated half replaces the one waiting
            self._pending.move_to_end(half.id)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
                self.evicted += 1
            return None

    def written(self, event_id: str) -> None:
        with self._lock:
            self._done[event_id] = self.monotonic()
            self._done.move_to_end(event_id)
            while len(self._done) > self.remember:
                self._done.popitem(last=False)

    def already_written(self, event_id: str) -> bool:
        with self._lock:
            self._expire(self.monotonic())
            return event_id in self._done

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._expire(self.monotonic())
            return {"pending": len(self._pending), "expired": self.expired, "evicted": self.evicted}
