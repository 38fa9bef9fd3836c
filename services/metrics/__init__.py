"""The live-metrics port: numbers about how a version behaves on an endpoint now (error rate, latency,
drift), for live gates and the monitoring pages. Adapters arrive with the monitoring work (SQL rollups,
Prometheus); until then the composition root has none and live gates see "no data"."""

from __future__ import annotations

from abc import ABC, abstractmethod


class LiveMetrics(ABC):
    source = "metrics source"

    @abstractmethod
    def current(self, endpoint: str, version: str, metric: str) -> float | None:
        """The metric's current value for ``version`` on ``endpoint``; None when there is no data."""
