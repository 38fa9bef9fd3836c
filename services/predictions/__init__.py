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
    def purge(self, before: datetime) -> int:
        """Drop raw rows older than ``before`` (retention); rollups stay. Returns rows dropped."""
