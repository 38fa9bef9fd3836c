"""What the demo registers: two models, their versions, and the quality gate each version is judged by.

* ``breast-cancer-classifier`` (``sklearn.datasets.load_breast_cancer``): five
  versions of different algorithms and hyperparameters, one trained on a subset
  of the features and one with an extra engineered feature (so schema diffs show
  something), one with an extra pip requirement (so dependency diffs show
  something), per-step metric history where the algorithm has steps.
* ``diabetes-regressor`` (``sklearn.datasets.load_diabetes``): three versions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class VersionSpec:
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
class ModelSpec:
    name: str
    experiment: str
    task: str  # "classification" | "regression"
    description: str
    tags: dict[str, str]
    versions: tuple[VersionSpec, ...]
    champion: str  # spec key
    challenger: str  # spec key
    gate: dict[str, tuple[str, float]] = field(default_factory=dict)  # metric -> (">=" | "<=", bound)


CLASSIFIER = ModelSpec(
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
        VersionSpec(
            key="logreg-c0.1", algorithm="LogisticRegression",
            params={"C": 0.1, "max_iter": 1000, "scaler": "StandardScaler"}, features="all", owner="alice",
            run_description="Baseline: standardised features, strongly regularised logistic regression.",
            version_description="Baseline logistic regression (C=0.1) on all 30 features.",
        ),
        VersionSpec(
            key="logreg-c1.0", algorithm="LogisticRegression",
            params={"C": 1.0, "max_iter": 1000, "scaler": "StandardScaler"}, features="all", owner="alice",
            run_description="Weaker regularisation (C=1.0) after the baseline under-fitted slightly.",
            version_description="Logistic regression (C=1.0) on all 30 features; best held-out AUC so far.",
        ),
        VersionSpec(
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
        VersionSpec(
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
        VersionSpec(
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

REGRESSOR = ModelSpec(
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
        VersionSpec(
            key="ridge-a1.0", algorithm="Ridge", params={"alpha": 1.0}, features="all", owner="bob",
            run_description="Baseline ridge regression with the default penalty.",
            version_description="Ridge regression (alpha=1.0) baseline.",
        ),
        VersionSpec(
            key="ridge-a0.1", algorithm="Ridge", params={"alpha": 0.1}, features="all", owner="bob",
            run_description="Lower penalty; the baseline was over-regularised on pre-scaled features.",
            version_description="Ridge regression (alpha=0.1); passes the gate.",
        ),
        VersionSpec(
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

SPECS = (CLASSIFIER, REGRESSOR)
DEMO_MODELS = tuple(spec.name for spec in SPECS)


def fake_commit(model: str, key: str) -> str:
    """A deterministic 40-hex 'git sha' for a demo version."""
    return hashlib.sha1(f"demo-registry/{model}/{key}".encode()).hexdigest()
