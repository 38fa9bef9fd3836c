"""Serving-backend port: what serves on each endpoint, and changing it safely.

An *endpoint* serves one registered model: a stable version and optionally a
canary version that receives ``canary_weight`` percent of the traffic.

Every change goes through :meth:`ServingBackend.apply` with the
``resource_version`` the caller read: a backend must refuse with
:class:`~services.errors.Conflict` when the endpoint changed since, and must
never retry a write blindly.

Adapters: :mod:`services.serving.local` (state in the console database) and
:mod:`services.serving.kserve` (KServe ``InferenceService``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from services.refs import VersionRef  # re-exported: the shared value type lives in services.refs

Operation = Literal["start_canary", "set_weight", "promote", "abort", "set_stable", "set_scaling"]
OPERATIONS: tuple[str, ...] = ("start_canary", "set_weight", "promote", "abort", "set_stable", "set_scaling")
SCALE_METRICS = ("cpu", "memory", "concurrency", "rps")  # KServe's spec.predictor.scaleMetric enum


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    last_transition: datetime | None = None


@dataclass(frozen=True)
class Revision:
    """One entry of what an endpoint has served."""

    name: str  # revision id (local: "r7"; KServe: revision name)
    stable_version: str | None
    canary_version: str | None
    canary_weight: int
    at: datetime | None = None
    actor: str | None = None  # who made (or requested) the change
    note: str = ""
    approved_by: str | None = None  # the second person, when the change was approved


@dataclass(frozen=True)
class Scaling:
    """An endpoint's scaling bounds and target as configured (KServe: ``spec.predictor.minReplicas``,
    ``maxReplicas``, ``scaleMetric``, ``scaleTarget``); None where not set (the serving system's default)."""

    min_replicas: int | None = None
    max_replicas: int | None = None
    metric: str | None = None  # cpu | memory | concurrency | rps
    target: int | None = None

    def as_dict(self) -> dict:
        return {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas, "metric": self.metric,
                "target": self.target}

    def merged(self, new: Scaling) -> Scaling:
        """These values with ``new``'s set ones in their place."""
        return Scaling(*(n if n is not None else o for o, n in zip(
            (self.min_replicas, self.max_replicas, self.metric, self.target),
            (new.min_replicas, new.max_replicas, new.metric, new.target), strict=True)))


@dataclass(frozen=True)
class ScalingStatus:
    """What the autoscaler says now (read on demand, never part of the endpoint's state): the replicas it runs
    and wants, its conditions, per-revision replicas where the backend reports them, and ``note`` when
    something is unknown (and why)."""

    source: str = ""  # e.g. "HorizontalPodAutoscaler ml/iris-predictor"; empty: no autoscaler read
    current_replicas: int | None = None
    desired_replicas: int | None = None
    conditions: tuple[Condition, ...] = ()
    revisions: tuple[tuple[str, int | None, int | None], ...] = ()  # (revision, traffic %, actual replicas)
    note: str = ""


@dataclass(frozen=True)
class Endpoint:
    name: str
    model: str | None  # registered model name, None when unknown
    stable_version: str | None
    canary_version: str | None = None
    canary_weight: int = 0  # percent of traffic to the canary, 0..100
    ready: bool = False
    conditions: tuple[Condition, ...] = ()
    url: str | None = None
    replicas: int | None = None
    revisions: tuple[Revision, ...] = ()
    resource_version: str = ""  # opaque token for compare-and-set
    backend: str = ""
    read_only: bool = False
    read_only_reason: str = ""
    namespace: str | None = None
    extra: dict = field(default_factory=dict)  # backend specifics worth showing (mode, storageUri, ...)
    scaling: Scaling | None = None  # None: the backend does not report (or manage) scaling

    @property
    def stable_weight(self) -> int:
        return 100 - self.canary_weight if self.canary_version else 100

    def traffic(self) -> dict[str, int]:
        """version -> percent."""
        out: dict[str, int] = {}
        if self.stable_version:
            out[self.stable_version] = self.stable_weight
        if self.canary_version:
            out[self.canary_version] = out.get(self.canary_version, 0) + self.canary_weight
        return out

    def state(self) -> ServingState:
        return ServingState(self.stable_version, self.canary_version, self.canary_weight)


@dataclass(frozen=True)
class ServingState:
    """The part of an endpoint the console changes."""

    stable_version: str | None
    canary_version: str | None
    canary_weight: int

    def as_dict(self) -> dict:
        return {"stable_version": self.stable_version, "canary_version": self.canary_version,
                "canary_weight": self.canary_weight}


@dataclass(frozen=True)
class Change:
    """One change to an endpoint, checked against ``expected_resource_version``.

    * ``start_canary``: ``version`` becomes the canary at ``weight`` percent.
    * ``set_weight``: the running canary gets ``weight`` percent.
    * ``promote``: the canary becomes stable at 100 %, no canary left.
    * ``abort``: the canary gets no traffic and is removed; stable unchanged.
    * ``set_stable``: ``version`` becomes stable at 100 % (rollback, or an
      approved promotion of a version that is not the canary); any canary is removed.
    * ``set_scaling``: the bounds and target in ``scaling`` (its None fields stay as they are); what serves
      does not change.
    """

    op: Operation
    expected_resource_version: str
    version: VersionRef | None = None
    weight: int | None = None
    previous_stable: VersionRef | None = None  # the stable version before, for backends that record it
    scaling: Scaling | None = None  # set_scaling: the new values (None fields unchanged)

    def target_state(self, current: ServingState) -> ServingState:
        """What the endpoint should look like after the change (pure)."""
        if self.op == "start_canary":
            return ServingState(current.stable_version, self.version.version, int(self.weight))
        if self.op == "set_weight":
            return replace(current, canary_weight=int(self.weight))
        if self.op == "promote":
            return ServingState(current.canary_version, None, 0)
        if self.op == "abort":
            return ServingState(current.stable_version, None, 0)
        if self.op == "set_stable":
            return ServingState(self.version.version, None, 0)
        if self.op == "set_scaling":
            return current
        raise ValueError(self.op)


class ServingBackend(ABC):
    name = "serving"
    source = "serving backend"
    # Capabilities: use cases ask these, never the backend's name.
    needs_storage_uri = True  # a change must carry the version's real artifact location
    records_history = False  # writes the serving history in the same transaction as the change itself
    creates_endpoints = False  # can create an endpoint (the demo seed); else endpoints come from elsewhere

    @abstractmethod
    def list_endpoints(self) -> list[Endpoint]: ...

    @abstractmethod
    def get_endpoint(self, name: str) -> Endpoint:
        """Raises NotFound for an unknown endpoint."""

    @abstractmethod
    def apply(self, name: str, change: Change, *, actor: str, note: str = "", approved_by: str | None = None
              ) -> Endpoint:
        """Make the change if the endpoint is still at ``change.expected_resource_version``.

        ``actor`` made (or requested) the change; ``approved_by`` is the second person who approved it, if any.
        Backends that keep a serving history record both.

        Raises Conflict when it is not (or a concurrent write won), PermissionDenied
        when the backend refuses the write, Unavailable when it cannot be reached.
        Returns the endpoint as read after the write.
        """

    def preview(self, endpoint: Endpoint, change: Change) -> dict | list | None:
        """The backend-specific body the change would send (shown in the dry run)."""
        return None

    def scaling_status(self, endpoint: Endpoint) -> ScalingStatus:
        """What the autoscaler says now (never raises: what cannot be read is said in ``note``)."""
        return ScalingStatus(note=f"the {self.name} backend reports no autoscaler")

    def replica_history(self, endpoint: str, start: datetime, end: datetime) -> list[tuple[datetime, str, int]]:
        """(at, version, replicas) samples between ``start`` and ``end``, oldest first; empty where the backend
        keeps no history (KServe: the HPA says only what runs now)."""
        return []

    def record_replicas(self, samples: list[tuple[str, str, int, int]]) -> None:
        """Record (endpoint, version, replicas, in_flight) now — the local gateway's worker counts. Backends
        whose replicas are counted elsewhere ignore it."""
        return None
