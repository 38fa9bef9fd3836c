"""The demo's data: scikit-learn's bundled datasets, the fixed train/eval split, each version's feature set,
and the reference frames every run logs (read back by the registry's ``reference_data``).

Nothing is downloaded: the data ships with scikit-learn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from services.demo.specs import ModelSpec
from services.registry.mlflow_support import REFERENCE_ARTIFACTS

RANDOM_STATE = 42
TEST_SIZE = 0.25
TARGET = "target"
REFERENCE_ARTIFACT = REFERENCE_ARTIFACTS["train"]  # the exact training frame, features + target
EVAL_ARTIFACT = REFERENCE_ARTIFACTS["eval"]  # the exact held-out frame


@dataclass
class Data:
    x_train: Any
    x_eval: Any
    y_train: Any
    y_eval: Any
    source: str


def load_data(spec: ModelSpec) -> Data:
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.model_selection import train_test_split

    if spec.task == "classification":
        bunch = load_breast_cancer(as_frame=True)
        x_tr, x_ev, y_tr, y_ev = train_test_split(
            bunch.data, bunch.target, test_size=TEST_SIZE, random_state=RANDOM_STATE, stratify=bunch.target
        )
        source = "sklearn.datasets.load_breast_cancer"
    else:
        bunch = load_diabetes(as_frame=True)
        x_tr, x_ev, y_tr, y_ev = train_test_split(
            bunch.data, bunch.target, test_size=TEST_SIZE, random_state=RANDOM_STATE
        )
        source = "sklearn.datasets.load_diabetes"
    return Data(x_tr, x_ev, y_tr.astype("int64" if spec.task == "classification" else "float64"),
                y_ev.astype("int64" if spec.task == "classification" else "float64"), source)


def features(frame, feature_set: str):
    if feature_set == "all":
        return frame.copy()
    if feature_set == "mean-only":
        return frame[[c for c in frame.columns if c.startswith("mean ")]].copy()
    if feature_set == "all+ratio":
        out = frame.copy()
        out["worst to mean radius ratio"] = out["worst radius"] / out["mean radius"]
        return out
    raise ValueError(f"unknown feature set {feature_set!r}")


def mlflow_dataset(frame, name: str, loader: str, artifact_uri: str, split: str):
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
