"""Live metrics from the prediction log's per-minute rollups (``PredictionLog.rollups``): a window of any
length reads one row per minute × version × role, never the raw predictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.metrics import ROLE_ORDER, MetricsSource
from services.metrics.stats import Aggregate, merge


def _minute(t: datetime) -> datetime:
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return t.replace(second=0, microsecond=0)


class SqlMetricsSource(MetricsSource):
    source = "prediction log"

    def __init__(self, log, **kw):
        """``log``: a PredictionLog, or a function returning one (opened on first use)."""
        super().__init__(**kw)
        self._log = log

    @property
    def log(self):
        if callable(self._log) and not hasattr(self._log, "rollups"):
            self._log = self._log()
        return self._log

    def aggregates(self, endpoint: str, start: datetime, end: datetime) -> list[Aggregate]:
        return list(merge(self.log.rollups(endpoint, _minute(start), end)).values())

    def aggregate_series(self, endpoint: str, start: datetime, end: datetime, step: timedelta
                         ) -> list[tuple[datetime, Aggregate]]:
        start = _minute(start)
        rollups = self.log.rollups(endpoint, start, end)
        steps: dict[int, list] = {}
        for r in rollups:
            minute = r.minute if r.minute.tzinfo else r.minute.replace(tzinfo=UTC)
            steps.setdefault(int((minute - start) / step), []).append(r)
        keys = sorted({(r.version, r.role) for r in rollups}, key=lambda k: (ROLE_ORDER.get(k[1], 2), str(k[0])))
        out = []
        n = int((end - start) / step) + (1 if (end - start) % step else 0)
        for i in range(n):
            merged = merge(steps.get(i, []))
            for version, role in keys:  # a step without requests is a zero, not a gap
                out.append((start + i * step, merged.get((version, role), Aggregate(version, role))))
        return out
