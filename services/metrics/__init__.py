"""Live metrics: how each version behaves on an endpoint (requests, errors, latency, live quality), for the
live gates, the Monitoring page and ``python -m services metrics``.

Two ports. ``LiveMetrics`` is what the live gates read: ``current(endpoint, version, metric)`` (and
``p_value`` for gates that compare a canary with its stable version). ``MetricsSource`` is the whole
picture over a window: per version and role, time series per step, and the significance tests canary vs
stable; it implements ``LiveMetrics`` on top of two primitives the adapters provide, the counts of a
window (``aggregates``) and of each step (``aggregate_series``). All maths is in :mod:`.stats`.

Adapters: :mod:`.sql` (the prediction log's per-minute rollups) and :mod:`.prometheus` (PromQL over
Prometheus' HTTP API); ``MLOPS_METRICS_SOURCE`` picks one in the composition root.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from services.clock import utcnow
from services.metrics.stats import (
    Aggregate,
    combine,
    mann_whitney_histograms,
    min_detectable_difference,
    two_proportion_ztest,
)

LIVE_METRICS = ("error_rate", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "requests", "errors",
                "minutes_at_weight", "accuracy", "mae", "rmse")
ALPHA, POWER = 0.05, 0.8
ROLE_ORDER = {"stable": 0, "canary": 1}


class LiveMetrics(ABC):
    source = "metrics source"

    @abstractmethod
    def current(self, endpoint: str, version: str, metric: str) -> float | None:
        """The metric's current value for ``version`` on ``endpoint``; None when there is no data."""

    def p_value(self, endpoint: str, version: str, baseline: str, metric: str) -> float | None:
        """The two-sided p-value of ``version`` vs ``baseline`` on ``metric`` over the current window (None:
        no test for this metric, or no data)."""
        return None


@dataclass(frozen=True)
class VersionStats:
    """One version in one role over a window. Latency quantiles are interpolated within histogram buckets."""

    version: str | None
    role: str
    requests: float
    errors: float
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_mean_ms: float | None
    labelled: float = 0
    accuracy: float | None = None
    mae: float | None = None
    rmse: float | None = None

    @classmethod
    def of(cls, a: Aggregate) -> VersionStats:
        return cls(version=a.version, role=a.role, requests=a.count, errors=a.errors, error_rate=a.error_rate,
                   latency_p50_ms=a.quantile(0.5), latency_p95_ms=a.quantile(0.95), latency_p99_ms=a.quantile(0.99),
                   latency_mean_ms=a.latency_sum_ms / a.count if a.count and a.latency_sum_ms else None,
                   labelled=a.labelled, accuracy=a.accuracy, mae=a.mae, rmse=a.rmse)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SeriesPoint:
    """One step of one version × role: ``at`` is the step's start; rates per second over the step."""

    at: datetime
    stats: VersionStats
    step_seconds: float

    @property
    def request_rate(self) -> float:
        return self.stats.requests / self.step_seconds if self.step_seconds else 0.0

    def as_dict(self) -> dict:
        return {"at": self.at, "request_rate": self.request_rate, **self.stats.as_dict()}


@dataclass(frozen=True)
class Significance:
    """Canary vs stable on one metric: the test, its p-value, and for error rates the smallest increase the
    current sample sizes can detect (α = 0.05 two-sided, power 0.8)."""

    metric: str  # error_rate | latency
    test: str
    candidate: str | None
    baseline: str | None
    candidate_value: float | None
    baseline_value: float | None
    statistic: float | None
    p_value: float | None
    n_candidate: float
    n_baseline: float
    min_detectable_diff: float | None = None
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value <= self.alpha

    def as_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def significance(candidate: Aggregate, baseline: Aggregate) -> list[Significance]:
    """Error rate (two-proportion z-test) and latency (Mann–Whitney U on the histograms), candidate vs
    baseline."""
    z = two_proportion_ztest(candidate.errors, candidate.count, baseline.errors, baseline.count)
    mde = (min_detectable_difference(baseline.error_rate, candidate.count, baseline.count, ALPHA, POWER)
           if baseline.error_rate is not None and candidate.count > 0 else None)
    out = [Significance("error_rate", "two-proportion z-test (pooled, two-sided)", candidate.version,
                        baseline.version, candidate.error_rate, baseline.error_rate, z.statistic if z else None,
                        z.p_value if z else None, candidate.count, baseline.count, mde)]
    same = tuple(candidate.bounds_ms) == tuple(baseline.bounds_ms) and candidate.buckets and baseline.buckets
    u = mann_whitney_histograms(candidate.buckets, baseline.buckets) if same else None
    out.append(Significance("latency", "Mann–Whitney U on latency histograms (bucket ties, two-sided)",
                            candidate.version, baseline.version, candidate.quantile(0.5), baseline.quantile(0.5),
                            u.statistic if u else None, u.p_value if u else None,
                            sum(candidate.buckets), sum(baseline.buckets)))
    return out


def minutes_at_weight(changes, version: str, now: datetime) -> float | None:
    """Minutes since ``version`` got the traffic share it has now, from the serving history's changes
    (oldest first); None when the history does not know the current state or the version serves nothing."""
    def weight(e) -> int:
        if e.canary_version == version:
            return e.canary_weight
        if e.stable_version == version:
            return 100 - e.canary_weight if e.canary_version else 100
        return 0

    if not changes or weight(changes[-1]) == 0:
        return None
    w, since = weight(changes[-1]), changes[-1].at
    for e in reversed(changes[:-1]):
        if weight(e) != w:
            break
        since = e.at
    return max((now - since).total_seconds() / 60, 0.0)


class MetricsSource(LiveMetrics):
    """The monitoring picture of an endpoint; adapters provide the two primitives.

    ``current`` reads the window ``[max(now − window, when the version got its weight), now]`` so a gate sees
    the canary at its current weight only."""

    source = "metrics"

    def __init__(self, *, history=None, clock: Callable[[], datetime] = utcnow,
                 window: timedelta = timedelta(hours=1)):
        self.history = history
        self.clock = clock
        self.window = window

    @abstractmethod
    def aggregates(self, endpoint: str, start: datetime, end: datetime) -> list[Aggregate]:
        """Counts per (version, role) over ``[start, end)``."""

    def replica_series(self, endpoint: str, start: datetime, end: datetime, step: timedelta
                       ) -> list[tuple[datetime, str | None, float]]:
        """Replicas over time, (time, version or None, replicas), where the source keeps them (Prometheus);
        [] where it does not (the prediction log: the local backend keeps its own replica samples)."""
        return []

    @abstractmethod
    def aggregate_series(self, endpoint: str, start: datetime, end: datetime, step: timedelta
                         ) -> list[tuple[datetime, Aggregate]]:
        """Counts per (version, role) of each step ``[t, t + step)`` from ``start``, oldest first."""

    # -- the picture ------------------------------------------------------------------------------------
    def summary(self, endpoint: str, start: datetime, end: datetime) -> list[VersionStats]:
        aggs = sorted(self.aggregates(endpoint, start, end), key=_order)
        return [VersionStats.of(a) for a in aggs]

    def series(self, endpoint: str, start: datetime, end: datetime, step: timedelta | None = None
               ) -> list[SeriesPoint]:
        step = step or default_step(start, end)
        return [SeriesPoint(t, VersionStats.of(a), step.total_seconds())
                for t, a in self.aggregate_series(endpoint, start, end, step)]

    def significance(self, endpoint: str, start: datetime, end: datetime, candidate: str | None = None,
                     baseline: str | None = None) -> list[Significance]:
        """Canary vs stable (the roles the requests were served in) unless two versions are named."""
        return compare(self.aggregates(endpoint, start, end), candidate, baseline)

    # -- live gates -------------------------------------------------------------------------------------
    def live_window(self, endpoint: str, version: str) -> tuple[datetime, datetime, float | None]:
        now = self.clock()
        minutes = None
        if self.history is not None:
            minutes = minutes_at_weight(self.history.changes(endpoint), version, now)
        start = now - self.window
        if minutes is not None:
            start = max(start, now - timedelta(minutes=minutes))
        return start, now, minutes

    def _version(self, endpoint: str, version: str, start: datetime, end: datetime) -> Aggregate | None:
        return combine([a for a in self.aggregates(endpoint, start, end) if a.version == version], version)

    def current(self, endpoint: str, version: str, metric: str) -> float | None:
        start, end, minutes = self.live_window(endpoint, version)
        if metric == "minutes_at_weight":
            return minutes
        agg = self._version(endpoint, version, start, end)
        if agg is None:
            return 0.0 if metric in ("requests", "errors") else None
        values = {"requests": agg.count, "errors": agg.errors, "error_rate": agg.error_rate,
                  "p50_latency_ms": agg.quantile(0.5), "p95_latency_ms": agg.quantile(0.95),
                  "p99_latency_ms": agg.quantile(0.99), "accuracy": agg.accuracy, "mae": agg.mae, "rmse": agg.rmse}
        return values.get(metric)

    def p_value(self, endpoint: str, version: str, baseline: str, metric: str) -> float | None:
        start, end, _ = self.live_window(endpoint, version)
        aggs = self.aggregates(endpoint, start, end)
        tests = compare(aggs, version, baseline)
        kind = "error_rate" if metric in ("error_rate", "errors") else "latency" if "latency" in metric else None
        return next((t.p_value for t in tests if t.metric == kind), None)


def compare(aggs: list[Aggregate], candidate: str | None = None, baseline: str | None = None
            ) -> list[Significance]:
    if candidate is None and baseline is None:
        cand = combine([a for a in aggs if a.role == "canary"], _only(aggs, "canary"), "canary")
        base = combine([a for a in aggs if a.role == "stable"], _only(aggs, "stable"), "stable")
    else:
        cand = combine([a for a in aggs if a.version == candidate], candidate)
        base = combine([a for a in aggs if a.version == baseline], baseline)
    if cand is None or base is None:
        return []
    return significance(cand, base)


def _only(aggs, role: str) -> str | None:
    versions = {a.version for a in aggs if a.role == role}
    return versions.pop() if len(versions) == 1 else None


def _order(a: Aggregate):
    return (ROLE_ORDER.get(a.role, 2), str(a.version))


def default_step(start: datetime, end: datetime, points: int = 120) -> timedelta:
    """A whole number of minutes giving about ``points`` steps (at least one minute: rollups are minutes)."""
    minutes = max(1, round((end - start).total_seconds() / 60 / points))
    return timedelta(minutes=minutes)


def parse_time(text: str | None, *, now: datetime, end: bool = False, what: str = "time") -> datetime | None:
    """``now``, a relative ``-90m`` / ``-24h`` / ``-7d``, or an ISO date (a whole day: its start, or with
    ``end`` the next midnight) or datetime (UTC unless it names a zone); None for empty text."""
    from datetime import UTC, date

    from services.errors import Invalid

    if text is None or not str(text).strip():
        return None
    t = str(text).strip()
    try:
        if t == "now":
            return now
        if t[0] == "-" and t[-1] in "mhd":
            return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[t[-1]]: float(t[1:-1])})
        if len(t) == 10:
            d = datetime.combine(date.fromisoformat(t), datetime.min.time(), UTC)
            return d + timedelta(days=1) if end else d
        dt = datetime.fromisoformat(t)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(f"{what} {t!r} is not now, -30m/-24h/-7d, an ISO date or datetime", source="metrics") from None

