"""Drift of logged traffic: one version's requests in a window against its reference profile, from the
histograms kept at ingest (never the raw rows, so a 30-day view costs the same whatever the traffic).

``endpoint_drift(log, policy, endpoint, start, end, version=…)`` returns plain data: per feature the policy's
method on the fixed bins (PSI by default; JS or Hellinger per feature), sorted by severity; the prediction's
drift; the dataset verdict (share of drifted features); a feature × period heatmap of the statistic; per
feature the reference and current shares per bin (for the overlay chart); hourly means with Page–Hinkley
alarms, and the hourly request count with CUSUM alarms on the rate. ``python -m services drift --endpoint``
prints the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from services.drift.bins import LABEL, PREDICTION, Bins, Profile
from services.drift.sequential import cusum, page_hinkley
from services.drift.stats import NUMERIC, ColumnDrift, DatasetDrift, binned_drift, dataset_verdict
from services.errors import Invalid, NotFound
from services.policy import DriftPolicy
from services.predictions.histograms import HistogramCell, hour_of, period_of

SOURCE = "drift"
STEPS_H = (1, 2, 3, 6, 12, 24)  # the heatmap's period: the shortest whose typical period has MIN_ROWS requests
MIN_ROWS = 300  # a distance on fewer rows mostly measures sampling noise (PSI grows as bins empty out)
MAX_COLUMNS = 180
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Distribution:
    labels: list[str]
    reference: list[float]  # shares per bin (missing values excluded)
    current: list[float]
    missing_reference: int
    missing_current: int


@dataclass
class DriftView:
    endpoint: str
    model: str
    version: str
    start: datetime
    end: datetime
    profile_source: str
    reference_rows: int
    current_rows: int
    granularity: str  # the heatmap's period: "1 h", "6 h", "24 h", …
    features: list[ColumnDrift]
    prediction: ColumnDrift | None
    verdict: DatasetDrift
    label: ColumnDrift | None = None  # ground truth (where labels arrived) against the reference's target
    performance: dict | None = None  # live quality from the labels vs the version's offline metrics
    periods: list[datetime] = field(default_factory=list)
    heatmap: dict[str, list[float | None]] = field(default_factory=dict)  # feature -> statistic per period
    distributions: dict[str, Distribution] = field(default_factory=dict)
    means: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)  # numeric features, hourly
    traffic: list[tuple[datetime, int]] = field(default_factory=list)  # requests per hour
    alarms: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"endpoint": self.endpoint, "model": self.model, "version": self.version, "from": self.start,
                "to": self.end, "profile_source": self.profile_source, "reference_rows": self.reference_rows,
                "current_rows": self.current_rows, "granularity": self.granularity,
                "verdict": self.verdict.as_dict(), "prediction": self.prediction and self.prediction.as_dict(),
                "label": self.label and self.label.as_dict(), "performance": self.performance,
                "alarms": self.alarms}


def severity(c: ColumnDrift) -> tuple:
    """Sort key: drifted first, then by how far past (or short of) its threshold, not computable last."""
    if not c.computable or c.statistic is None:
        return (2, 0.0, c.column)
    ratio = c.statistic / c.threshold if c.threshold else c.statistic
    return (0 if c.drifted else 1, -ratio, c.column)


def served_versions(log, endpoint: str, start: datetime, end: datetime) -> list[tuple[str, str | None, int]]:
    """``(version, role, requests)`` in the window (whole hours, as the view reads), most requests first."""
    return sorted(((t.version, t.role, t.requests) for t in log.served(endpoint, hour_of(start), end) if t.version),
                  key=lambda t: (-t[2], t[0]))


def _sum(cells: list[HistogramCell], size: int) -> tuple[list[int], int]:
    counts, missing = [0] * size, 0
    for c in cells:
        for i, n in enumerate(c.bins(size)):
            counts[i] += n
        missing += c.missing
    return counts, missing


def _compare(name: str, bins: Bins, cells: list[HistogramCell], method: str, threshold: float | None
             ) -> ColumnDrift:
    counts, missing = _sum(cells, bins.size)
    kind = NUMERIC if bins.kind == "numeric" else CATEGORICAL
    return binned_drift(name, list(bins.reference), counts, method=method, threshold=threshold, kind=kind,
                        missing_reference=bins.reference_missing, missing_current=missing)


def _merge_roles(cells: list[HistogramCell]) -> list[HistogramCell]:
    """One cell per (period, feature): a version that served as canary then stable in the window is one version."""
    out: dict[tuple, HistogramCell] = {}
    for c in cells:
        key = (c.period, c.feature)
        have = out.get(key)
        out[key] = c if have is None else HistogramCell(
            c.period, c.version, "any", c.feature, tuple(a + b for a, b in zip(have.counts, c.counts, strict=True)),
            have.total + c.total, have.total_sq + c.total_sq)
    return list(out.values())


def _shares(counts: list[int] | tuple[int, ...]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def endpoint_drift(log, policy: DriftPolicy, endpoint: str, start: datetime, end: datetime, *,
                   version: str | None = None, model: str | None = None,
                   offline: dict[str, float] | None = None) -> DriftView:
    """The drift of ``version`` (default: the one that answered most requests in the window) on ``endpoint``."""
    if start >= end:
        raise Invalid("the window starts after it ends", source=SOURCE)
    if version is None:
        versions = served_versions(log, endpoint, start, end)
        if not versions:
            raise NotFound(f"{endpoint!r} logged no request of a known version between {start:%Y-%m-%d %H:%M} "
                           f"and {end:%Y-%m-%d %H:%M} UTC", source=SOURCE)
        version = versions[0][0]
    version = str(version)
    if model is None:
        model = next((r.model for r in log.rows(endpoint, start=start, end=end, limit=50)
                      if r.version == version and r.model), None)
    profile: Profile | None = log.profile(model, version) if model else None
    if profile is None:
        raise NotFound(f"v{version} on {endpoint!r} has no reference profile (derive one with `python -m services "
                       f"profile --model M --version {version}`)", source=SOURCE)
    # whole hours: the histograms are hourly; the window is widened to the hours it touches
    cells = _merge_roles(log.histograms(endpoint, hour_of(start), end, version=version))
    by_feature: dict[str, list[HistogramCell]] = {}
    for c in cells:
        by_feature.setdefault(c.feature, []).append(c)
    features = []
    for name, bins in profile.columns.items():
        method, threshold = policy.for_feature(name)
        features.append(_compare(name, bins, by_feature.get(name, []), method, threshold))
    features.sort(key=severity)
    prediction = None
    if profile.prediction is not None:
        method, threshold = policy.for_feature(PREDICTION)
        prediction = _compare("prediction", profile.prediction, by_feature.get(PREDICTION, []), method, threshold)
    label = None
    if profile.prediction is not None and by_feature.get(LABEL):
        method, threshold = policy.for_feature(PREDICTION)
        label = _compare("label", profile.target or profile.prediction, by_feature[LABEL], method, threshold)
    first = next(iter(profile.columns))
    step = heatmap_step([sum(c.counts) for c in by_feature.get(first, [])], end - start)
    periods = sorted({_floor(c.period, step) for c in cells})
    view = DriftView(endpoint=endpoint, model=model, version=version, start=start, end=end,
                     profile_source=profile.source, reference_rows=profile.rows,
                     current_rows=sum(sum(c.counts) for c in by_feature.get(first, [])),
                     granularity=f"{step} h", features=features, prediction=prediction,
                     verdict=dataset_verdict(features, policy.share), periods=periods, label=label,
                     performance=performance(log, endpoint, version, start, end, offline))
    _timeline(view, profile, by_feature, policy, step)
    return view


def performance(log, endpoint: str, version: str, start: datetime, end: datetime,
                offline: dict[str, float] | None) -> dict | None:
    """Live quality of the window's labelled requests (accuracy with its 95 % Wilson interval; MAE and RMSE)
    beside the version's offline metrics; ``degraded`` when the offline accuracy lies above the live interval
    (the live accuracy is significantly lower). None without labels."""
    from scipy.stats import binomtest

    rows = [t for t in log.served(endpoint, hour_of(start), end) if t.version == version]
    n = sum(t.labelled for t in rows)
    if not n:
        return None
    correct = sum(t.correct for t in rows)
    low, high = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    offline = offline or {}
    acc = offline.get("accuracy")
    return {"labelled": n, "accuracy": correct / n, "accuracy_low": float(low), "accuracy_high": float(high),
            "mae": sum(t.abs_error_sum for t in rows) / n, "rmse": (sum(t.sq_error_sum for t in rows) / n) ** 0.5,
            "offline_accuracy": acc, "offline_mae": offline.get("mae"), "offline_rmse": offline.get("rmse"),
            "degraded": None if acc is None else bool(acc > high)}


def per_period(method: str, reference, matrix) -> list[float | None]:
    """The statistic of each row of a periods × bins count matrix against the reference counts, in one numpy
    pass (the same values as :func:`services.drift.stats.binned_drift` per period); None for a period with
    fewer than MIN_ROWS counts, whose distance would mostly measure sampling noise."""
    from scipy.spatial import distance

    from services.drift.stats import PSI_EPSILON

    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(matrix, dtype="float64").reshape(-1, ref.size)
    n = cur.sum(axis=1)
    if not len(cur) or ref.sum() <= 0:
        return [None] * len(cur)
    r = np.broadcast_to(ref / ref.sum(), cur.shape)
    c = cur / np.where(n > 0, n, 1.0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "psi":
            rr, cc = np.where(r == 0, PSI_EPSILON, r), np.where(c == 0, PSI_EPSILON, c)
            values = np.sum((cc - rr) * np.log(cc / rr), axis=1)
        elif method == "jensenshannon":
            values = np.nan_to_num(distance.jensenshannon(r, c, axis=1), nan=0.0)
        elif method == "hellinger":
            values = np.sqrt(1.0 - np.clip(np.sum(np.sqrt(r * c), axis=1), 0.0, 1.0))
        else:
            raise Invalid(f"unknown method on bins {method!r}", source=SOURCE)
    return [float(v) if k >= MIN_ROWS else None for v, k in zip(values, n, strict=True)]


def heatmap_step(hourly_counts: list[int], span: timedelta) -> int:
    """Hours per heatmap period: the shortest step whose median period holds MIN_ROWS requests, at most a day
    and at most a quarter of the window (so a short window still has a few columns)."""
    import statistics

    hours = span.total_seconds() / 3600
    floor = next((s for s in STEPS_H if hours / s <= MAX_COLUMNS), 24)  # a chart shows ~180 columns at most
    if not hourly_counts:
        return floor
    typical = statistics.median(hourly_counts)
    cap = max(1, min(24, int(hours // 4)))
    for step in STEPS_H:
        if step >= floor and (typical * step >= MIN_ROWS or step >= cap):
            return step
    return 24


def _floor(t: datetime, step_h: int) -> datetime:
    day = period_of(t, "day")
    return day + timedelta(hours=(t - day).seconds // 3600 // step_h * step_h)


def _timeline(view: DriftView, profile: Profile, by_feature: dict, policy: DriftPolicy, step: int) -> None:
    index = {p: i for i, p in enumerate(view.periods)}
    answers = [(PREDICTION, profile.prediction)] if profile.prediction else []
    if profile.prediction and by_feature.get(LABEL):
        answers.append((LABEL, profile.target or profile.prediction))
    for name, bins in [*profile.columns.items(), *answers]:
        method, threshold = policy.for_feature(PREDICTION if name == LABEL else name)
        matrix = np.zeros((len(view.periods), bins.size))
        for c in by_feature.get(name, []):
            matrix[index[_floor(c.period, step)]] += c.counts[:bins.size]
        label = {PREDICTION: "prediction", LABEL: "label"}.get(name, name)
        view.heatmap[label] = per_period(method, bins.reference, matrix)
        counts, missing = _sum(by_feature.get(name, []), bins.size)
        view.distributions[label] = Distribution(bins.labels(), _shares(bins.reference), _shares(counts),
                                                 bins.reference_missing, missing)
        if bins.kind == "numeric":
            points = sorted((c.period, c.mean) for c in by_feature.get(name, []) if c.mean is not None)
            view.means[label] = points
            for a in page_hinkley(points):
                view.alarms.append({"kind": "mean", "feature": label, "detector": "Page–Hinkley",
                                    "at": a.time, "since": a.since, "direction": a.direction,
                                    "statistic": a.statistic})
    first = next(iter(profile.columns))
    view.traffic = sorted((c.period, sum(c.counts)) for c in by_feature.get(first, []))
    for a in cusum(view.traffic):
        view.alarms.append({"kind": "rate", "feature": "requests per hour", "detector": "CUSUM", "at": a.time,
                            "since": a.since, "direction": a.direction, "statistic": a.statistic})
    view.alarms.sort(key=lambda a: a["at"])
