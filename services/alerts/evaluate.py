"""Alert rules against what the sources say now: :func:`observe` reads each rule's value over its window ending
now, :func:`evaluate` (pure) turns the values into decisions.

What each metric reads (``role`` filters the traffic to the stable or canary role it was served in; without it
the endpoint's whole traffic counts). The metrics source (:class:`~services.metrics.MetricsSource`, rollups or
Prometheus) answers per minute, so a window covers the whole minutes it touches:

- ``error_rate``, ``p95_latency_ms``: the window's errors / requests, and the latency histogram's 95th
  percentile (interpolated within its buckets); samples = requests.
- ``accuracy``, ``mae``, ``rmse``: live quality of the window's requests whose labels arrived; samples =
  labelled requests (a window whose labels have not arrived yet has no data).
- ``requests``: the prediction rate, requests per second over the window; samples = requests. A window without
  requests is 0 (a rate that fell to nothing) while the role is served (a canary runs, for ``canary``), else
  no data.
- ``rate_change``: this window's requests against the same window one day earlier, as a relative change
  (−0.5: half as many as yesterday at this time; +1: twice as many); samples = the earlier window's requests,
  no data when it had none.
- ``drift_share``: the share of the features of the version serving in ``role`` (without a role: the one that
  answered most requests) that drifted from its reference, with the endpoint's drift policy, from the hourly
  histograms (:func:`services.drift.windows.endpoint_drift`: the window widens to the hours it touches);
  samples = the requests counted. No profile or no traffic: no data.
- ``feature_alarm``: how many Page–Hinkley alarms on a feature's hourly mean (``feature``: that feature only)
  the same drift view raised in the window. The view reaches :data:`ALARM_WARMUP` further back, the detector's
  warm-up (48 hourly points), so that it can alarm at all; samples = the window's requests.

A rule with no data RESOLVES its firing alert (as Prometheus does when a series disappears). With fewer
samples than ``min_samples`` the rule neither fires nor resolves (too little to say either way), and a source
that fails leaves the alert as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.alerts import AlertRule, format_window
from services.errors import ConsoleError, NotFound

ALARM_WARMUP = timedelta(hours=48)
DAY = timedelta(days=1)
VERDICTS = ("firing", "ok", "no_data", "too_few", "error")


@dataclass(frozen=True)
class Observation:
    """One rule's value over its window (None: no data), the samples it rests on, and why when it is missing."""

    value: float | None
    samples: float | None = None
    note: str = ""
    error: str = ""  # the source failed: the rule cannot judge


@dataclass(frozen=True)
class Decision:
    """What a rule says now: ``verdict`` firing | ok | no_data | too_few | error; :attr:`action` what to do
    with its alert: ``fire``, ``resolve`` or ``keep`` (leave it as it is)."""

    rule: AlertRule
    verdict: str
    value: float | None
    samples: float | None
    summary: str

    @property
    def action(self) -> str:
        return {"firing": "fire", "ok": "resolve", "no_data": "resolve"}.get(self.verdict, "keep")


def _fmt(metric: str, v: float) -> str:
    if metric in ("error_rate", "drift_share", "accuracy"):
        return f"{v:.1%}"
    if metric == "rate_change":
        return f"{v:+.0%}"
    if metric == "p95_latency_ms":
        return f"{v:.0f} ms"
    if metric == "requests":
        return f"{v:.3g}/s"
    return f"{v:.4g}"


def _bound(rule: AlertRule) -> str:
    b = rule.above if rule.above is not None else rule.below
    return _fmt(rule.metric, b) if rule.metric != "feature_alarm" else f"{b:g}"


def evaluate(rules: Iterable[AlertRule], observations: Mapping[str, Observation]) -> list[Decision]:
    """Pure: one decision per rule from its observation (by rule name; a missing one is no data)."""
    out = []
    for rule in rules:
        ob = observations.get(rule.name) or Observation(None, note="not observed")
        what = f"{rule.role} {rule.metric}" if rule.role else rule.metric
        if rule.feature:
            what += f" [{rule.feature}]"
        span = f"over {format_window(rule.window)}"
        n = f", n = {ob.samples:g}" if ob.samples is not None else ""
        if ob.error:
            out.append(Decision(rule, "error", None, ob.samples, f"{what}: cannot be read ({ob.error})"))
        elif ob.value is None:
            why = f": {ob.note}" if ob.note else ""
            out.append(Decision(rule, "no_data", None, ob.samples, f"{what}: no data {span}{why}"))
        elif rule.min_samples and (ob.samples or 0) < rule.min_samples:
            out.append(Decision(rule, "too_few", ob.value, ob.samples,
                                f"{what} {_fmt(rule.metric, ob.value)} {span} on {ob.samples or 0:g} samples, "
                                f"fewer than {rule.min_samples}: not judged"))
        else:
            breached = rule.breached(ob.value)
            op = (">" if rule.above is not None else "<") if breached else ("≤" if rule.above is not None else "≥")
            out.append(Decision(rule, "firing" if breached else "ok", ob.value, ob.samples,
                                f"{what} {_fmt(rule.metric, ob.value)} {op} {_bound(rule)} {span}{n}"))
    return out


# -- reading the sources ---------------------------------------------------------------------------------------
def observe(rules: Iterable[AlertRule], endpoint, *, metrics, predictions, drift_policy, now: datetime
            ) -> dict[str, Observation]:
    """Each rule's observation over its window ending ``now`` on ``endpoint`` (a serving
    :class:`~services.serving.Endpoint`). A source that fails marks that rule's observation as an error."""
    memo: dict[tuple, object] = {}

    def cached(key: tuple, fn: Callable[[], object]):
        if key not in memo:
            memo[key] = fn()
        return memo[key]

    out = {}
    for rule in rules:
        try:
            out[rule.name] = _observe(rule, endpoint, metrics, predictions, drift_policy, now, cached)
        except NotFound as exc:
            out[rule.name] = Observation(None, note=exc.message)
        except ConsoleError as exc:
            out[rule.name] = Observation(None, error=f"{exc.source}: {exc.message}")
    return out


def _served_in(endpoint, role: str | None) -> str | None:
    """The version serving ``role`` now (None: nothing serves it; without a role, the stable version)."""
    return endpoint.canary_version if role == "canary" else endpoint.stable_version


def _aggregate(metrics, endpoint: str, start: datetime, end: datetime, role: str | None, cached):
    from services.metrics.stats import combine

    aggs = cached(("aggregates", start, end), lambda: metrics.aggregates(endpoint, start, end))
    return combine([a for a in aggs if role is None or a.role == role], role=role or "all")


def _observe(rule: AlertRule, ep, metrics, predictions, drift_policy, now: datetime, cached) -> Observation:
    start = now - rule.window
    if rule.metric in ("drift_share", "feature_alarm"):
        return _drift(rule, ep, predictions, drift_policy, start, now, cached)
    if metrics is None:
        return Observation(None, error="no metrics source")
    agg = _aggregate(metrics, ep.name, start, now, rule.role, cached)
    count = agg.count if agg is not None else 0.0
    if rule.metric == "requests":
        if count == 0 and _served_in(ep, rule.role) is None:
            return Observation(None, 0.0, note=f"no {rule.role or 'stable'} version serves")
        return Observation(count / rule.window.total_seconds(), count)
    if rule.metric == "rate_change":
        before = _aggregate(metrics, ep.name, start - DAY, now - DAY, rule.role, cached)
        base = before.count if before is not None else 0.0
        if base <= 0:
            return Observation(None, 0.0, note="no requests in the same window a day earlier")
        return Observation(count / base - 1.0, base)
    if agg is None or count == 0:
        return Observation(None, 0.0, note="no requests")
    if rule.metric == "error_rate":
        return Observation(agg.error_rate, count)
    if rule.metric == "p95_latency_ms":
        return Observation(agg.quantile(0.95), count)
    value = {"accuracy": agg.accuracy, "mae": agg.mae, "rmse": agg.rmse}[rule.metric]
    return Observation(value, agg.labelled, note="" if value is not None else "no labels yet")


def _drift(rule: AlertRule, ep, predictions, drift_policy, start: datetime, now: datetime, cached) -> Observation:
    from services.drift.windows import endpoint_drift

    if predictions is None:
        return Observation(None, error="no prediction log")
    version = _served_in(ep, rule.role) if rule.role else None
    if rule.role and version is None:
        return Observation(None, note=f"no {rule.role} version serves")
    view_start = start - ALARM_WARMUP if rule.metric == "feature_alarm" else start
    view = cached(("drift", view_start, now, version), lambda: endpoint_drift(
        predictions, drift_policy, ep.name, view_start, now, version=version, model=ep.model))
    if rule.metric == "drift_share":
        if not view.current_rows:
            return Observation(None, 0.0, note="no requests")
        return Observation(view.verdict.share, view.current_rows)
    from services.predictions.histograms import hour_of

    since = hour_of(start)
    alarms = [a for a in view.alarms if a["kind"] == "mean" and a["at"] >= since
              and (rule.feature is None or a["feature"] == rule.feature)]
    recent = sum(n for t, n in view.traffic if t >= since)
    return Observation(float(len(alarms)), float(recent))
