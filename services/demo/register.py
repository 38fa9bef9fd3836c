"""Registering the demo in MLflow: models, versions, aliases and tags; idempotent per model.

Versions carry ``validation_status`` (computed from a quality gate),
``algorithm``, ``owner``, ``feature_set`` and ``source_commit`` tags and the
``demo_seed`` tag that lets an interrupted seed resume; aliases ``champion`` /
``challenger`` replace the deprecated stages. MLflow failures leave as the
registry adapter's error vocabulary (:func:`services.registry.mlflow_support.translate`).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from services.demo.datasets import Data, load_data
from services.demo.specs import CHALLENGER, CHAMPION, SPECS, ModelSpec, VersionSpec
from services.demo.training import log_run
from services.errors import Invalid
from services.registry.mlflow_support import translate

SEED_TAG = "demo_seed"  # version tag holding the spec key; lets an interrupted seed resume

_LOCK = threading.Lock()  # the fluent MLflow API is process-global; one seed at a time

Progress = Callable[[str], None] | None


def _is_outside_failure(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, OSError))


@contextmanager
def mlflow_uri(tracking_uri: str) -> Iterator[None]:
    """Point the fluent MLflow API at ``tracking_uri`` (tracking and registry), then restore.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the
    environment, so both the module globals and the environment variables are
    put back exactly as they were.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as reg_utils
    from mlflow.tracking._tracking_service import utils as trk_utils

    env_keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    old_env = {k: os.environ.get(k) for k in env_keys}
    old_tracking = getattr(trk_utils, "_tracking_uri", None)
    old_registry = getattr(reg_utils, "_registry_uri", None)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_tracking)
        reg_utils._registry_uri = old_registry
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _no_autolog():
    try:
        from mlflow.utils.autologging_utils import disable_autologging

        return disable_autologging()
    except ImportError:  # pragma: no cover - older/newer MLflow
        return nullcontext()


def _client(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def _artifact_location(artifact_root: Path | str | None, experiment: str) -> str | None:
    if artifact_root is None:
        return None
    root = str(artifact_root)
    if "://" in root:
        return f"{root.rstrip('/')}/{experiment}"
    return (Path(root).expanduser().resolve() / experiment).as_uri()



def registry_is_empty(tracking_uri: str) -> bool:
    """True when the registry at ``tracking_uri`` holds no registered model at all."""
    try:
        models = _client(tracking_uri).search_registered_models(max_results=1)
    except Exception as exc:
        if _is_outside_failure(exc):
            raise translate(exc, "registered models", doing="listing") from exc
        raise
    return len(models) == 0


def seed_registry(tracking_uri: str, artifact_root: Path | str | None, *, progress: Progress = None) -> dict:
    """Register the demo models at ``tracking_uri``; artifacts go under ``artifact_root``.

    ``artifact_root`` is a directory path or URI; each experiment stores its
    artifacts in ``<artifact_root>/<experiment name>``. It may be None only for
    a tracking server (which then picks the location); for a local store it is
    required so nothing lands in the working directory's ``./mlruns``.

    Idempotent: a model that already has all its demo versions is left alone
    and listed under ``"skipped"``. A model whose seed was interrupted is
    completed. Returns::

        {"models": {name: {"versions": ["1", ...], "champion": "2", "challenger": "4",
                           "runs": {"1": run_id, ...}}},
         "seconds": 4.2, "skipped": [names]}
    """
    if artifact_root is None and _is_local_store(tracking_uri):
        raise Invalid(
            "an artifact root is required to seed a local MLflow store "
            "(otherwise artifacts would land in ./mlruns)", source="demo seed",
        )
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    summary: dict[str, Any] = {"models": {}, "seconds": 0.0, "skipped": []}
    with _LOCK:
        try:
            import mlflow

            if mlflow.active_run() is not None:
                raise Invalid("cannot seed while an MLflow run is active in this thread", source="demo seed")
            with mlflow_uri(tracking_uri), _no_autolog(), warnings.catch_warnings():
                # Classifier outputs are integer labels; MLflow hints about missing values each time.
                warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
                client = _client(tracking_uri)
                for spec in SPECS:
                    info, skipped = _seed_model(client, spec, artifact_root, say)
                    summary["models"][spec.name] = info
                    if skipped:
                        summary["skipped"].append(spec.name)
        except Exception as exc:
            if _is_outside_failure(exc):
                raise translate(exc, "the demo registry", doing="seeding") from exc
            raise
    summary["seconds"] = round(time.perf_counter() - started, 2)
    say(f"demo registry seeded in {summary['seconds']:.1f} s"
        + (f" (skipped: {', '.join(summary['skipped'])})" if summary["skipped"] else ""))
    return summary


def _seed_model(client, spec: ModelSpec, artifact_root, say) -> tuple[dict, bool]:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(spec.name)
        exists = True
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        exists = False
    existing = _versions(client, spec.name) if exists else []
    keys = [s.key for s in spec.versions]
    existing_keys = [v.tags.get(SEED_TAG) for v in existing]
    if len(existing) >= len(keys) or existing_keys != keys[: len(existing)]:
        complete = len(existing) >= len(keys)
        why = "already has its versions" if complete else "has versions not made by the seed"
        say(f"{spec.name}: {why} ({len(existing)}), skipped")
        return _model_info(client, spec.name, existing), True

    if not exists:
        client.create_registered_model(spec.name, tags=spec.tags, description=spec.description)
    elif existing:
        say(f"{spec.name}: resuming after version {existing[-1].version}")
    experiment_id = _experiment(client, spec, artifact_root)
    data = load_data(spec)
    by_key = {v.tags.get(SEED_TAG): str(v.version) for v in existing}
    for vspec in spec.versions[len(existing):]:
        t0 = time.perf_counter()
        version = _register_version(client, spec, vspec, experiment_id, data)
        by_key[vspec.key] = version
        say(f"{spec.name} v{version}: {vspec.algorithm} {_fmt_params(vspec.params)} "
            f"({time.perf_counter() - t0:.1f} s)")
    client.set_registered_model_alias(spec.name, CHAMPION, by_key[spec.champion])
    client.set_registered_model_alias(spec.name, CHALLENGER, by_key[spec.challenger])
    say(f"{spec.name}: {CHAMPION} -> v{by_key[spec.champion]}, {CHALLENGER} -> v{by_key[spec.challenger]}")
    return _model_info(client, spec.name, _versions(client, spec.name)), False


def _versions(client, name: str) -> list:
    flt = f"name = '{name}'"  # demo names are fixed and quote-free
    found = [v for v in client.search_model_versions(filter_string=flt, max_results=1000) if v.name == name]
    return sorted(found, key=lambda v: int(v.version))


def _model_info(client, name: str, versions: list) -> dict:
    raw = client.get_registered_model(name).aliases if versions else {}
    aliases = {k: str(v) for k, v in (raw or {}).items()}  # MLflow may hand back int versions
    return {
        "versions": [str(v.version) for v in versions],
        CHAMPION: aliases.get(CHAMPION),
        CHALLENGER: aliases.get(CHALLENGER),
        "runs": {str(v.version): v.run_id for v in versions},
    }


def _experiment(client, spec: ModelSpec, artifact_root) -> str:
    exp = client.get_experiment_by_name(spec.experiment)
    if exp is None:
        return client.create_experiment(
            spec.experiment,
            artifact_location=_artifact_location(artifact_root, spec.experiment),
            tags={"team": spec.tags["team"], "task": spec.tags["task"],
                  "mlflow.note.content": f"Training runs for the registered model {spec.name}."},
        )
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k != "scaler")


def _register_version(client, spec: ModelSpec, vspec: VersionSpec, experiment_id: str, data: Data) -> str:
    run = log_run(client, spec, vspec, experiment_id, data)
    mv = client.create_model_version(
        spec.name,
        source=run.model_uri,
        run_id=run.run_id,
        model_id=run.model_id,
        description=vspec.version_description,
        tags={
            "validation_status": run.validation_status,
            "validation_notes": run.validation_notes,
            "algorithm": vspec.algorithm,
            "owner": vspec.owner,
            "feature_set": vspec.features,
            "source_commit": run.commit,
            SEED_TAG: vspec.key,
        },
    )
    return str(mv.version)
