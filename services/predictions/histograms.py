"""Histograms kept at write time on each version's fixed bins (:mod:`services.drift.bins`), pure.

- the prediction histogram: per rollup minute, :data:`PREDICTION_SLOTS` counters added with ``+`` like the
  others (slot ``i`` is bin ``i`` of the version's prediction bins; the last slot counts missing answers);
- feature histograms: per hour × endpoint × version × role × feature, one count per slot (the same slots) and
  the sum and sum of squares of the feature's values (so a window's mean and variance come from the same rows
  the drift view reads, for the sequential alarms). One row per feature, not per bin: a write upserts
  ``features`` rows per hour × version × role, whatever the bins.

A row whose version has no profile adds to no histogram (its rollup still counts it); the ``prediction``
of a failed request (status ≥ 400 or an error) is not an answer and is not binned, its features are.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.drift.bins import LABEL, MAX_BINS, MISSING, PREDICTION, Profile, number

PREDICTION_SLOTS = MAX_BINS + 2  # at most MAX_BINS bins (+1 "other" for categories) and one for missing
MISSING_SLOT = PREDICTION_SLOTS - 1

ProfileKey = tuple[str, str]  # (model, version)
Profiles = Callable[[str | None, str | None], Profile | None]
HistogramKey = tuple[datetime, str, str | None, str, str]  # (hour, endpoint, version, role, feature)


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def slot_of(bin_index: int) -> int:
    return MISSING_SLOT if bin_index == MISSING else min(bin_index, MISSING_SLOT - 1)


def bin_of(slot: int) -> int:
    return MISSING if slot == MISSING_SLOT else slot


def prediction_slot(profile: Profile | None, prediction) -> int | None:
    """The rollup slot of an answer on its version's prediction bins (None: no bins to count it on)."""
    if profile is None or profile.prediction is None:
        return None
    return slot_of(profile.prediction.index(prediction))


@dataclass
class Cell:
    """What rows add to one feature's histogram: a count per slot, and the sum and sum of squares of the
    values that are not missing."""

    counts: list[int] = field(default_factory=lambda: [0] * PREDICTION_SLOTS)
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, slot: int, x: float | None) -> None:
        self.counts[slot] += 1
        if x is not None:
            self.total += x
            self.total_sq += x * x

    def merge(self, other: Cell) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.total_sq += other.total_sq


def histogram_deltas(rows: Sequence, profiles: Profiles) -> dict[HistogramKey, Cell]:
    """The feature-histogram increments of newly stored rows, in lock order (every writer upserts in it). The
    answers of the rows that succeeded are kept the same way under the name :data:`PREDICTION` (hourly, beside
    the rollups' per-minute slots), so a long window reads features and predictions from one table."""
    groups: dict[tuple, list] = {}
    for row in rows:
        profile = profiles(row.model, row.version)
        if profile is not None:
            groups.setdefault((hour_of(row.at), row.endpoint, row.version, row.role, id(profile)), []).append(row)
    by_id = {id(p): p for p in (profiles(r.model, r.version) for r in rows) if p is not None}
    out: dict[HistogramKey, Cell] = {}
    for (hour, endpoint, version, role, pid), group in groups.items():
        profile = by_id[pid]
        feature_dicts = [r.features if isinstance(r.features, dict) else {} for r in group]
        columns = [(name, bins, [f.get(name) for f in feature_dicts]) for name, bins in profile.columns.items()]
        if profile.prediction is not None:
            answered = [r.prediction for r in group if r.ok and not r.error]
            if answered:
                columns.append((PREDICTION, profile.prediction, answered))
        for name, bins, values in columns:
            _count(out.setdefault((hour, endpoint, version, role, name), Cell()), bins, values)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "", kv[0][3], kv[0][4])))


def label_deltas(changes: Sequence[tuple], profiles: Profiles) -> dict[HistogramKey, Cell]:
    """The ground-truth histogram's increments (feature :data:`LABEL`, on the version's prediction bins) of
    labels stored or corrected: ``changes`` are ``(at, endpoint, model, version, role, old, new)``; a
    corrected label takes its old value's count (and sums) back. In lock order."""
    out: dict[HistogramKey, Cell] = {}
    for at, endpoint, model, version, role, old, new in changes:
        profile = profiles(model, version)
        if profile is None or profile.prediction is None:
            continue
        cell = out.setdefault((hour_of(at), endpoint, version, role, LABEL), Cell())
        for value, sign in ((old, -1), (new, 1)):
            if value is None:
                continue
            b = profile.prediction.index(value)
            cell.counts[slot_of(b)] += sign
            x = number(value) if profile.prediction.kind == "numeric" and b != MISSING else None
            if x is not None:
                cell.total += sign * x
                cell.total_sq += sign * x * x
    return dict(sorted(out.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "", kv[0][3], kv[0][4])))


def _count(cell: Cell, bins, values: list) -> None:
    counts = cell.counts
    if bins.kind != "numeric":
        for v in values:
            counts[slot_of(bins.index(v))] += 1
        return
    edges, total, total_sq = bins.edges, 0.0, 0.0
    for v in values:
        x = number(v)
        if x is None:
            counts[MISSING_SLOT] += 1
        else:
            counts[bisect_left(edges, x)] += 1
            total += x
            total_sq += x * x
    cell.total += total
    cell.total_sq += total_sq


@dataclass(frozen=True)
class HistogramCell:
    """One feature's histogram (or the prediction's: ``feature == PREDICTION``) over one period."""

    period: datetime  # start of the hour or day
    version: str | None
    role: str
    feature: str
    counts: tuple[int, ...]  # per slot: slot i is bin i; the last slot (MISSING_SLOT) counts missing values
    total: float = 0.0  # sum and sum of squares of the values that are not missing (numeric features)
    total_sq: float = 0.0

    @property
    def missing(self) -> int:
        return self.counts[MISSING_SLOT]

    @property
    def present(self) -> int:
        return sum(self.counts) - self.counts[MISSING_SLOT]

    def bins(self, size: int) -> list[int]:
        """The counts of bins ``0 … size-1`` (missing values excluded)."""
        return list(self.counts[:size])

    @property
    def mean(self) -> float | None:
        return self.total / self.present if self.present else None


def prediction_cells(rollups, granularity: str = "hour") -> list[HistogramCell]:
    """The prediction histogram of per-minute rollups, summed per hour or day."""
    acc: dict[tuple, list[int]] = {}
    for r in rollups:
        if not any(r.prediction_bins):
            continue
        key = (period_of(r.minute, granularity), r.version, r.role)
        have = acc.setdefault(key, [0] * PREDICTION_SLOTS)
        for slot, n in enumerate(r.prediction_bins):
            have[slot] += n
    return [HistogramCell(p, v, role, PREDICTION, tuple(c)) for (p, v, role), c in sorted(
        acc.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2]))]


def period_of(at: datetime, granularity: str) -> datetime:
    if granularity == "day":
        return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "hour":
        return hour_of(at)
    from services.errors import Invalid

    raise Invalid(f"granularity must be hour or day, not {granularity!r}", source="prediction log")
