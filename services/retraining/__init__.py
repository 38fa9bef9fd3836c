"""The retraining port: from evidence (drift, live quality, a person's judgement) to a new candidate version.

A :class:`RetrainRequest` says which endpoint's model to retrain, from which parent version, why (``reason``,
``evidence``), on which window of the labelled prediction log, and who or which rule triggered it. A
:class:`Retrainer` starts it and reports a :class:`RetrainRun` (its id, state and, when done, the new version).

Adapters (chosen by ``MLOPS_RETRAINER`` in :mod:`services.composition`):

* ``local`` (:mod:`services.retraining.local`): trains here, on the parent's original training data plus the
  window's labelled rows, logs the run with its lineage, registers the version as ``challenger``;
* ``webhook`` (:mod:`services.retraining.http`): an HMAC-SHA256-signed JSON POST of :func:`payload`;
* ``airflow`` (:mod:`services.retraining.http`): a DAG run of Airflow's stable REST API with that payload as
  ``conf``, followed by its state.

The payload and its signature are pure and live here; the fake is ``FakeRetrainer`` in ``tests/fakes.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

SOURCE = "retraining"
STATES = ("queued", "running", "succeeded", "failed")
OPEN_STATES = ("queued", "running")
SIGNATURE_HEADER = "X-MLOps-Signature"
TIMESTAMP_HEADER = "X-MLOps-Timestamp"
# version tags and run tags of a retrained version (the registry page reads them for its lineage)
CANDIDATE_TAG = "mlops.candidate"
CANDIDATE_VALUE = "retraining"
PARENT_TAG = "mlops.parent_version"
WINDOW_FROM_TAG = "mlops.retrain.window_from"
WINDOW_TO_TAG = "mlops.retrain.window_to"
TRIGGER_TAG = "mlops.retrain.trigger"
REASON_TAG = "mlops.retrain.reason"
ENDPOINT_TAG = "mlops.retrain.endpoint"


@dataclass(frozen=True)
class RetrainRequest:
    endpoint: str
    model: str
    version: str  # the parent: what serves (stable) when the retraining is asked for
    reason: str
    trigger: str  # who (a person's subject) or which rule ("rule:drift-share")
    evidence: dict[str, Any] = field(default_factory=dict)
    window_start: datetime | None = None  # the labelled prediction-log window added to the training data
    window_end: datetime | None = None


@dataclass(frozen=True)
class RetrainRun:
    run_id: str
    state: str  # queued | running | succeeded | failed
    request: RetrainRequest | None = None
    new_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. holdout_accuracy, champion_holdout_accuracy
    detail: str = ""
    backend: str = ""  # local | webhook | airflow
    url: str | None = None  # where to follow it (MLflow run, Airflow DAG run)

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def as_dict(self) -> dict:
        d = asdict(self)
        d["request"] = None if self.request is None else payload(self.request)
        return d


class Retrainer(ABC):
    source = SOURCE
    backend = ""

    @abstractmethod
    def trigger(self, request: RetrainRequest) -> RetrainRun:
        """Start (or, for ``local``, run) a retraining; the run says its state."""

    @abstractmethod
    def status(self, run_id: str) -> RetrainRun:
        """The current state of a run this retrainer started (NotFound for an unknown id)."""

    def preview(self, request: RetrainRequest) -> dict:
        """What :meth:`trigger` would do with ``request``, for a dry run (nothing is sent)."""
        return {"backend": self.backend, "request": payload(request)}


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def payload(request: RetrainRequest) -> dict:
    """What a pipeline receives (the webhook's body, Airflow's ``conf``): plain JSON types only."""
    return {
        "endpoint": request.endpoint,
        "model": request.model,
        "version": request.version,
        "reason": request.reason,
        "trigger": request.trigger,
        "evidence": json.loads(json.dumps(request.evidence, default=str)),
        "window": {"start": _iso(request.window_start), "end": _iso(request.window_end)},
    }


def body_bytes(data: dict) -> bytes:
    """The exact bytes sent (and signed): compact, keys sorted, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``): the timestamp is signed with the
    body, so a receiver that refuses old timestamps refuses a replayed request."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, *, now: float,
                     tolerance_s: float = 300.0) -> bool:
    """What a receiver checks: the signature over (timestamp, body), and a timestamp within the tolerance."""
    try:
        fresh = abs(now - float(timestamp)) <= tolerance_s
    except (TypeError, ValueError):
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header or "")


def lineage(tags: dict, metrics: dict) -> dict | None:
    """What the registry page shows of a retrained version (None for any other): parent, window, trigger, reason
    (from the version's and its run's tags) and the holdout comparison (candidate vs champion, per metric)."""
    if tags.get(CANDIDATE_TAG) != CANDIDATE_VALUE or not tags.get(PARENT_TAG):
        return None
    comparison = [{"metric": key[len("holdout_"):], "candidate": value,
                   "champion": metrics.get("champion_" + key)}
                  for key, value in sorted(metrics.items()) if key.startswith("holdout_")]
    return {"parent_version": tags[PARENT_TAG], "window_from": tags.get(WINDOW_FROM_TAG) or None,
            "window_to": tags.get(WINDOW_TO_TAG) or None, "trigger": tags.get(TRIGGER_TAG) or None,
            "reason": tags.get(REASON_TAG) or None, "endpoint": tags.get(ENDPOINT_TAG) or None,
            "champion_version": tags.get("champion_version") or None, "comparison": comparison}
