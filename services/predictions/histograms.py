"""Histograms kept at write time on each version's fixed bins (:mod:`services.drift.bins`), pure.

- the prediction histogram: per rollup minute, :data:`PREDICTION_SLOTS` counters added with ``+`` like the
  others (slot ``i`` is bin ``i`` of the version's prediction bins; the last slot counts missing answers);
- feature histograms: per hour × endpoint × version × role × feature × bin, a count and the sum and sum of
  squares of the values in the bin (so a window's feature mean and variance come from the same rows the drift
  view reads, for the sequential alarms). Bin :data:`~services.drift.bins.MISSING` counts missing values.

A row whose version has no profile adds to no histogram (its rollup still counts it); the ``prediction``
of a failed request (status ≥ 400 or an error) is not an answer and is not binned, its features are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from services.drift.bins import MAX_BINS, MISSING, PREDICTION, Profile, number

PREDICTION_SLOTS = MAX_BINS + 2  # at most MAX_BINS bins (+1 "other" for categories) and one for missing
MISSING_SLOT = PREDICTION_SLOTS - 1

ProfileKey = tuple[str, str]  # (model, version)
Profiles = Callable[[str | None, str | None], Profile | None]
HistogramKey = tuple[datetime, str, str | None, str, str, int]  # (hour, endpoint, version, role, feature, bin)


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def prediction_slot(profile: Profile | None, prediction) -> int | None:
    """The rollup slot of an answer on its version's prediction bins (None: no bins to count it on)."""
    if profile is None or profile.prediction is None:
        return None
    i = profile.prediction.index(prediction)
    return MISSING_SLOT if i == MISSING else min(i, MISSING_SLOT - 1)


@dataclass
class Cell:
    """What rows add to one histogram bin: how many, and the sum and sum of squares of their values."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, x: float | None) -> None:
        self.count += 1
        if x is not None:
            self.total += x
            self.total_sq += x * x


def histogram_deltas(rows: Sequence, profiles: Profiles) -> dict[HistogramKey, Cell]:
    """The feature-histogram increments of newly stored rows, in lock order (every writer upserts in it)."""
    out: dict[HistogramKey, Cell] = {}
    for row in rows:
        profile = profiles(row.model, row.version)
        if profile is None:
            continue
        hour = hour_of(row.at)
        features = row.features if isinstance(row.features, dict) else {}
        for name, bins in profile.columns.items():
            value = features.get(name)
            b = bins.index(value)
            x = number(value) if bins.kind == "numeric" and b != MISSING else None
            out.setdefault((hour, row.endpoint, row.version, row.role, name, b), Cell()).add(x)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "", kv[0][3], kv[0][4],
                                                    kv[0][5])))


@dataclass(frozen=True)
class HistogramCell:
    """One bin of one feature (or of the prediction: ``feature == PREDICTION``) over one period."""

    period: datetime  # start of the hour or day
    version: str | None
    role: str
    feature: str
    bin: int  # MISSING for missing values
    count: int
    total: float = 0.0
    total_sq: float = 0.0


def prediction_cells(rollups, granularity: str = "hour") -> list[HistogramCell]:
    """The prediction histogram of per-minute rollups, summed per hour or day (slot → bin; missing → MISSING)."""
    acc: dict[tuple, int] = {}
    for r in rollups:
        period = period_of(r.minute, granularity)
        for slot, n in enumerate(r.prediction_bins):
            if n:
                b = MISSING if slot == MISSING_SLOT else slot
                key = (period, r.version, r.role, b)
                acc[key] = acc.get(key, 0) + n
    return [HistogramCell(p, v, role, PREDICTION, b, n) for (p, v, role, b), n in sorted(
        acc.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2], kv[0][3]))]


def period_of(at: datetime, granularity: str) -> datetime:
    if granularity == "day":
        return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "hour":
        return hour_of(at)
    from services.errors import Invalid

    raise Invalid(f"granularity must be hour or day, not {granularity!r}", source="prediction log")
