"""Training the demo's models and logging each one as an MLflow run the way a careful team would.

Every run logs params, held-out metrics, per-step metric history where the
algorithm has steps, a signature and input example, its training and evaluation
datasets (``mlflow.log_input``), the exact training and evaluation frames as
``reference/train.parquet`` / ``reference/eval.parquet``, pinned requirements,
a run description and a deterministic fake source commit.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from services.demo.datasets import (
    EVAL_ARTIFACT,
    RANDOM_STATE,
    REFERENCE_ARTIFACT,
    TARGET,
    TEST_SIZE,
    Data,
    features,
    mlflow_dataset,
)
from services.demo.specs import ModelSpec, VersionSpec, fake_commit

# Types skops refuses by default that our models legitimately contain. Anything
# else showing up is a surprise (new scikit-learn internals) and fails loudly.
_SKOPS_ALLOWED = frozenset({
    "sklearn.tree._tree.Tree",  # DecisionTree*, RandomForest*, GradientBoosting*
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # HistGradientBoosting*
})
_BASE_REQUIREMENTS = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")


@dataclass(frozen=True)
class LoggedRun:
    """A trained version's run: what registering it needs."""

    run_id: str
    model_uri: str
    model_id: str | None
    validation_status: str  # passed | failed | pending
    validation_notes: str
    commit: str


def _train(vspec: VersionSpec, x_tr, y_tr, x_ev, y_ev) -> tuple[Any, dict[str, list[float]]]:
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


def _gate(spec: ModelSpec, vspec: VersionSpec, metrics: dict[str, float]) -> tuple[str, str]:
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


def log_run(client, spec: ModelSpec, vspec: VersionSpec, experiment_id: str, data: Data) -> LoggedRun:
    """Train ``vspec`` on ``data`` and log it as one run in ``experiment_id`` (the fluent API's tracking URI)."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    x_tr = features(data.x_train, vspec.features)
    x_ev = features(data.x_eval, vspec.features)
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
        "mlflow.source.name": "services/demo/training.py",
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
            "split_random_state": RANDOM_STATE, "test_size": TEST_SIZE,
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
            dataset = mlflow_dataset(frame, f"{short}-{split}-{vspec.features}", data.source,
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
    return LoggedRun(run_id, model_info.model_uri, model_info.model_id, status, notes, commit)
