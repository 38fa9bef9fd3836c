"""Model registry port: what the console needs to know about registered models.

The one adapter today is :mod:`services.registry.mlflow_registry`; tests use it
against a real MLflow store. Everything here is plain data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version
    version_count: int = 0
    latest_version: str | None = None
    created: datetime | None = None
    last_updated: datetime | None = None


@dataclass(frozen=True)
class VersionSummary:
    model: str
    version: str
    created: datetime | None = None
    last_updated: datetime | None = None
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    status: str = ""
    description: str = ""
    run_id: str | None = None
    source: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    experiment_id: str | None = None  # of the source run, for links

    @property
    def version_int(self) -> int:
        try:
            return int(self.version)
        except ValueError:
            return -1


@dataclass(frozen=True)
class Dataset:
    name: str
    digest: str = ""
    source_type: str = ""
    source: str = ""
    context: str = ""
    schema: str = ""
    profile: str = ""


@dataclass(frozen=True)
class RunDetail:
    run_id: str
    experiment_id: str = ""
    run_name: str = ""
    status: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: tuple[Dataset, ...] = ()
    artifact_uri: str = ""


@dataclass(frozen=True)
class Signature:
    inputs: tuple[tuple[str, str], ...] = ()  # (name, type)
    outputs: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VersionDetail:
    summary: VersionSummary
    run: RunDetail | None
    signature: Signature | None
    requirements: tuple[str, ...]
    artifact_location: str
    flavors: tuple[str, ...] = ()
    load_warnings: tuple[str, ...] = ()  # parts that could not be read, with the reason

    @property
    def source_commit(self) -> str | None:
        tags = {**(self.run.tags if self.run else {}), **self.summary.tags}
        return tags.get("mlflow.source.git.commit") or tags.get("source_commit")


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    timestamp: int


class ModelRegistry(ABC):
    """Read and alias operations on a model registry."""

    source = "model registry"

    @abstractmethod
    def list_models(self) -> list[ModelSummary]: ...

    @abstractmethod
    def get_model(self, name: str) -> ModelSummary: ...

    @abstractmethod
    def list_versions(self, name: str, *, with_metrics: bool = True) -> list[VersionSummary]: ...

    def model_with_versions(self, name: str) -> tuple[ModelSummary, list[VersionSummary]]:
        """The model and its versions (newest first) in as few reads as the backend allows."""
        return self.get_model(name), self.list_versions(name)

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version, with the cheapest read the backend has."""
        return self.get_model(name).aliases

    @abstractmethod
    def get_version(self, name: str, version: str) -> VersionSummary: ...

    @abstractmethod
    def get_version_detail(self, name: str, version: str) -> VersionDetail: ...

    def signature(self, name: str, version: str) -> Signature | None:
        """The version's signature (None without one). It never changes once registered: adapters may cache it."""
        return self.get_version_detail(name, version).signature

    @abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]: ...

    @abstractmethod
    def recent_versions(self, limit: int = 10) -> list[VersionSummary]: ...

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None: ...

    @abstractmethod
    def artifact_available(self, name: str, version: str) -> bool: ...

    @abstractmethod
    def storage_uri(self, name: str, version: str) -> str:
        """Where the version's model files really are (never a ``models:/`` URI)."""

    def reference_data(self, name: str, version: str, kind: str = "train"):
        """The frame a version was trained (``train``) or evaluated (``eval``) on, for drift; NotFound if absent."""
        from services.errors import NotFound

        raise NotFound(f"{self.source} keeps no reference data", source=self.source)

    def resolve_storage_uri(self, uri: str):
        """The registry version whose files are at ``uri`` (a serving.VersionRef), or None."""
        return None

    def run_link(self, run: RunDetail | None) -> str | None:  # pragma: no cover - overridden
        return None

    def version_link(self, name: str, version: str) -> str | None:  # pragma: no cover - overridden
        return None
