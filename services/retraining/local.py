"""The ``local`` retrainer: retrain an endpoint's model here, on its original training data plus the labelled
prediction-log window, and register the result as the ``challenger``.

The parent version's run logged its exact training and held-out frames (``reference/train.parquet``,
``reference/eval.parquet``, as the demo does). The parent is loaded the way the gateway loads it (the skops
trusted-types allow-list), its scikit-learn estimator cloned (same algorithm and hyperparameters, unfitted) and
fitted on the training frame plus every labelled, successful row the endpoint logged in the window (its
features in the parent's input columns, its label as the target; rows missing a column are counted and left
out). The run is logged in the parent's experiment with its lineage — ``mlflow.log_input`` of the original
training set, the window and the holdout (with their digests), run tags ``mlops.parent_version``,
``mlops.retrain.window_from/to``, ``mlops.retrain.trigger``, ``mlops.retrain.reason`` — and its new training
and held-out frames as reference data (so drift profiles and explanations work for the new version). The new
version is tagged ``mlops.candidate=retraining`` (and the same lineage tags) and gets the ``challenger`` alias.

Candidate and champion are evaluated on the same holdout (the parent's held-out frame): the run logs the
candidate's metrics under their usual names (what the promotion gates compare) and as ``holdout_<metric>``,
and the champion's as ``champion_holdout_<metric>``; both are returned. A champion whose input columns the
holdout lacks is said (``detail``), not compared. ``status(run_id)`` reads the run back from MLflow.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from services.errors import ConsoleError, Invalid, NotFound, PreconditionFailed
from services.retraining import (
    CANDIDATE_TAG,
    CANDIDATE_VALUE,
    ENDPOINT_TAG,
    PARENT_TAG,
    REASON_TAG,
    TRIGGER_TAG,
    WINDOW_FROM_TAG,
    WINDOW_TO_TAG,
    Retrainer,
    RetrainRequest,
    RetrainRun,
)

TARGET = "target"
NEW_VERSION_TAG = "mlops.retrain.new_version"
CHAMPION, CHALLENGER = "champion", "challenger"
_STATES = {"FINISHED": "succeeded", "FAILED": "failed", "KILLED": "failed", "RUNNING": "running",
           "SCHEDULED": "queued"}


def _iso(dt) -> str:
    return "" if dt is None else dt.isoformat()


def evaluate(task: str, model, x, y) -> dict[str, float]:
    """The demo's held-out metrics (accuracy, f1, roc_auc, precision, recall / mae, rmse, r2); a classifier that
    is not binary gets accuracy alone."""
    from services.demo.training import _metrics

    try:
        return _metrics(task, model, x, y)
    except (ValueError, IndexError, AttributeError):
        if task != "classification":
            raise
        from sklearn.metrics import accuracy_score

        return {"accuracy": float(accuracy_score(y, model.predict(x)))}


class LocalRetrainer(Retrainer):
    backend = "local"

    def __init__(self, tracking_uri: str, registry, predictions, *, models: Callable[[str, str], Any] | None = None,
                 max_window_rows: int = 100_000):
        self.tracking_uri = tracking_uri
        self.registry = registry
        self.predictions = predictions
        self._models = models
        self.max_window_rows = max_window_rows
        self.source = "local retraining"

    def models(self, model: str, version: str):
        if self._models is None:
            from services.explain.service import for_registry

            self._models = for_registry(self.registry).models
        return self._models(model, version)

    # -- the data ------------------------------------------------------------------------------------------
    def _reference(self, model: str, version: str, kind: str):
        try:
            return self.registry.reference_data(model, version, kind)
        except NotFound as exc:
            raise PreconditionFailed(
                f"{model!r} v{version} logged no {kind}ing data (reference/{kind}.parquet): the local retrainer "
                f"retrains on the data a version's run logged — use MLOPS_RETRAINER=webhook or airflow for "
                f"models trained elsewhere", source=self.source) from exc

    def window_frame(self, request: RetrainRequest, columns: list[str], train, holdout=None) -> tuple[Any, dict]:
        """The window's labelled, successful rows as features + target, and what was counted on the way. A row
        whose features equal a holdout row's is left out: trained on, it would flatter the holdout comparison."""
        import pandas as pd

        rows = [] if request.window_start is None or request.window_end is None else self.predictions.rows(
            request.endpoint, start=request.window_start, end=request.window_end, limit=self.max_window_rows)
        labelled = [r for r in rows if r.label is not None and r.ok and not r.error]
        complete = [r for r in labelled if all(c in r.features for c in columns)]
        held = set() if holdout is None else {_key(v) for v in holdout[columns].itertuples(index=False, name=None)}
        usable = [r for r in complete if _key(tuple(r.features[c] for c in columns)) not in held]
        frame = pd.DataFrame([{c: r.features[c] for c in columns} for r in usable], columns=columns)
        frame[TARGET] = pd.Series([r.label for r in usable], dtype="object")
        if not len(frame):  # empty: the training data's column types, so adding it changes none of them
            frame = train[[*columns, TARGET]].iloc[0:0].copy()
        for c in columns:
            try:
                frame[c] = pd.to_numeric(frame[c])
            except (ValueError, TypeError):
                pass  # a categorical feature stays as it came
        frame[TARGET] = frame[TARGET].astype(train[TARGET].dtype)
        counts = {"window_rows": len(rows), "window_labelled": len(labelled), "window_used": len(usable),
                  "window_missing_columns": len(labelled) - len(complete),
                  "window_in_holdout": len(complete) - len(usable),
                  "window_truncated": int(len(rows) >= self.max_window_rows)}
        return frame, counts

    def preview(self, request: RetrainRequest) -> dict:
        from services.retraining import payload

        return {"backend": self.backend, "trains": "here, before the action returns",
                "on": [f"reference/train.parquet of {request.model} v{request.version}",
                       "the labelled, successful rows the endpoint logged in the window"],
                "registers": f"a new version of {request.model} with the alias challenger (champion does not move)",
                "request": payload(request)}

    # -- the job -------------------------------------------------------------------------------------------
    def trigger(self, request: RetrainRequest) -> RetrainRun:
        from services.demo.register import _LOCK, _no_autolog, mlflow_uri
        from services.registry.mlflow_support import translate

        if request.window_start and request.window_end and request.window_start >= request.window_end:
            raise Invalid("the window starts after it ends", source=self.source)
        parent = self.registry.get_version(request.model, request.version)
        champion = self.registry.aliases(request.model).get(CHAMPION)
        train = self._reference(request.model, request.version, "train")
        holdout = self._reference(request.model, request.version, "eval")
        loaded = self.models(request.model, request.version)
        estimator = loaded.estimator
        from sklearn.base import BaseEstimator, clone, is_classifier

        if not isinstance(estimator, BaseEstimator):
            raise PreconditionFailed(f"{request.model!r} v{request.version} is not a scikit-learn model: the local "
                                     "retrainer refits scikit-learn estimators only", source=self.source)
        columns = list(loaded.columns) or [c for c in train.columns if c != TARGET]
        missing = [c for c in columns if c not in train.columns or c not in holdout.columns]
        if missing:
            raise PreconditionFailed(f"the logged data of v{request.version} lacks its input columns {missing}",
                                     source=self.source)
        window, counts = self.window_frame(request, columns, train, holdout)
        import pandas as pd

        combined = pd.concat([train[[*columns, TARGET]], window], ignore_index=True)
        task = "classification" if is_classifier(estimator) else "regression"
        try:
            candidate = clone(estimator).fit(combined[columns], combined[TARGET])
            metrics = evaluate(task, candidate, holdout[columns], holdout[TARGET])
        except (ValueError, TypeError) as exc:  # e.g. a label of a class never seen, text in a numeric feature
            raise PreconditionFailed(f"refitting {type(_final(estimator)).__name__} of v{request.version} failed: "
                                     f"{' '.join(str(exc).split())[:300]}", source=self.source) from exc
        notes = []
        champ_metrics: dict[str, float] = {}
        if champion:
            champ = self.models(request.model, champion)
            champ_cols = list(champ.columns) or columns
            lacking = [c for c in champ_cols if c not in holdout.columns]
            if lacking:
                notes.append(f"champion v{champion} not compared: the holdout lacks its columns {lacking}")
            else:
                champ_metrics = evaluate(task, champ.estimator, holdout[champ_cols], holdout[TARGET])
        else:
            notes.append("no champion to compare with")
        logged = {**metrics, **{f"holdout_{k}": v for k, v in metrics.items()},
                  **{f"champion_holdout_{k}": v for k, v in champ_metrics.items()},
                  "train_rows_original": float(len(train)), **{k: float(v) for k, v in counts.items()}}
        try:
            with _LOCK, mlflow_uri(self.tracking_uri), _no_autolog(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
                run_id, version = self._log_and_register(request, parent, champion, estimator, candidate, train,
                                                         window, holdout, combined, columns, logged)
        except ConsoleError:
            raise
        except RuntimeError as exc:  # the refitted model holds types skops does not trust and nobody vetted
            raise PreconditionFailed(f"the retrained model cannot be logged safely: {exc}", source=self.source) from exc
        except Exception as exc:
            if _outside(exc):
                raise translate(exc, f"retraining {request.model!r} v{request.version}", doing="logging") from exc
            raise
        detail = "; ".join([f"{counts['window_used']} labelled window rows added to {len(train)} original rows"
                            + (f" ({counts['window_in_holdout']} left out: they are holdout rows)"
                               if counts["window_in_holdout"] else ""),
                            *notes])
        return RetrainRun(run_id, "succeeded", request, new_version=version, metrics=logged, detail=detail,
                          backend=self.backend, url=self.registry.version_link(request.model, version))

    def _log_and_register(self, request, parent, champion, estimator, candidate, train, window, holdout,
                          combined, columns, metrics) -> tuple[str, str]:
        import tempfile
        from pathlib import Path

        import mlflow
        import mlflow.data
        from mlflow.models import infer_signature

        from services.demo.datasets import EVAL_ARTIFACT, REFERENCE_ARTIFACT
        from services.demo.training import _requirements, _trusted_types

        lineage = {PARENT_TAG: str(request.version), WINDOW_FROM_TAG: _iso(request.window_start),
                   WINDOW_TO_TAG: _iso(request.window_end), TRIGGER_TAG: request.trigger,
                   REASON_TAG: request.reason[:5000], ENDPOINT_TAG: request.endpoint}
        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        tags = {**lineage, CANDIDATE_TAG: CANDIDATE_VALUE, "mlflow.source.name": "services/retraining/local.py",
                "mlflow.source.type": "LOCAL", "algorithm": type(_final(estimator)).__name__,
                "champion_version": champion or "", "mlops.retrain.model": request.model}
        with mlflow.start_run(experiment_id=parent.experiment_id, tags=tags, log_system_metrics=False,
                              run_name=f"retrain-{request.model}-v{request.version}-{int(time.time())}",
                              description=f"Retraining of v{request.version} on {request.endpoint}: "
                                          f"{request.reason}") as run:
            mlflow.log_params({"parent_version": request.version, "n_features": len(columns),
                               "train_rows": len(combined), "eval_rows": len(holdout),
                               **{k: v for k, v in _params(estimator).items()}})
            with tempfile.TemporaryDirectory() as tmp:
                for frame, artifact in ((combined, REFERENCE_ARTIFACT), (holdout[[*columns, TARGET]], EVAL_ARTIFACT)):
                    local = Path(tmp) / Path(artifact).name
                    frame.to_parquet(local, index=False)
                    mlflow.log_artifact(str(local), artifact_path=str(Path(artifact).parent))
            window_name = f"window {_iso(request.window_start)}..{_iso(request.window_end)}"
            inputs = [(train[[*columns, TARGET]], f"original training data of v{request.version}", "training",
                       "training")]
            if request.window_start is not None:
                inputs.append((window, f"{request.endpoint} labelled predictions, {window_name}", "training", "window"))
            inputs.append((holdout[[*columns, TARGET]], f"holdout of v{request.version}", "evaluation", "evaluation"))
            for frame, name, context, kind in inputs:
                ds = mlflow.data.from_pandas(frame, name=name[:500], targets=TARGET)
                mlflow.log_input(ds, context=context)
                mlflow.set_tag(f"mlops.retrain.digest.{kind}", ds.digest)
            mlflow.log_metrics(metrics)
            info = mlflow.sklearn.log_model(candidate, name="model", signature=infer_signature(
                combined[columns], candidate.predict(combined[columns])), input_example=holdout[columns].head(5),
                pip_requirements=_requirements(()), skops_trusted_types=_trusted_types(candidate))
            run_id = run.info.run_id
        mv = client.create_model_version(request.model, source=info.model_uri, run_id=run_id, model_id=info.model_id,
                                         description=f"Retrained from v{request.version} ({request.reason})"[:5000],
                                         tags={**lineage, CANDIDATE_TAG: CANDIDATE_VALUE,
                                               "validation_status": "pending"})
        version = str(mv.version)
        client.set_registered_model_alias(request.model, CHALLENGER, version)
        client.set_tag(run_id, NEW_VERSION_TAG, version)
        return run_id, version

    def status(self, run_id: str) -> RetrainRun:
        import mlflow

        from services.registry.mlflow_support import translate

        if not str(run_id).isalnum():
            raise NotFound(f"no local retraining run {run_id!r}", source=self.source)
        try:
            run = mlflow.MlflowClient(tracking_uri=self.tracking_uri).get_run(run_id)
        except Exception as exc:
            if _outside(exc):
                raise translate(exc, f"retraining run {run_id}") from exc
            raise
        tags = run.data.tags
        if tags.get(CANDIDATE_TAG) != CANDIDATE_VALUE:
            raise NotFound(f"run {run_id} is not a retraining run", source=self.source)
        request = RetrainRequest(endpoint=tags.get(ENDPOINT_TAG, ""), model=tags.get("mlops.retrain.model", ""),
                                 version=tags.get(PARENT_TAG, ""), reason=tags.get(REASON_TAG, ""),
                                 trigger=tags.get(TRIGGER_TAG, ""))
        return RetrainRun(run_id, _STATES.get(run.info.status, "failed"), request,
                          new_version=tags.get(NEW_VERSION_TAG), metrics=dict(run.data.metrics),
                          backend=self.backend)


def _key(values: tuple) -> tuple:
    """A row's features, comparable across JSON and parquet (floats to 9 significant digits)."""
    return tuple(f"{v:.9g}" if isinstance(v, float | int) and not isinstance(v, bool) else str(v) for v in values)


def _final(estimator):
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _params(estimator) -> dict:
    """The final estimator's scalar hyperparameters (what the parent was trained with)."""
    return {k: v for k, v in _final(estimator).get_params(deep=False).items()
            if isinstance(v, int | float | str | bool) or v is None}


def _outside(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException | OSError)
