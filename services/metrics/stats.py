"""Pure maths of live metrics: merging per-minute rollups, quantiles from latency histograms, and the
significance tests between a canary and its stable version. No I/O.

* **Quantiles** are interpolated linearly within the histogram bucket that holds the rank ``q * total``
  (lower edge of the first bucket is 0), as Prometheus' ``histogram_quantile`` does; a rank in the
  open-ended last bucket returns that bucket's lower edge (the largest finite bound).
* **Error rate**: two-proportion z-test with the pooled proportion,
  ``z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2))``, two-sided ``p = 2 (1 - Φ(|z|))``.
* **Latency**: Mann–Whitney U computed from the two versions' histograms (not from raw rows, so a 7-day
  window never scans them): each request is ranked by its bucket, the requests of one bucket are ties
  (mid-ranks), normal approximation with tie correction and continuity correction — the same numbers as
  ``scipy.stats.mannwhitneyu(method="asymptotic")`` on the requests expanded to their buckets' midpoints.
* **Smallest detectable difference** of error rates at the current sample sizes, α (two-sided) and power:
  the ``d > 0`` that solves ``d = z_{1-α/2} sqrt(p̄ q̄ (1/n1 + 1/n2)) + z_{power} sqrt(p1 q1/n1 + p0 q0/n2)``
  with ``p1 = p0 + d`` and ``p̄`` the pooled proportion (the classic two-proportion power formula).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from scipy import optimize, stats

from services.predictions import LATENCY_BUCKETS_MS


@dataclass(frozen=True)
class Aggregate:
    """Counts of one version × role over a window (merged rollups, or Prometheus' increases).

    ``buckets`` are per-bucket (not cumulative) request counts whose upper bounds are ``bounds_ms``."""

    version: str | None
    role: str
    count: float = 0.0
    errors: float = 0.0
    latency_sum_ms: float = 0.0
    bounds_ms: tuple[float, ...] = LATENCY_BUCKETS_MS
    buckets: tuple[float, ...] = field(default_factory=tuple)
    labelled: float = 0.0
    correct: float = 0.0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.bounds_ms, self.buckets)

    @property
    def quality_kind(self) -> str | None:
        """classification (accuracy) or regression (MAE/RMSE): a model whose labelled rows have absolute
        errors but never an exact hit is a regressor; None without labels."""
        if self.labelled <= 0:
            return None
        return "regression" if self.correct == 0 and self.abs_error_sum > 0 else "classification"

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.quality_kind == "classification" else None

    @property
    def mae(self) -> float | None:
        return self.abs_error_sum / self.labelled if self.quality_kind == "regression" else None

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.sq_error_sum / self.labelled) if self.quality_kind == "regression" else None

    def __add__(self, other: Aggregate) -> Aggregate:
        if not self.buckets:
            buckets, bounds = other.buckets, other.bounds_ms
        elif not other.buckets:
            buckets, bounds = self.buckets, self.bounds_ms
        else:
            if tuple(self.bounds_ms) != tuple(other.bounds_ms):
                raise ValueError("cannot add histograms with different bucket bounds")
            buckets, bounds = tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)), self.bounds_ms
        return replace(self, count=self.count + other.count, errors=self.errors + other.errors,
                       latency_sum_ms=self.latency_sum_ms + other.latency_sum_ms, bounds_ms=tuple(bounds),
                       buckets=tuple(buckets), labelled=self.labelled + other.labelled,
                       correct=self.correct + other.correct, abs_error_sum=self.abs_error_sum + other.abs_error_sum,
                       sq_error_sum=self.sq_error_sum + other.sq_error_sum)


def from_rollup(r) -> Aggregate:
    """A :class:`~services.predictions.Rollup` (or anything with its fields) as an Aggregate."""
    return Aggregate(version=r.version, role=r.role, count=r.count, errors=r.errors, latency_sum_ms=r.latency_sum_ms,
                     bounds_ms=LATENCY_BUCKETS_MS, buckets=tuple(r.latency_buckets), labelled=r.labelled,
                     correct=r.correct, abs_error_sum=r.abs_error_sum, sq_error_sum=r.sq_error_sum)


def merge(items: Iterable) -> dict[tuple[str | None, str], Aggregate]:
    """Rollups (or Aggregates) summed per (version, role)."""
    out: dict[tuple[str | None, str], Aggregate] = {}
    for it in items:
        agg = it if isinstance(it, Aggregate) else from_rollup(it)
        key = (agg.version, agg.role)
        out[key] = out[key] + agg if key in out else agg
    return out


def combine(aggs: Iterable[Aggregate], version: str | None = None, role: str = "all") -> Aggregate | None:
    """Several aggregates (e.g. one version in both roles) as one; None when there are none."""
    total = None
    for a in aggs:
        total = a if total is None else total + a
    return replace(total, version=version, role=role) if total is not None else None


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The q-quantile (0..1) of a histogram: linear interpolation inside the bucket holding rank q·total."""
    if not 0 <= q <= 1:
        raise ValueError("q must be within [0, 1]")
    total = float(sum(counts))
    if total <= 0:
        return None
    rank = q * total
    cum = 0.0
    for i, (upper, c) in enumerate(zip(bounds, counts, strict=True)):
        if c > 0 and cum + c >= rank:
            lower = 0.0 if i == 0 else float(bounds[i - 1])
            if math.isinf(upper):
                return lower
            return lower + (float(upper) - lower) * max(rank - cum, 0.0) / c
        cum += c
    finite = [b for b in bounds if not math.isinf(b)]
    return float(finite[-1]) if finite else None


def bucket_midpoints(bounds: Sequence[float]) -> list[float]:
    """A representative value per bucket (its midpoint; the open last bucket: its lower edge × 1.5)."""
    out, lower = [], 0.0
    for b in bounds:
        out.append(lower * 1.5 if math.isinf(b) else (lower + float(b)) / 2)
        lower = float(b) if not math.isinf(b) else lower
    return out


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float


def two_proportion_ztest(x1: float, n1: float, x2: float, n2: float) -> TestResult | None:
    """Two-sided pooled z-test of ``x1/n1`` vs ``x2/n2``; None when a group is empty. ``z > 0``: the first
    proportion is higher. When neither group has an event (or both only events) z = 0, p = 1."""
    if n1 <= 0 or n2 <= 0:
        return None
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return TestResult(0.0, 1.0)
    z = (x1 / n1 - x2 / n2) / se
    return TestResult(z, float(min(1.0, 2 * stats.norm.sf(abs(z)))))


def mann_whitney_histograms(counts_a: Sequence[float], counts_b: Sequence[float]) -> TestResult | None:
    """Two-sided Mann–Whitney U of two histograms on the same buckets (requests of a bucket are ties).

    ``statistic`` is U of the first sample (``U_a``; above ``n_a n_b / 2``: the first sample is slower)."""
    na, nb = float(sum(counts_a)), float(sum(counts_b))
    if na <= 0 or nb <= 0:
        return None
    n = na + nb
    cum, rank_sum_a, ties = 0.0, 0.0, 0.0
    for a, b in zip(counts_a, counts_b, strict=True):
        t = a + b
        if t <= 0:
            continue
        rank_sum_a += a * (cum + (t + 1) / 2)
        ties += t ** 3 - t
        cum += t
    u_a = rank_sum_a - na * (na + 1) / 2
    mu = na * nb / 2
    var = na * nb / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return TestResult(u_a, 1.0)
    u = max(u_a, na * nb - u_a)
    z = (u - mu - 0.5) / math.sqrt(var)
    return TestResult(u_a, float(min(1.0, 2 * stats.norm.sf(z))))


def min_detectable_difference(p0: float, n1: float, n0: float, alpha: float = 0.05, power: float = 0.8
                              ) -> float | None:
    """Smallest increase ``d`` of an error rate over the baseline ``p0`` that a two-sided two-proportion test
    at ``alpha`` detects with ``power``, with ``n1`` canary and ``n0`` baseline requests; None when no
    increase up to a rate of 1 is detectable (or a group is empty)."""
    if n1 <= 0 or n0 <= 0 or not 0 <= p0 < 1:
        return None
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)

    def gap(d: float) -> float:
        p1 = p0 + d
        pbar = (n1 * p1 + n0 * p0) / (n1 + n0)
        need = (za * math.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n0))
                + zb * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
        return d - need

    hi = 1.0 - p0
    if gap(hi) < 0:
        return None
    return float(optimize.brentq(gap, 1e-12, hi, xtol=1e-10))
