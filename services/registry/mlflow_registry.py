"""MLflow adapter for the model registry port.

Translates every MLflow / transport failure into the console's error
vocabulary with ``source="MLflow registry"``. Names are never interpolated
into a filter string unless they can be quoted exactly, and every result is
filtered again by exact name, so no name can widen a search.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

from services.breaker import Breaker
from services.errors import ConsoleError, Invalid, NotFound
from services.refs import VersionRef
from services.registry import (
    Dataset,
    MetricPoint,
    ModelRegistry,
    ModelSummary,
    RunDetail,
    Signature,
    VersionDetail,
    VersionSummary,
)
from services.registry.mlflow_support import (
    REFERENCE_ARTIFACTS,
    SOURCE,
    check_local_store,
    guard,
    load_reference_data,
    name_filter,
    paged,
    schema_cols,
    translate,
    ts,
)


class MlflowRegistry(ModelRegistry):
    source = SOURCE

    def __init__(self, tracking_uri: str, registry_uri: str | None = None, ui_url: str | None = None):
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.ui_url = ui_url
        self._client = None
        self._uri_index: tuple[float, dict] | None = None
        self._uri_lock = threading.Lock()
        self.breaker = Breaker(SOURCE)  # a server that timed out is not asked again for a while
        self._model_files = functools.lru_cache(maxsize=512)(self._read_model_files)  # a version's files never change
        self._signatures = functools.lru_cache(maxsize=1024)(lambda n, v: self._model_files(self.storage_uri(n, v))[0])

    def signature(self, name: str, version: str) -> Signature | None:
        """Read once per version (a version's files never change): no MLflow call on later reads."""
        return self._signatures(name, str(version))

    @property
    def client(self):
        """The MlflowClient behind the breaker: while the server rests after a timeout, calls fail at once."""
        if self._client is None:
            check_local_store(self.tracking_uri)
            with guard("the client configuration"):
                from mlflow import MlflowClient

                self._client = _Guarded(MlflowClient(tracking_uri=self.tracking_uri,
                                                     registry_uri=self.registry_uri), self.breaker)
        return self._client

    # -- reads ---------------------------------------------------------------
    def list_models(self) -> list[ModelSummary]:
        with guard("registered models"):
            models = paged(self.client.search_registered_models, max_results=1000)
            versions = paged(self.client.search_model_versions, max_results=10000)
        counts: dict[str, int] = {}
        latest: dict[str, int] = {}
        for v in versions:
            counts[v.name] = counts.get(v.name, 0) + 1
            try:
                latest[v.name] = max(latest.get(v.name, 0), int(v.version))
            except ValueError:
                pass
        return [self._model_summary(m, counts.get(m.name, 0), latest.get(m.name)) for m in models]

    def _model_summary(self, m, count: int, latest: int | None) -> ModelSummary:
        return ModelSummary(
            name=m.name,
            description=m.description or "",
            tags=dict(m.tags or {}),
            aliases={str(a): str(v) for a, v in (m.aliases or {}).items()},
            version_count=count,
            latest_version=str(latest) if latest else None,
            created=ts(m.creation_timestamp),
            last_updated=ts(m.last_updated_timestamp),
        )

    def get_model(self, name: str) -> ModelSummary:
        _check_name(name)
        with guard(f"model {name!r}"):
            m = self.client.get_registered_model(name)
            versions = self._versions_raw(name)
        nums = [int(v.version) for v in versions if str(v.version).isdigit()]
        return self._model_summary(m, len(versions), max(nums) if nums else None)

    def _versions_raw(self, name: str) -> list:
        flt = name_filter(name)
        if flt is None:  # both quote kinds in the name: read all, filter here
            found = paged(self.client.search_model_versions, max_results=10000)
        else:
            found = paged(self.client.search_model_versions, filter_string=flt, max_results=10000)
        return [v for v in found if v.name == name]

    def list_versions(self, name: str, *, with_metrics: bool = True) -> list[VersionSummary]:
        return self.model_with_versions(name, with_metrics=with_metrics)[1]

    def model_with_versions(self, name: str, *, with_metrics: bool = True
                            ) -> tuple[ModelSummary, list[VersionSummary]]:
        """One get_registered_model, one paged version search, one batched run search."""
        _check_name(name)
        with guard(f"model {name!r}"):
            model = self.client.get_registered_model(name)  # NotFound for unknown names
            raw = self._versions_raw(name)
            metrics = self._run_metrics([v.run_id for v in raw if v.run_id]) if with_metrics else {}
        by_version: dict[str, list[str]] = {}
        for alias, ver in (model.aliases or {}).items():
            by_version.setdefault(str(ver), []).append(alias)
        out = [self._version_summary(v, by_version, *metrics.get(v.run_id or "", (None, {}))) for v in raw]
        out.sort(key=lambda s: s.version_int, reverse=True)
        nums = [s.version_int for s in out if s.version_int > 0]
        return self._model_summary(model, len(out), max(nums) if nums else None), out

    def aliases(self, name: str) -> dict[str, str]:
        _check_name(name)
        with guard(f"aliases of {name!r}"):
            m = self.client.get_registered_model(name)
        return {str(a): str(v) for a, v in (m.aliases or {}).items()}

    def _run_metrics(self, run_ids: list[str]) -> dict[str, tuple[str, dict[str, float]]]:
        """run id -> (experiment id, latest metrics), in batches of 100 ids."""
        ids = sorted(set(run_ids))
        if not ids:
            return {}
        experiments = [e.experiment_id for e in paged(self.client.search_experiments, max_results=1000)]
        out: dict[str, tuple[str, dict[str, float]]] = {}
        for i in range(0, len(ids), 100):
            chunk = ids[i : i + 100]
            flt = "attributes.run_id IN (" + ",".join(f"'{r}'" for r in chunk if r.isalnum()) + ")"
            if flt.endswith("()"):
                continue
            runs = paged(self.client.search_runs, experiment_ids=experiments, filter_string=flt,
                          max_results=1000)
            for r in runs:
                out[r.info.run_id] = (r.info.experiment_id, dict(r.data.metrics))
        return out

    def _version_summary(self, v, aliases_by_version: dict[str, list[str]], experiment_id: str | None = None,
                         metrics: dict | None = None) -> VersionSummary:
        return VersionSummary(
            model=v.name,
            version=str(v.version),
            created=ts(v.creation_timestamp),
            last_updated=ts(v.last_updated_timestamp),
            aliases=tuple(sorted(aliases_by_version.get(str(v.version), []))),
            tags=dict(v.tags or {}),
            status=str(v.status or ""),
            description=v.description or "",
            run_id=v.run_id or None,
            source=v.source or "",
            metrics=metrics or {},
            experiment_id=experiment_id,
        )

    def get_version(self, name: str, version: str) -> VersionSummary:
        _check_name(name)
        version = _check_version(version)
        with guard(f"version {version} of {name!r}"):
            model = self.client.get_registered_model(name)
            v = self.client.get_model_version(name, version)
            run = self._one_run(v.run_id) if v.run_id else (None, {})
        by_version: dict[str, list[str]] = {}
        for alias, ver in (model.aliases or {}).items():
            by_version.setdefault(str(ver), []).append(alias)
        return self._version_summary(v, by_version, *run)

    def _one_run(self, run_id: str) -> tuple[str | None, dict[str, float]]:
        """(experiment id, metrics) of one run with a single call; a deleted run has none."""
        from mlflow.exceptions import MlflowException

        try:
            r = self.client.get_run(run_id)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return None, {}
            raise
        return r.info.experiment_id, dict(r.data.metrics)

    def get_version_detail(self, name: str, version: str) -> VersionDetail:
        summary = self.get_version(name, version)
        warnings: list[str] = []
        run = None
        if summary.run_id:
            try:
                run = self.get_run(summary.run_id)
            except ConsoleError as exc:
                warnings.append(f"run {summary.run_id}: {exc.message}")
        location = ""
        signature = None
        flavors: tuple[str, ...] = ()
        requirements: tuple[str, ...] = ()
        try:
            location = self.storage_uri(name, summary.version)
        except ConsoleError as exc:
            warnings.append(f"artifact location: {exc.message}")
        if location:
            try:
                signature, flavors, requirements = self._model_files(location)
            except ConsoleError as exc:
                warnings.append(f"model files: {exc.message}")
        return VersionDetail(summary=summary, run=run, signature=signature, requirements=requirements,
                             artifact_location=location, flavors=flavors, load_warnings=tuple(warnings))

    def _read_model_files(self, location: str) -> tuple[Signature | None, tuple[str, ...], tuple[str, ...]]:
        import mlflow.artifacts
        from mlflow.models import Model

        with guard("the model's MLmodel file"), self.breaker.guard(), tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=location.rstrip("/") + "/MLmodel", dst_path=tmp, tracking_uri=self.tracking_uri
            )
            model = Model.load(path)
        signature = None
        if model.signature is not None:
            sig = model.signature
            signature = Signature(
                inputs=schema_cols(sig.inputs),
                outputs=schema_cols(sig.outputs),
                params=tuple((p.name, str(p.dtype)) for p in (sig.params.params if sig.params else [])),
            )
        requirements: tuple[str, ...] = ()
        try:
            with self.breaker.guard(), tempfile.TemporaryDirectory() as tmp:
                req = mlflow.artifacts.download_artifacts(
                    artifact_uri=location.rstrip("/") + "/requirements.txt", dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
                lines = Path(req).read_text().splitlines()
            requirements = tuple(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))
        except Exception:  # noqa: BLE001 - a model without requirements.txt is legal
            requirements = ()
        return signature, tuple(sorted(model.flavors)), requirements

    def get_run(self, run_id: str) -> RunDetail:
        with guard(f"run {run_id}"):
            r = self.client.get_run(run_id)
        datasets = []
        for di in (r.inputs.dataset_inputs if r.inputs else []) or []:
            ds = di.dataset
            ctx = ",".join(t.value for t in (di.tags or []) if t.key == "mlflow.data.context")
            datasets.append(Dataset(name=ds.name, digest=ds.digest, source_type=ds.source_type,
                                    source=ds.source, context=ctx, schema=ds.schema or "",
                                    profile=ds.profile or ""))
        return RunDetail(
            run_id=r.info.run_id,
            experiment_id=r.info.experiment_id,
            run_name=r.info.run_name or "",
            status=r.info.status,
            start_time=ts(r.info.start_time),
            end_time=ts(r.info.end_time),
            params=dict(r.data.params),
            metrics=dict(r.data.metrics),
            tags={k: v for k, v in r.data.tags.items()},
            datasets=tuple(datasets),
            artifact_uri=r.info.artifact_uri,
        )

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        with guard(f"metric history {key!r} of run {run_id}"):
            hist = self.client.get_metric_history(run_id, key)
        return sorted((MetricPoint(m.step, float(m.value), m.timestamp) for m in hist), key=lambda p: p.step)

    def recent_versions(self, limit: int = 10) -> list[VersionSummary]:
        with guard("recent model versions"):
            raw = self.client.search_model_versions(max_results=limit,
                                                    order_by=["last_updated_timestamp DESC"])
        return [self._version_summary(v, {}) for v in list(raw)[:limit]]

    # -- writes --------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str) -> None:
        with guard(f"alias {alias!r} of {name!r}"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with guard(f"alias {alias!r} of {name!r}"):
            self.client.delete_registered_model_alias(name, alias)

    def storage_uri(self, name: str, version: str) -> str:
        with guard(f"artifact location of {name!r} version {version}"):
            return self.client.get_model_version_download_uri(name, str(version))

    def artifact_available(self, name: str, version: str) -> bool:
        import mlflow.artifacts

        location = self.storage_uri(name, version)
        try:
            with self.breaker.guard():
                files = mlflow.artifacts.list_artifacts(artifact_uri=location, tracking_uri=self.tracking_uri)
        except FileNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001 - "missing" only when the store says so; an outage is not that
            err = translate(exc, f"the model files of {name!r} v{version}")
            if isinstance(err, NotFound):
                return False
            raise err from exc
        return any(Path(f.path).name == "MLmodel" for f in files or [])

    REFERENCE_ARTIFACTS = REFERENCE_ARTIFACTS

    def reference_data(self, name: str, version: str, kind: str = "train"):
        """The exact frame the version's run logged as ``reference/<kind>.parquet``."""
        if kind not in REFERENCE_ARTIFACTS:
            raise Invalid(f"reference data kind must be one of {', '.join(REFERENCE_ARTIFACTS)}", source=SOURCE)
        v = self.get_version(name, version)
        if not v.run_id:
            raise NotFound(f"{name!r} v{v.version} has no run, so no reference data", source=SOURCE)
        with self.breaker.guard():
            return load_reference_data(self.tracking_uri, v.run_id, REFERENCE_ARTIFACTS[kind],
                                       what=f"{name!r} v{v.version}")

    URI_INDEX_TTL = 60.0

    def resolve_storage_uri(self, uri: str):
        """Match an unannotated serving endpoint to a version by its artifact location.

        Builds an index of every version's download URI (one call per version), kept for a minute.
        """
        with self._uri_lock:
            now = time.monotonic()
            if self._uri_index is None or now - self._uri_index[0] > self.URI_INDEX_TTL:
                index = {}
                with guard("the artifact locations of all versions"):
                    for v in paged(self.client.search_model_versions, max_results=10000):
                        try:
                            loc = self.client.get_model_version_download_uri(v.name, v.version)
                        except Exception:  # noqa: BLE001 - a version without files is simply not matched
                            continue
                        index[loc.rstrip("/")] = VersionRef(v.name, str(v.version), v.run_id or None, loc)
                self._uri_index = (now, index)
            return self._uri_index[1].get((uri or "").rstrip("/"))

    # -- links ---------------------------------------------------------------
    def run_link(self, run: RunDetail | None) -> str | None:
        if not self.ui_url or run is None:
            return None
        return f"{self.ui_url}/#/experiments/{run.experiment_id}/runs/{run.run_id}"

    def version_link(self, name: str, version: str) -> str | None:
        if not self.ui_url:
            return None
        return f"{self.ui_url}/#/models/{quote(name, safe='')}/versions/{quote(str(version))}"


class _Guarded:
    """An MlflowClient whose every method call goes through the registry's :class:`Breaker`."""

    def __init__(self, client, breaker: Breaker):
        self._client, self._breaker = client, breaker

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with self._breaker.guard():
                return attr(*args, **kwargs)

        return call


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise Invalid("a model name is required", source=SOURCE)
    if len(name) > 256:
        raise Invalid("model names are at most 256 characters", source=SOURCE)


def _check_version(version) -> str:
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise Invalid(f"version must be a positive whole number, got {str(version)!r}", source=SOURCE)
    return str(int(text))


