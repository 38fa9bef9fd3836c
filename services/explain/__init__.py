"""Explanations: why a model version decides as it does (SHAP), as plain data.

* :mod:`services.explain.explainers` chooses and runs the explainer for a fitted model (tree, linear, or a
  sampled model-agnostic one) and checks that the attributions add up to the model's output;
* :mod:`services.explain.service` loads a registry version with the gateway's trusted-types check, takes its
  background and sample from the version's reference data, caches results per (model, version, sample),
  and holds the use cases (a version, given rows, one logged prediction, explanation drift);
* :mod:`services.explain.drift` compares two explanations (pure);
* :mod:`services.explain.commands` is ``python -m services explain``.

No Streamlit here. An :class:`Explanation` is what every use case returns or builds on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SOURCE = "explanations"
LOG_ODDS, PROBABILITY, RAW = "log-odds", "probability", "raw"
BACKGROUND_ROWS = 100  # rows of the training reference the linear explainer takes its baseline from
AGNOSTIC_BACKGROUND_ROWS = 50  # the model-agnostic explainer evaluates the model on each of them per step
SAMPLE_ROWS = 1000  # at most this many held-out rows are explained (a seeded sample beyond)
AGNOSTIC_SAMPLE_ROWS = 100  # the model-agnostic explainer is ~1000× slower per row
SEED = 0


@dataclass(frozen=True, eq=False)
class Explanation:
    """SHAP attributions of one model version for some rows: ``values[i, j]`` is feature ``j``'s contribution
    to row ``i``'s output; ``base_value + values[i].sum() == outputs[i]`` in ``output_space``."""

    explainer: str  # e.g. "TreeExplainer (path-dependent TreeSHAP)"
    kind: str  # tree | linear | model-agnostic
    estimator: str  # the explained estimator's class name
    output_space: str  # log-odds | probability | raw
    output_label: str  # e.g. "log-odds of class 1"
    base_value: float
    features: tuple[str, ...]
    values: np.ndarray  # (rows, features) attributions
    data: np.ndarray  # (rows, features) the features' values, in the input's units where the transform is 1:1
    outputs: np.ndarray  # (rows,) the model's output in output_space
    row_ids: tuple[Any, ...] = ()
    model: str = ""
    version: str = ""
    background: str = ""  # what the baseline is, in words
    background_rows: int = 0
    sample: str = ""  # which rows, in words
    notes: tuple[str, ...] = ()
    additivity_error: float = 0.0  # the largest |base + sum - output| found
    seconds: float = 0.0  # computing time (not counting the model's load)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for arr in (self.values, self.data, self.outputs):  # cached and shared: nobody may change them
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def importance(self) -> list[dict]:
        """Global importance, most important first: mean |SHAP| per feature, its share of the total, rank."""
        mean_abs = np.abs(self.values).mean(axis=0) if self.rows else np.zeros(len(self.features))
        total = float(mean_abs.sum())
        order = sorted(range(len(self.features)), key=lambda j: (-mean_abs[j], self.features[j]))
        return [{"feature": self.features[j], "mean_abs_shap": float(mean_abs[j]),
                 "share": float(mean_abs[j] / total) if total > 0 else 0.0, "rank": r + 1}
                for r, j in enumerate(order)]

    def attribution_frame(self):
        """One row per explained row: its id, the model output, the base value and each feature's attribution."""
        import pandas as pd

        out = pd.DataFrame(self.values, columns=list(self.features))
        out.insert(0, "base value", self.base_value)
        out.insert(0, f"output ({self.output_label})", self.outputs)
        out.insert(0, "row", list(self.row_ids) or list(range(self.rows)))
        return out

    def long_frame(self):
        """One row per (row, feature): the feature's value and attribution (beeswarm and dependence plots)."""
        import pandas as pd

        n, f = self.values.shape
        return pd.DataFrame({"row": np.repeat(np.asarray(list(self.row_ids) or range(n), dtype=object), f),
                             "feature": np.tile(np.asarray(self.features, dtype=object), n),
                             "value": self.data.reshape(-1), "shap": self.values.reshape(-1)})

    def waterfall(self, i: int = 0) -> dict:
        """Row ``i`` as a waterfall: from the base value through each feature's attribution (largest |value|
        first) to the model output."""
        steps = sorted(({"feature": name, "value": _plain(self.data[i, j]), "shap": float(self.values[i, j])}
                        for j, name in enumerate(self.features)), key=lambda s: (-abs(s["shap"]), s["feature"]))
        return {"base_value": self.base_value, "output": float(self.outputs[i]), "output_space": self.output_space,
                "output_label": self.output_label, "steps": steps}

    def describe(self) -> dict:
        """What was explained and how, without the numbers."""
        return {"model": self.model, "version": self.version, "explainer": self.explainer, "kind": self.kind,
                "estimator": self.estimator, "output_space": self.output_space, "output_label": self.output_label,
                "base_value": self.base_value, "background": self.background,
                "background_rows": self.background_rows, "sample": self.sample, "row_count": self.rows,
                "notes": list(self.notes), "additivity_error": self.additivity_error, "seconds": self.seconds}

    def as_dict(self) -> dict:
        """JSON-ready: the description and, per row, the attributions by feature name and the output they add
        up to."""
        ids = list(self.row_ids) or list(range(self.rows))
        return {**self.describe(), "features": list(self.features), "importance": self.importance(),
                "rows": [{"row": _plain(ids[i]), "output": float(self.outputs[i]),
                          "attributions": {f: float(self.values[i, j]) for j, f in enumerate(self.features)},
                          "values": {f: _plain(self.data[i, j]) for j, f in enumerate(self.features)}}
                         for i in range(self.rows)]}


def _plain(v):
    """A JSON-friendly scalar (numpy numbers to Python, NaN to None)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


def background_sample(reference, rows: int = BACKGROUND_ROWS, seed: int = SEED):
    """A seeded sample of ``rows`` rows of a reference frame (all of it when smaller)."""
    if len(reference) <= rows:
        return reference.reset_index(drop=True)
    return reference.sample(n=rows, random_state=seed).reset_index(drop=True)
