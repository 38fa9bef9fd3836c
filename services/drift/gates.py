"""Drift as live gates: what the policy's ``gates.live`` may name beside the metrics source's numbers.

- ``drift_share``: the share of the candidate's features that drifted from its own reference over the live
  window (the time at its current weight, at most ``MLOPS_LIVE_WINDOW_MINUTES``), with the endpoint's drift
  policy, from the histograms kept at ingest (:func:`services.drift.windows.endpoint_drift`). None (no live
  data) when the version has no profile or no request in the window.
- ``attribution_shift``: how differently the candidate uses its features from the champion's, on the same
  held-out rows: half the sum over features of |share of mean |SHAP| (candidate) − share (champion)|, in
  [0, 1] (:meth:`services.explain.service.Explainer.version_drift`). None when there is no champion to
  compare with or the candidate is the champion.

:class:`GateMetrics` answers these and passes every other metric to the metrics source, so the planners read one
:class:`~services.metrics.LiveMetrics` port whatever the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from services.drift.windows import endpoint_drift
from services.errors import NotFound
from services.metrics import LiveMetrics

DRIFT_METRICS = ("drift_share", "attribution_shift")


class GateMetrics(LiveMetrics):
    source = "metrics source and drift"

    def __init__(self, metrics: LiveMetrics | None, predictions, policy, *, model_of: Callable[[str], str | None],
                 champion_of: Callable[[str], str | None], explainer: Callable[[], object] | None = None,
                 clock: Callable[[], datetime], window: timedelta = timedelta(minutes=60)):
        self.metrics = metrics
        self.predictions = predictions
        self.policy = policy
        self.model_of = model_of
        self.champion_of = champion_of
        self.explainer = explainer
        self.clock = clock
        self.window = window

    def _window(self, endpoint: str, version: str) -> tuple[datetime, datetime]:
        live = getattr(self.metrics, "live_window", None)
        if live is not None:
            start, end, _ = live(endpoint, version)
            return start, end
        now = self.clock()
        return now - self.window, now

    def current(self, endpoint: str, version: str, metric: str) -> float | None:
        if metric == "drift_share":
            return self.drift_share(endpoint, version)
        if metric == "attribution_shift":
            return self.attribution_shift(endpoint, version)
        return None if self.metrics is None else self.metrics.current(endpoint, version, metric)

    def p_value(self, endpoint: str, version: str, baseline: str, metric: str) -> float | None:
        if metric in DRIFT_METRICS or self.metrics is None:
            return None
        return self.metrics.p_value(endpoint, version, baseline, metric)

    def drift_share(self, endpoint: str, version: str) -> float | None:
        model = self.model_of(endpoint)
        if not model:
            return None
        start, end = self._window(endpoint, version)
        if start >= end:
            return None
        try:
            view = endpoint_drift(self.predictions, self.policy.for_endpoint(endpoint).drift, endpoint, start, end,
                                  version=str(version), model=model)
        except NotFound:
            return None
        return view.verdict.share

    def attribution_shift(self, endpoint: str, version: str) -> float | None:
        model = self.model_of(endpoint)
        if not model or self.explainer is None:
            return None
        champion = self.champion_of(model)
        if not champion or str(champion) == str(version):
            return None
        drift = self.explainer().version_drift(model, str(champion), str(version))
        return float(drift["attribution_shift"])
