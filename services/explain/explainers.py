"""Choosing and running a SHAP explainer for a fitted model (no registry, no I/O: a model and frames in,
an :class:`~services.explain.Explanation` out).

* **Tree models** (scikit-learn decision trees, random forests / extra trees, gradient boosting, histogram
  gradient boosting): ``shap.TreeExplainer``, path-dependent TreeSHAP — exact, and its background is the
  training data as each tree recorded it (the training rows that reached every node), so no background
  sample is drawn. Output space: log-odds for gradient-boosted classifiers, probability for tree and forest
  classifiers (their leaves hold class fractions), raw for regressors.
* **Linear models** (``coef_``/``intercept_``: logistic / ridge / linear regression, SGD, …):
  ``shap.LinearExplainer`` with an independent masker over a background sample of the training reference:
  attribution = coefficient × (value − background mean). Output space: log-odds for logistic models, raw
  (the decision function or the prediction) otherwise.
* **Anything else**: ``shap.PermutationExplainer`` on the model's output (a classifier's probability, else
  its prediction) over a smaller background sample, a fixed budget of model evaluations per row.

A scikit-learn ``Pipeline`` whose last step is a tree or linear model is explained through its last step: the
rows go through the preprocessing steps first, and the explanation says so. Otherwise the whole pipeline is
explained model-agnostically on the input columns.

Every explanation is checked: base value + sum of attributions must equal the model's own output in the
stated space (:data:`ADDITIVITY_TOLERANCE`), or the explanation is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from services.errors import Invalid, PreconditionFailed
from services.explain import LOG_ODDS, PROBABILITY, RAW, SOURCE, Explanation

TREE, LINEAR, AGNOSTIC = "tree", "linear", "model-agnostic"
ADDITIVITY_TOLERANCE = 1e-6  # relative to the largest |output| (at least 1)
AGNOSTIC_MAX_EVALS = 500  # model evaluations per explained row (shap's default budget)
AGNOSTIC_CHUNK = 10  # rows per call, so progress can be reported
_TREE_LIBRARIES = ("xgboost", "lightgbm", "catboost")
_LOGISTIC = ("LogisticRegression", "LogisticRegressionCV")

Progress = Callable[[float, str], None]


def _sklearn_tree(est) -> bool:
    from sklearn.ensemble import BaseEnsemble
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting
    from sklearn.tree import BaseDecisionTree

    if isinstance(est, BaseDecisionTree | BaseGradientBoosting | BaseHistGradientBoosting):
        return True
    base = getattr(est, "estimator", None) or getattr(est, "base_estimator", None)
    return isinstance(est, BaseEnsemble) and isinstance(base, BaseDecisionTree) and hasattr(est, "estimators_")


def kind_of(est) -> str:
    """``tree``, ``linear`` or ``model-agnostic`` for a fitted estimator (a pipeline's last step)."""
    if _sklearn_tree(est) or type(est).__module__.split(".")[0] in _TREE_LIBRARIES:
        return TREE
    if hasattr(est, "coef_") and hasattr(est, "intercept_") and type(est).__module__.startswith("sklearn.linear_model"):
        return LINEAR
    return AGNOSTIC


def split_pipeline(model) -> tuple[Any, Any]:
    """``(preprocessing or None, final estimator)``: a Pipeline whose last step is a tree or linear model is
    explained through that step; anything else is explained whole."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and len(model.steps) > 1 and kind_of(model.steps[-1][1]) != AGNOSTIC:
        return model[:-1], model.steps[-1][1]
    return None, model


def feature_names(model, columns: list[str] | None = None) -> list[str]:
    """The input columns a model takes: what it was fitted on, else ``columns`` (e.g. its signature)."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    if columns:
        return list(columns)
    n = getattr(model, "n_features_in_", None)
    if n is None:
        raise Invalid("the model does not say which input columns it takes (no feature names, no signature)",
                      source=SOURCE)
    return [f"x{i}" for i in range(int(n))]


def model_frame(rows, names: list[str]):
    """``rows`` as the model's input frame: its columns in the model's order (extra columns such as ``target``
    dropped); Invalid naming the missing ones."""
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise Invalid(f"the rows lack {len(missing)} column(s) the model takes: {shown}", source=SOURCE)
    if frame.empty:
        raise Invalid("no rows to explain", source=SOURCE)
    return frame[names].reset_index(drop=True)


def _class_index(est, target_class) -> tuple[int | None, str]:
    """Which output column of a classifier is explained, and how to say it."""
    classes = getattr(est, "classes_", None)
    if classes is None:
        return None, ""
    classes = list(classes)
    if target_class is None:
        idx = len(classes) - 1  # binary: the positive class, the column predict_proba[:, 1] gives
    else:
        labels = [str(c) for c in classes]
        if str(target_class) not in labels:
            raise Invalid(f"class {target_class!r} is not one of the model's classes {labels}", source=SOURCE)
        idx = labels.index(str(target_class))
    return idx, f"class {classes[idx]}"


def _output(est, kind: str, idx: int | None) -> tuple[Callable, str]:
    """The model output the explainer's attributions add up to, and its space."""
    multi = idx is not None and len(est.classes_) > 2

    def column(values):  # binary decision functions are 1-D (the positive class); otherwise one column per class
        values = np.asarray(values, dtype=float)
        return values if values.ndim == 1 else values[:, idx if values.shape[1] > 1 else 0]

    if idx is None:
        return (lambda x: np.asarray(est.predict(x), dtype=float).reshape(-1)), RAW
    if kind == TREE and not hasattr(est, "decision_function"):  # trees and forests: class fractions
        return (lambda x: column(est.predict_proba(x))), PROBABILITY
    if kind in (TREE, LINEAR) and hasattr(est, "decision_function"):
        logistic = type(est).__name__ in _LOGISTIC or getattr(est, "loss", None) == "log_loss" or kind == TREE
        return (lambda x: column(est.decision_function(x))), LOG_ODDS if logistic and not multi else RAW
    if hasattr(est, "predict_proba"):
        return (lambda x: column(est.predict_proba(x))), PROBABILITY
    return (lambda x: np.asarray(est.predict(x), dtype=float).reshape(-1)), RAW


def _pick(values, base, idx: int | None, n: int, f: int) -> tuple[np.ndarray, float]:
    """Attributions (n, f) and the base value for the explained output out of shap's shapes."""
    if isinstance(values, list):  # older shap: one array per class
        values = np.stack(values, axis=-1)
    values = np.asarray(values, dtype=float)
    base = np.asarray(base, dtype=float).reshape(-1)
    if values.ndim == 3:
        k = idx if idx is not None and idx < values.shape[2] else values.shape[2] - 1
        return values[:, :, k].reshape(n, f), float(base[k] if base.size > k else base[-1])
    return values.reshape(n, f), float(base[0])


def _transform(prep, x, names: list[str]) -> tuple[np.ndarray, list[str], bool]:
    """Rows through the preprocessing steps: (matrix, feature names, whether the transform is 1:1 by name)."""
    if prep is None:
        return x.to_numpy(dtype=float), names, True
    out = prep.transform(x)
    out = out.toarray() if hasattr(out, "toarray") else np.asarray(getattr(out, "values", out))
    try:
        t_names = [str(n) for n in prep.get_feature_names_out(names)]
    except Exception:  # noqa: BLE001 - a step without names: positions, or the input's names when 1:1
        t_names = list(names) if out.shape[1] == len(names) else [f"x{i}" for i in range(out.shape[1])]
    return np.asarray(out, dtype=float), t_names, t_names == list(names)


def _framed(est, arr: np.ndarray, names: list[str]):
    """A frame when the estimator was fitted on one (keeps scikit-learn from warning), else the array."""
    if getattr(est, "feature_names_in_", None) is None:
        return arr
    import pandas as pd

    return pd.DataFrame(arr, columns=names)


def explain(estimator, rows, background, *, columns: list[str] | None = None, target_class=None,
            background_rows: int | None = None, progress: Progress | None = None,
            meta: dict | None = None) -> Explanation:
    """Explain ``rows`` (a frame holding the estimator's input columns) with the explainer it calls for.

    ``background`` is the frame the linear and model-agnostic explainers take their baseline from (a sample
    of the training reference: :func:`services.explain.background_sample`); ``meta`` fills the explanation's
    ``model``, ``version``, ``background`` and ``sample`` (descriptions)."""
    import shap

    started = time.perf_counter()
    say = progress or (lambda _f, _t: None)
    model = estimator
    names = feature_names(model, columns)
    x = model_frame(rows, names)
    prep, final = split_pipeline(model)
    kind = kind_of(final)
    idx, class_note = _class_index(final, target_class)
    notes = []
    if prep is not None:
        steps = ", ".join(type(s).__name__ for _, s in prep.steps if s not in (None, "passthrough"))
        notes.append(f"explained the pipeline's last step ({type(final).__name__}) on the rows after its "
                     f"preprocessing ({steps})")
    say(0.05, f"{kind} explainer for {type(final).__name__}")
    if kind == AGNOSTIC:
        f_out, space = _output(model, AGNOSTIC, idx)
        arr, t_names, one_to_one = x.to_numpy(dtype=float), names, True
        bg = model_frame(background, names).to_numpy(dtype=float)

        def fn(a):
            return f_out(_framed(model, a, names))

        explainer = shap.PermutationExplainer(fn, shap.maskers.Independent(bg, max_samples=len(bg)))
        parts, bases = [], []
        max_evals = max(AGNOSTIC_MAX_EVALS, 2 * len(names) + 1)
        for start in range(0, len(arr), AGNOSTIC_CHUNK):
            part = explainer(arr[start:start + AGNOSTIC_CHUNK], max_evals=max_evals, silent=True)
            parts.append(np.asarray(part.values, dtype=float))
            bases.append(np.asarray(part.base_values, dtype=float).reshape(-1))
            say(0.05 + 0.9 * min(1.0, (start + AGNOSTIC_CHUNK) / len(arr)),
                f"{min(len(arr), start + AGNOSTIC_CHUNK)} of {len(arr)} rows")
        values, base = np.concatenate(parts).reshape(len(arr), len(names)), float(np.concatenate(bases)[0])
        outputs = fn(arr)
        name = f"PermutationExplainer ({max_evals} model evaluations per row)"
    else:
        arr, t_names, one_to_one = _transform(prep, x, names)
        f_out, space = _output(final, kind, idx)
        if kind == TREE:
            explainer = shap.TreeExplainer(final)  # path-dependent: the trees' own training counts
            raw, expected = explainer.shap_values(arr, check_additivity=False), explainer.expected_value
            name = "TreeExplainer (path-dependent TreeSHAP)"
        else:
            bg = _transform(prep, model_frame(background, names), names)[0]
            explainer = shap.LinearExplainer(final, shap.maskers.Independent(bg, max_samples=len(bg)))
            raw, expected = explainer.shap_values(arr), explainer.expected_value
            name = "LinearExplainer (independent features)"
        values, base = _pick(raw, expected, idx, len(arr), len(t_names))
        outputs = f_out(_framed(final, arr, t_names))
    say(0.97, "checking that the attributions add up")
    error = additivity_error(values, base, outputs)
    scale = max(1.0, float(np.max(np.abs(outputs))) if len(outputs) else 1.0)
    if not np.isfinite(error) or error > ADDITIVITY_TOLERANCE * scale:
        raise PreconditionFailed(f"the {name} attributions do not add up to the model's {space} output "
                                 f"(largest gap {error:.3g}): the explanation is not shown", source=SOURCE)
    if class_note:
        notes.append(f"explains the output for {class_note}")
    shown = x.to_numpy(dtype=float) if one_to_one else arr  # values in the input's own units where 1:1
    if not one_to_one:
        notes.append("the preprocessing changes the columns: attributions and values are per transformed column")
    return Explanation(
        explainer=name, kind=kind, estimator=type(final).__name__, output_space=space,
        output_label=f"{space}" + (f" of {class_note}" if class_note else ""), base_value=base,
        features=tuple(t_names), values=values, data=shown,
        outputs=np.asarray(outputs, dtype=float), row_ids=tuple(range(len(arr))),
        background_rows=0 if kind == TREE else (background_rows or len(background)), notes=tuple(notes),
        additivity_error=float(error), seconds=time.perf_counter() - started, **(meta or {}))


def additivity_error(values: np.ndarray, base: float, outputs: np.ndarray) -> float:
    """The largest |base + sum(attributions) - output| over the rows."""
    if len(outputs) == 0:
        return 0.0
    return float(np.max(np.abs(base + values.sum(axis=1) - np.asarray(outputs, dtype=float))))
