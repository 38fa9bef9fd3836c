"""The prediction-log port: every prediction an endpoint served, as KServe's inference logger reports it
(request and response CloudEvents, paired by id), one row per instance of a batch, attributed to the
version that answered; ground-truth labels join later; per-minute rollups kept at write time so that a
7-day window never scans raw rows.

Monitoring, drift, explanations and the incident timeline read this port. The SQL adapter is
:mod:`services.predictions.sql`; the in-memory fake is in ``tests/fakes.py``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from services.drift.bins import Profile
from services.predictions.histograms import PREDICTION_SLOTS, HistogramCell, Profiles, prediction_slot

ROLES = ("stable", "canary", "unknown")
# Upper bounds (ms) of the latency histogram kept in every rollup; the last bucket is everything above.
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, math.inf)


@dataclass(frozen=True)
class PredictionRow:
    """One instance of one request: what came in, what went out, who answered."""

    request_id: str
    row: int  # index of the instance in its (batched) request
    endpoint: str  # the console's endpoint name (NS/NAME on KServe, NAME on the local backend)
    at: datetime  # when the request arrived (UTC)
    version: str | None  # the model version that answered (None: unknown)
    role: str = "unknown"  # stable | canary | unknown
    model: str | None = None
    features: dict[str, Any] = field(default_factory=dict)
    prediction: Any = None
    latency_ms: float | None = None
    status: int = 200  # HTTP status of the response
    error: str = ""
    label: Any = None
    labelled_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WriteResult:
    stored: int
    duplicates: int  # rows already stored (at-least-once delivery: a repeated event is stored once)
    # the (request_id, row) keys this write really inserted (None: the adapter does not say); lets a caller that
    # wrote several requests in one transaction tell each its own stored / duplicates
    inserted: frozenset[tuple[str, int]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LabelResult:
    stored: int
    unknown: list[str]  # request ids with no logged prediction: reported, not stored


@dataclass(frozen=True)
class Rollup:
    """One minute of one endpoint × version × role."""

    minute: datetime
    endpoint: str
    version: str | None
    role: str
    count: int
    errors: int
    latency_sum_ms: float
    latency_buckets: tuple[int, ...]  # counts per LATENCY_BUCKETS_MS bucket
    labelled: int = 0
    correct: int = 0  # classification: labelled rows whose prediction equals the label
    abs_error_sum: float = 0.0  # regression: |prediction - label| summed over labelled rows
    sq_error_sum: float = 0.0
    # the prediction histogram on the version's fixed bins (services.predictions.histograms): one count per slot
    prediction_bins: tuple[int, ...] = ()


@dataclass(frozen=True)
class Traffic:
    """A window's totals of one version in one role: requests, errors and what labels say."""

    version: str | None
    role: str
    requests: int
    errors: int = 0
    labelled: int = 0
    correct: int = 0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0


class PredictionLog(ABC):
    source = "prediction log"

    @abstractmethod
    def write(self, rows: Sequence[PredictionRow]) -> WriteResult:
        """Store rows and update their rollups in one transaction; a row whose (request_id, row) is already
        stored is counted as a duplicate and changes nothing."""

    @abstractmethod
    def add_labels(self, labels: Sequence[tuple[str, int | None, Any]]) -> LabelResult:
        """Ground truth ``(request_id, row or None for every row of the request, label)``, whenever it comes;
        rollups of the labelled rows' minutes are updated."""

    @abstractmethod
    def rows(self, endpoint: str, *, start: datetime | None = None, end: datetime | None = None,
             request_id: str | None = None, limit: int = 1000) -> list[PredictionRow]:
        """Logged rows, newest first."""

    @abstractmethod
    def rollups(self, endpoint: str, start: datetime, end: datetime) -> list[Rollup]:
        """Per-minute rollups with ``start <= minute < end``, oldest first."""

    @abstractmethod
    def served(self, endpoint: str, start: datetime, end: datetime) -> list[Traffic]:
        """Per version and role, the rollups with ``start <= minute < end`` summed in the store."""

    @abstractmethod
    def purge(self, before: datetime) -> int:
        """Drop raw rows older than ``before`` (retention); rollups and histograms stay. Returns rows dropped."""

    # -- reference profiles and the histograms kept on them ------------------------------------------------
    @abstractmethod
    def save_profile(self, profile: Profile) -> Profile:
        """Store a version's reference profile. Derived once: if one is stored already, it stays and is
        returned (so every writer bins a version on the same edges)."""

    @abstractmethod
    def profile(self, model: str, version: str) -> Profile | None:
        """The stored reference profile of a version, or None."""

    @abstractmethod
    def histograms(self, endpoint: str, start: datetime, end: datetime, *, version: str | None = None,
                   granularity: str = "hour") -> list[HistogramCell]:
        """Feature histograms of ``start <= hour < end`` summed per hour or day (periods whose hour lies in
        the window), oldest first; the prediction's come from the rollups (:func:`prediction_cells`)."""


# -- shared rules of every adapter (pure): which minute, which bucket, what a label adds -------------------
def minute_of(at: datetime) -> datetime:
    """The rollup minute of a time (UTC, seconds and microseconds dropped)."""
    from datetime import UTC

    return at.astimezone(UTC).replace(second=0, microsecond=0)


def bucket_index(latency_ms: float) -> int:
    """Index in :data:`LATENCY_BUCKETS_MS` of the first bucket whose upper bound is >= ``latency_ms``."""
    for i, bound in enumerate(LATENCY_BUCKETS_MS):
        if latency_ms <= bound:
            return i
    return len(LATENCY_BUCKETS_MS) - 1


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def label_contribution(prediction: Any, label: Any) -> tuple[int, int, float, float]:
    """What one labelled row adds to its rollup: ``(labelled, correct, abs_error, sq_error)``.

    ``correct`` counts ``prediction == label`` (classification: accuracy is correct / labelled); when both are
    numbers the absolute and squared errors are added too (regression: MAE and RMSE from the sums). Readers
    pick by model kind; a classifier's 0/1 errors are harmless, a regressor's exact hits rare."""
    p, y = _number(prediction), _number(label)
    correct = int(prediction == label if p is None or y is None else p == y)
    if p is None or y is None:
        return 1, correct, 0.0, 0.0
    return 1, correct, abs(p - y), (p - y) ** 2


@dataclass
class RollupDelta:
    """What a batch adds to one rollup (adapters add it with ``+``; never read-modify-write)."""

    count: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))
    labelled: int = 0
    correct: int = 0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0
    prediction_bins: list[int] = field(default_factory=lambda: [0] * PREDICTION_SLOTS)

    def add_row(self, row: PredictionRow, profile: Profile | None = None) -> None:
        self.count += 1
        failed = not row.ok or bool(row.error)
        self.errors += 1 if failed else 0
        if row.latency_ms is not None:
            self.latency_sum_ms += float(row.latency_ms)
            self.latency_buckets[bucket_index(float(row.latency_ms))] += 1
        slot = None if failed else prediction_slot(profile, row.prediction)
        if slot is not None:
            self.prediction_bins[slot] += 1

    def add_label(self, contribution: tuple[int, int, float, float], sign: int = 1) -> None:
        labelled, correct, abs_err, sq_err = contribution
        self.labelled += sign * labelled
        self.correct += sign * correct
        self.abs_error_sum += sign * abs_err
        self.sq_error_sum += sign * sq_err


RollupKey = tuple[datetime, str, str | None, str]  # (minute, endpoint, version, role)


def rollup_key(row: PredictionRow) -> RollupKey:
    return minute_of(row.at), row.endpoint, row.version, row.role


def in_lock_order(deltas: dict[RollupKey, RollupDelta]) -> dict[RollupKey, RollupDelta]:
    """Sorted by (endpoint, minute, version, role): every writer touches rollups in this one order."""
    return dict(sorted(deltas.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "", kv[0][3])))


def no_profiles(model: str | None, version: str | None) -> Profile | None:
    return None


def rollup_deltas(rows: Sequence[PredictionRow], profiles: Profiles = no_profiles) -> dict[RollupKey, RollupDelta]:
    """The rollup increments of newly stored rows, by rollup, in lock order."""
    out: dict[RollupKey, RollupDelta] = {}
    for row in rows:
        out.setdefault(rollup_key(row), RollupDelta()).add_row(row, profiles(row.model, row.version))
    return in_lock_order(out)
