"""Seed a realistic demo MLflow registry from datasets shipped inside scikit-learn.

Two registered models are created the way a careful team would register them:

* ``breast-cancer-classifier`` (``sklearn.datasets.load_breast_cancer``): five
  versions of different algorithms and hyperparameters, one trained on a subset
  of the features and one with an extra engineered feature (so schema diffs show
  something), one with an extra pip requirement (so dependency diffs show
  something), per-step metric history where the algorithm has steps.
* ``diabetes-regressor`` (``sklearn.datasets.load_diabetes``): three versions.

Every run logs params, held-out metrics, a signature and input example, its
training and evaluation datasets (``mlflow.log_input``), the exact training and
evaluation frames as ``reference/train.parquet`` / ``reference/eval.parquet``
(drift detection reads them back with :func:`load_reference_data`), a run
description and a deterministic fake source commit. Versions carry
``validation_status`` (computed from a quality gate), ``algorithm``, ``owner``
and ``feature_set`` tags; aliases ``champion`` / ``challenger`` replace the
deprecated stages.

Nothing is downloaded: the data ships with scikit-learn. Seeding is
idempotent per model and takes a few seconds.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.errors import ConsoleError, Invalid, NotFound, Unavailable

if TYPE_CHECKING:  # pragma: no cover
    import pandas

SOURCE = "MLflow registry"
DEMO_MODELS = ("breast-cancer-classifier", "diabetes-regressor")
CHAMPION = "champion"
CHALLENGER = "challenger"
SEED_TAG = "demo_seed"  # version tag holding the spec key; lets an interrupted seed resume
REFERENCE_ARTIFACT = "reference/train.parquet"
EVAL_ARTIFACT = "reference/eval.parquet"
RANDOM_STATE = 42
TARGET = "target"

# Types skops refuses by default that our models legitimately contain. Anything
# else showing up is a surprise (new scikit-learn internals) and fails loudly.
_SKOPS_ALLOWED = frozenset({
    "sklearn.tree._tree.Tree",  # DecisionTree*, RandomForest*, GradientBoosting*
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # HistGradientBoosting*
})
_BASE_REQUIREMENTS = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")

_LOCK = threading.Lock()  # the fluent MLflow API is process-global; one seed at a time

Progress = Callable[[str], None] | None


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class _VersionSpec:
    key: str  # stable id, stored as the SEED_TAG version tag
    algorithm: str
    params: dict[str, Any]
    features: str  # "all" | "mean-only" | "all+ratio"
    owner: str
    run_description: str
    version_description: str
    pending: bool = False  # validation not run yet
    extra_requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class _ModelSpec:
    name: str
    experiment: str
    task: str  # "classification" | "regression"
    description: str
    tags: dict[str, str]
    versions: tuple[_VersionSpec, ...]
    champion: str  # spec key
    challenger: str  # spec key
    gate: dict[str, tuple[str, float]] = field(default_factory=dict)  # metric -> (">=" | "<=", bound)


_CLASSIFIER = _ModelSpec(
    name="breast-cancer-classifier",
    experiment="breast-cancer-classifier",
    task="classification",
    description=(
        "Predicts whether a breast mass is benign (target=1) or malignant (target=0) from 30 "
        "features computed on a digitized image of a fine needle aspirate (Wisconsin Diagnostic "
        "Breast Cancer data, as shipped with scikit-learn). Trained on a stratified 75% split; "
        "every version is evaluated on the same held-out 25%.\n\n"
        "Quality gate: accuracy >= 0.95, recall >= 0.95, roc_auc >= 0.98 on the held-out split."
    ),
    tags={"team": "clinical-ml", "task": "binary-classification", "domain": "oncology",
          "dataset": "sklearn.datasets.load_breast_cancer", "positive_class": "benign (1)"},
    versions=(
        _VersionSpec(
            key="logreg-c0.1", algorithm="LogisticRegression",
            params={"C": 0.1, "max_iter": 1000, "scaler": "StandardScaler"}, features="all", owner="alice",
            run_description="Baseline: standardised features, strongly regularised logistic regression.",
            version_description="Baseline logistic regression (C=0.1) on all 30 features.",
        ),
        _VersionSpec(
            key="logreg-c1.0", algorithm="LogisticRegression",
            params={"C": 1.0, "max_iter": 1000, "scaler": "StandardScaler"}, features="all", owner="alice",
            run_description="Weaker regularisation (C=1.0) after the baseline under-fitted slightly.",
            version_description="Logistic regression (C=1.0) on all 30 features; best held-out AUC so far.",
        ),
        _VersionSpec(
            key="tree-depth4", algorithm="DecisionTreeClassifier",
            params={"max_depth": 4, "min_samples_leaf": 1}, features="mean-only", owner="dana",
            run_description=(
                "Interpretable tree restricted to the 10 'mean *' features, requested by clinicians "
                "for explainability."
            ),
            version_description=(
                "Depth-4 decision tree on the 10 'mean *' features only (smaller input schema)."
            ),
        ),
        _VersionSpec(
            key="gbm-ratio", algorithm="GradientBoostingClassifier",
            params={"n_estimators": 150, "learning_rate": 0.05, "max_depth": 3, "subsample": 0.8},
            features="all+ratio", owner="dana", extra_requirements=("pyarrow",),
            run_description=(
                "Gradient boosting with an engineered 'worst to mean radius ratio' feature computed by "
                "the parquet feature pipeline; per-tree validation curves logged."
            ),
            version_description=(
                "Gradient boosting (150 trees) on 30 features + 'worst to mean radius ratio'. "
                "Needs the feature pipeline to provide the extra column."
            ),
        ),
        _VersionSpec(
            key="sgd-logloss", algorithm="SGDClassifier",
            params={"loss": "log_loss", "alpha": 0.001, "epochs": 30, "scaler": "StandardScaler"},
            features="all", owner="carol", pending=True,
            run_description="Online-learning candidate trained epoch by epoch with partial_fit.",
            version_description="SGD logistic model (30 epochs of partial_fit); awaiting validation.",
        ),
    ),
    champion="logreg-c1.0",
    challenger="gbm-ratio",
    gate={"accuracy": (">=", 0.95), "recall": (">=", 0.95), "roc_auc": (">=", 0.98)},
)

_REGRESSOR = _ModelSpec(
    name="diabetes-regressor",
    experiment="diabetes-regressor",
    task="regression",
    description=(
        "Predicts a quantitative measure of diabetes progression one year after baseline from age, "
        "sex, BMI, blood pressure and six blood serum measurements (scikit-learn's diabetes data, "
        "features mean-centred and scaled). Trained on 75%, evaluated on the same held-out 25%.\n\n"
        "Quality gate: r2 >= 0.45 and rmse <= 55 on the held-out split."
    ),
    tags={"team": "clinical-ml", "task": "regression", "domain": "endocrinology",
          "dataset": "sklearn.datasets.load_diabetes"},
    versions=(
        _VersionSpec(
            key="ridge-a1.0", algorithm="Ridge", params={"alpha": 1.0}, features="all", owner="bob",
            run_description="Baseline ridge regression with the default penalty.",
            version_description="Ridge regression (alpha=1.0) baseline.",
        ),
        _VersionSpec(
            key="ridge-a0.1", algorithm="Ridge", params={"alpha": 0.1}, features="all", owner="bob",
            run_description="Lower penalty; the baseline was over-regularised on pre-scaled features.",
            version_description="Ridge regression (alpha=0.1); passes the gate.",
        ),
        _VersionSpec(
            key="gbr", algorithm="GradientBoostingRegressor",
            params={"n_estimators": 120, "learning_rate": 0.05, "max_depth": 2, "subsample": 0.8},
            features="all", owner="dana",
            run_description="Gradient boosting candidate; per-tree validation RMSE/MAE logged.",
            version_description="Gradient boosting regressor (120 shallow trees).",
        ),
    ),
    champion="ridge-a0.1",
    challenger="gbr",
    gate={"r2": (">=", 0.45), "rmse": ("<=", 55.0)},
)

def fake_commit(model: str, key: str) -> str:
    """A deterministic 40-hex 'git sha' for a demo version."""
    return hashlib.sha1(f"demo-registry/{model}/{key}".encode()).hexdigest()


# --------------------------------------------------------------------------- mlflow context


def _translate(exc: BaseException, what: str) -> ConsoleError:
    if isinstance(exc, ConsoleError):
        return exc
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        MlflowException = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, MlflowException) and getattr(exc, "error_code", "") in (
        "RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"
    ):
        return NotFound(f"{what}: {exc.message}", source=SOURCE)
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: {exc}", source=SOURCE)
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return Unavailable(f"{what}: {msg}", source=SOURCE)


def _is_outside_failure(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, OSError))


@contextmanager
def _mlflow_uri(tracking_uri: str) -> Iterator[None]:
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


# --------------------------------------------------------------------------- public API


def registry_is_empty(tracking_uri: str) -> bool:
    """True when the registry at ``tracking_uri`` holds no registered model at all."""
    try:
        models = _client(tracking_uri).search_registered_models(max_results=1)
    except Exception as exc:
        if _is_outside_failure(exc):
            raise _translate(exc, "listing registered models") from exc
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
            with _mlflow_uri(tracking_uri), _no_autolog(), warnings.catch_warnings():
                # Classifier outputs are integer labels; MLflow hints about missing values each time.
                warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
                client = _client(tracking_uri)
                for spec in (_CLASSIFIER, _REGRESSOR):
                    info, skipped = _seed_model(client, spec, artifact_root, say)
                    summary["models"][spec.name] = info
                    if skipped:
                        summary["skipped"].append(spec.name)
        except Exception as exc:
            if _is_outside_failure(exc):
                raise _translate(exc, "seeding the demo registry") from exc
            raise
    summary["seconds"] = round(time.perf_counter() - started, 2)
    say(f"demo registry seeded in {summary['seconds']:.1f} s"
        + (f" (skipped: {', '.join(summary['skipped'])})" if summary["skipped"] else ""))
    return summary


def load_reference_data(
    tracking_uri: str, run_id: str, artifact_path: str = REFERENCE_ARTIFACT
) -> pandas.DataFrame:
    """The exact training frame (features + ``target``) a demo run logged as ``reference/train.parquet``."""
    import mlflow.artifacts
    import pandas as pd

    if not run_id or not run_id.isalnum():
        raise Invalid(f"not a run id: {run_id!r}", source="demo seed")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=tmp, tracking_uri=tracking_uri
            )
            return pd.read_parquet(local)
    except Exception as exc:
        if _is_outside_failure(exc):
            raise _translate(exc, f"reference data {artifact_path!r} of run {run_id}") from exc
        raise


# --------------------------------------------------------------------------- seeding


def _seed_model(client, spec: _ModelSpec, artifact_root, say) -> tuple[dict, bool]:
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
    data = _load_data(spec)
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


def _experiment(client, spec: _ModelSpec, artifact_root) -> str:
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


# --------------------------------------------------------------------------- data


@dataclass
class _Data:
    x_train: Any
    x_eval: Any
    y_train: Any
    y_eval: Any
    source: str


def _load_data(spec: _ModelSpec) -> _Data:
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.model_selection import train_test_split

    if spec.task == "classification":
        bunch = load_breast_cancer(as_frame=True)
        x_tr, x_ev, y_tr, y_ev = train_test_split(
            bunch.data, bunch.target, test_size=0.25, random_state=RANDOM_STATE, stratify=bunch.target
        )
        source = "sklearn.datasets.load_breast_cancer"
    else:
        bunch = load_diabetes(as_frame=True)
        x_tr, x_ev, y_tr, y_ev = train_test_split(
            bunch.data, bunch.target, test_size=0.25, random_state=RANDOM_STATE
        )
        source = "sklearn.datasets.load_diabetes"
    return _Data(x_tr, x_ev, y_tr.astype("int64" if spec.task == "classification" else "float64"),
                 y_ev.astype("int64" if spec.task == "classification" else "float64"), source)


def _features(frame, feature_set: str):
    if feature_set == "all":
        return frame.copy()
    if feature_set == "mean-only":
        return frame[[c for c in frame.columns if c.startswith("mean ")]].copy()
    if feature_set == "all+ratio":
        out = frame.copy()
        out["worst to mean radius ratio"] = out["worst radius"] / out["mean radius"]
        return out
    raise ValueError(f"unknown feature set {feature_set!r}")


# --------------------------------------------------------------------------- training


def _train(vspec: _VersionSpec, x_tr, y_tr, x_ev, y_ev) -> tuple[Any, dict[str, list[float]]]:
    """Fit one version; return the model and per-step history (metric -> values for steps 1..n)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
    from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, root_mean_squared_error
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    p = vspec.params
    algo = vspec.algorithm
    if algo == "LogisticRegression":
        clf = LogisticRegression(C=p["C"], max_iter=p["max_iter"], random_state=RANDOM_STATE)
        model = Pipeline([("scaler", StandardScaler()), ("clf", clf)])
        return model.fit(x_tr, y_tr), {}
    if algo == "DecisionTreeClassifier":
        model = DecisionTreeClassifier(max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"],
                                       random_state=RANDOM_STATE)
        return model.fit(x_tr, y_tr), {}
    if algo == "Ridge":
        return Ridge(alpha=p["alpha"]).fit(x_tr, y_tr), {}
    if algo == "GradientBoostingClassifier":
        from sklearn.ensemble import GradientBoostingClassifier

        model = GradientBoostingClassifier(random_state=RANDOM_STATE, **p).fit(x_tr, y_tr)
        hist: dict[str, list[float]] = {"train_loss": [float(v) for v in model.train_score_],
                                        "val_log_loss": [], "val_accuracy": []}
        for proba in model.staged_predict_proba(x_ev):
            hist["val_log_loss"].append(float(log_loss(y_ev, proba, labels=[0, 1])))
            hist["val_accuracy"].append(float(accuracy_score(y_ev, proba.argmax(axis=1))))
        return model, hist
    if algo == "GradientBoostingRegressor":
        from sklearn.ensemble import GradientBoostingRegressor

        model = GradientBoostingRegressor(random_state=RANDOM_STATE, **p).fit(x_tr, y_tr)
        hist = {"train_loss": [float(v) for v in model.train_score_], "val_rmse": [], "val_mae": []}
        for pred in model.staged_predict(x_ev):
            hist["val_rmse"].append(float(root_mean_squared_error(y_ev, pred)))
            hist["val_mae"].append(float(mean_absolute_error(y_ev, pred)))
        return model, hist
    if algo == "SGDClassifier":
        scaler = StandardScaler().fit(x_tr)
        xs_tr, xs_ev = scaler.transform(x_tr), scaler.transform(x_ev)
        clf = SGDClassifier(loss=p["loss"], alpha=p["alpha"], random_state=RANDOM_STATE)
        classes = np.array([0, 1])
        hist = {"train_log_loss": [], "val_log_loss": [], "val_accuracy": []}
        for _epoch in range(p["epochs"]):
            clf.partial_fit(xs_tr, y_tr, classes=classes)
            hist["train_log_loss"].append(float(log_loss(y_tr, clf.predict_proba(xs_tr), labels=classes)))
            hist["val_log_loss"].append(float(log_loss(y_ev, clf.predict_proba(xs_ev), labels=classes)))
            hist["val_accuracy"].append(float(accuracy_score(y_ev, clf.predict(xs_ev))))
        return Pipeline([("scaler", scaler), ("clf", clf)]), hist
    raise ValueError(f"unknown algorithm {algo!r}")


def _metrics(task: str, model, x_ev, y_ev) -> dict[str, float]:
    from sklearn import metrics as m

    pred = model.predict(x_ev)
    if task == "classification":
        proba = model.predict_proba(x_ev)[:, 1]
        return {
            "accuracy": float(m.accuracy_score(y_ev, pred)),
            "f1": float(m.f1_score(y_ev, pred)),
            "roc_auc": float(m.roc_auc_score(y_ev, proba)),
            "precision": float(m.precision_score(y_ev, pred)),
            "recall": float(m.recall_score(y_ev, pred)),
        }
    return {
        "mae": float(m.mean_absolute_error(y_ev, pred)),
        "rmse": float(m.root_mean_squared_error(y_ev, pred)),
        "r2": float(m.r2_score(y_ev, pred)),
    }


def _gate(spec: _ModelSpec, vspec: _VersionSpec, metrics: dict[str, float]) -> tuple[str, str]:
    """(validation_status, notes) from the model's quality gate."""
    if vspec.pending:
        return "pending", "validation job not run yet"
    failures = []
    for key, (op, bound) in spec.gate.items():
        value = metrics[key]
        ok = value >= bound if op == ">=" else value <= bound
        if not ok:
            failures.append(f"{key} {value:.4f} {'<' if op == '>=' else '>'} {bound}")
    return ("failed", "; ".join(failures)) if failures else ("passed", "all gate checks passed")


def _trusted_types(model) -> list[str] | None:
    import skops.io

    untrusted = set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    surprise = untrusted - _SKOPS_ALLOWED
    if surprise:
        raise RuntimeError(f"model holds types skops does not trust and we did not vet: {sorted(surprise)}")
    return sorted(untrusted) or None


def _requirements(extra: tuple[str, ...]) -> list[str]:
    return [f"{dist}=={metadata.version(dist)}" for dist in (*_BASE_REQUIREMENTS, *extra)]


# --------------------------------------------------------------------------- one version


def _register_version(client, spec: _ModelSpec, vspec: _VersionSpec, experiment_id: str, data: _Data) -> str:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    x_tr = _features(data.x_train, vspec.features)
    x_ev = _features(data.x_eval, vspec.features)
    model, history = _train(vspec, x_tr, data.y_train, x_ev, data.y_eval)
    metrics = _metrics(spec.task, model, x_ev, data.y_eval)
    status, notes = _gate(spec, vspec, metrics)
    train_df = x_tr.assign(**{TARGET: data.y_train})
    eval_df = x_ev.assign(**{TARGET: data.y_eval})
    commit = fake_commit(spec.name, vspec.key)
    input_example = x_ev.head(5)
    signature = infer_signature(x_tr, model.predict(x_tr))

    run_tags = {
        "mlflow.source.git.commit": commit,
        "source_commit": commit,
        "mlflow.source.name": "services/demo_registry.py",
        "mlflow.source.type": "LOCAL",
        "mlflow.user": vspec.owner,
        "algorithm": vspec.algorithm,
        "feature_set": vspec.features,
        "team": spec.tags["team"],
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.name}-{vspec.key}", tags=run_tags,
                          description=vspec.run_description, log_system_metrics=False) as run:
        run_id = run.info.run_id
        mlflow.log_params({
            "algorithm": vspec.algorithm, **vspec.params, "feature_set": vspec.features,
            "n_features": x_tr.shape[1], "train_rows": len(train_df), "eval_rows": len(eval_df),
            "split_random_state": RANDOM_STATE, "test_size": 0.25,
        })
        with tempfile.TemporaryDirectory() as tmp:
            for frame, artifact in ((train_df, REFERENCE_ARTIFACT), (eval_df, EVAL_ARTIFACT)):
                local = Path(tmp) / Path(artifact).name
                frame.to_parquet(local, index=False)
                mlflow.log_artifact(str(local), artifact_path=str(Path(artifact).parent))
        short = spec.name.rsplit("-", 1)[0]
        for frame, artifact, context in ((train_df, REFERENCE_ARTIFACT, "training"),
                                         (eval_df, EVAL_ARTIFACT, "evaluation")):
            split = "train" if context == "training" else "eval"
            dataset = _dataset(frame, f"{short}-{split}-{vspec.features}", data.source,
                               f"{run.info.artifact_uri.rstrip('/')}/{artifact}", split)
            mlflow.log_input(dataset, context=context)
        now = int(time.time() * 1000)
        points = [Metric(key, value, now + step, step)
                  for key, values in history.items() for step, value in enumerate(values, start=1)]
        for i in range(0, len(points), 1000):
            client.log_batch(run_id, metrics=points[i : i + 1000])
        mlflow.log_metrics(metrics)
        model_info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            pip_requirements=_requirements(vspec.extra_requirements),
            skops_trusted_types=_trusted_types(model),
        )
    mv = client.create_model_version(
        spec.name,
        source=model_info.model_uri,
        run_id=run_id,
        model_id=model_info.model_id,
        description=vspec.version_description,
        tags={
            "validation_status": status,
            "validation_notes": notes,
            "algorithm": vspec.algorithm,
            "owner": vspec.owner,
            "feature_set": vspec.features,
            "source_commit": commit,
            SEED_TAG: vspec.key,
        },
    )
    return str(mv.version)


def _dataset(frame, name: str, loader: str, artifact_uri: str, split: str):
    """An MLflow dataset whose source is the logged parquet when resolvable, else the loader.

    MLflow keeps one dataset per (name, digest) and experiment, so versions trained on the
    same data show the first run's parquet as source: identical bytes, same digest.
    """
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ambiguity notice for file URIs, pandas deprecations in digests
        try:
            source = resolve_dataset_source(artifact_uri)
        except Exception:  # noqa: BLE001 - e.g. mlflow-artifacts:/ has no dataset source type
            source = CodeDatasetSource(tags={"loader": loader, "split": split, "artifact": artifact_uri,
                                             "random_state": str(RANDOM_STATE)})
        return mlflow.data.from_pandas(frame, source=source, name=name, targets=TARGET)
