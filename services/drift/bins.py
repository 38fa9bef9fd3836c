"""Reference profiles: each version's fixed bins, derived once from its reference data and stored.

Many tools re-bin every window from the current data, so their PSI or Jensen–Shannon values of two windows
are not comparable. Here a version's bins are fixed when its profile is built (from its training frame, or
from a baseline window of the prediction log) and every histogram kept at ingest counts on them.

- numeric feature: at most :data:`MAX_BINS` bins. With more distinct reference values than that, the edges are
  the reference's deciles (duplicates dropped); otherwise one bin per distinct value. Bins are
  ``(-inf, e0], (e0, e1], …, (e_last, +inf)``, so every finite value falls in one; ``index`` is
  ``bisect_left(edges, v)``.
- categorical feature (text, bool, category dtype): the :data:`MAX_BINS` most frequent reference values
  (ties by text), sorted, plus one last "other" bin for values the reference did not have.
- missing values (None, NaN, ±inf, or text where a number is expected) get :data:`MISSING`: counted apart
  and excluded from the distributions.

The prediction's bins come from the reference's ``prediction`` column — the version's own answers on its
reference, added by :func:`services.drift.profiles.ensure_profile` — else from its target (a classifier's
classes, a regressor's deciles): prediction drift compares what a version answers live with what it answered on
its reference (a regressor's answers are narrower than its target, so the target alone would flag drift
that is none). The target is also counted on the same bins, for label drift. Pure: numpy and pandas, no I/O.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Any

from services.errors import Invalid

MAX_BINS = 10
MISSING = -1
PREDICTION = "__prediction__"  # the histogram name of the prediction (no feature may be called this)
LABEL = "__label__"  # the histogram name of the ground truth, binned on the prediction's bins
SOURCE = "reference profile"


@dataclass(frozen=True)
class Bins:
    """The fixed bins of one column and the reference's counts on them."""

    column: str
    kind: str  # numeric | categorical
    edges: tuple[float, ...] = ()  # numeric: interior edges, sorted, unique
    categories: tuple[str, ...] = ()  # categorical: known values; one "other" bin follows them
    reference: tuple[int, ...] = ()  # reference rows per bin
    reference_missing: int = 0
    mean: float | None = None  # numeric: the reference's mean and standard deviation (finite values)
    std: float | None = None

    @property
    def size(self) -> int:
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1

    def index(self, value: Any) -> int:
        """The bin of one value, or :data:`MISSING`."""
        if self.kind == "numeric":
            x = number(value)
            return MISSING if x is None else bisect_left(self.edges, x)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        text = category(value)
        try:
            return self.categories.index(text)
        except ValueError:
            return len(self.categories)

    def labels(self) -> list[str]:
        """A readable name per bin, for charts and tables."""
        if self.kind == "categorical":
            return [*self.categories, "(other)"]
        if not self.edges:
            return ["all"]
        fmt = _fmt
        out = [f"≤ {fmt(self.edges[0])}"]
        out += [f"({fmt(a)}, {fmt(b)}]" for a, b in zip(self.edges, self.edges[1:], strict=False)]
        return [*out, f"> {fmt(self.edges[-1])}"]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Bins:
        return cls(column=d["column"], kind=d["kind"], edges=tuple(float(e) for e in d.get("edges", ())),
                   categories=tuple(str(c) for c in d.get("categories", ())),
                   reference=tuple(int(c) for c in d.get("reference", ())),
                   reference_missing=int(d.get("reference_missing", 0)), mean=d.get("mean"), std=d.get("std"))


@dataclass(frozen=True)
class Profile:
    """A version's reference: its columns' fixed bins and its prediction's, and where they came from."""

    model: str
    version: str
    source: str  # e.g. "training data (reference/train.parquet)" or "window … of endpoint …"
    rows: int
    columns: dict[str, Bins] = field(default_factory=dict)  # features, in the reference's column order
    prediction: Bins | None = None
    target: Bins | None = None  # the reference's target on the prediction's bins (what labels compare with)

    def bins(self, name: str) -> Bins | None:
        return self.prediction if name in (PREDICTION, LABEL) else self.columns.get(name)

    def as_dict(self) -> dict:
        return {"model": self.model, "version": self.version, "source": self.source, "rows": self.rows,
                "columns": [b.as_dict() for b in self.columns.values()],
                "prediction": None if self.prediction is None else self.prediction.as_dict(),
                "target": None if self.target is None else self.target.as_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        cols = [Bins.from_dict(c) for c in d.get("columns", [])]
        pred, target = d.get("prediction"), d.get("target")
        return cls(model=d["model"], version=str(d["version"]), source=d.get("source", ""), rows=int(d["rows"]),
                   columns={b.column: b for b in cols}, prediction=None if pred is None else Bins.from_dict(pred),
                   target=None if target is None else Bins.from_dict(target))


# -- building ------------------------------------------------------------------------------------------
def number(value: Any) -> float | None:
    """A finite float, or None (missing): bools and text are not numbers here."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def category(value: Any) -> str:
    """The text a categorical value is counted under (``True`` and ``"True"`` are one category)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def column_bins(name: str, series, *, categorical: bool | None = None) -> Bins:
    """The fixed bins of one reference column and its counts on them."""
    import numpy as np
    import pandas as pd

    if categorical is None:
        categorical = not is_numeric(series)
    if not categorical:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        missing = int(len(values) - len(finite))
        distinct = np.unique(finite)
        if len(distinct) <= MAX_BINS:
            edges = distinct[:-1]
        else:
            edges = np.unique(np.quantile(finite, np.arange(1, MAX_BINS) / MAX_BINS))
        idx = np.searchsorted(edges, finite, side="left")
        counts = np.bincount(idx, minlength=len(edges) + 1)
        return Bins(name, "numeric", edges=tuple(float(e) for e in edges), reference=tuple(int(c) for c in counts),
                    reference_missing=missing, mean=float(finite.mean()) if len(finite) else None,
                    std=float(finite.std(ddof=1)) if len(finite) > 1 else None)
    present = [category(v) for v in series if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    freq: dict[str, int] = {}
    for v in present:
        freq[v] = freq.get(v, 0) + 1
    top = sorted(sorted(freq, key=lambda v: (-freq[v], v))[:MAX_BINS])
    counts = [freq[c] for c in top] + [len(present) - sum(freq[c] for c in top)]
    return Bins(name, "categorical", categories=tuple(top), reference=tuple(counts),
                reference_missing=len(series) - len(present))


def build_profile(model: str, version: str, frame, *, source: str, target: str = "target",
                  prediction: str = "prediction") -> Profile:
    """The profile of a reference frame: every column but the target and prediction is a feature."""
    if frame is None or len(frame) == 0:
        raise Invalid(f"the reference of {model!r} v{version} has no rows: no profile can be built", source=SOURCE)
    for reserved in (PREDICTION, LABEL):
        if reserved in frame.columns:
            raise Invalid(f"a column may not be called {reserved!r}", source=SOURCE)
    features = [c for c in frame.columns if c not in (target, prediction)]
    if not features:
        raise Invalid(f"the reference of {model!r} v{version} has no feature columns", source=SOURCE)
    cols = {str(c): column_bins(str(c), frame[c]) for c in features}
    answer = prediction if prediction in frame.columns else target if target in frame.columns else None
    pred = None if answer is None else column_bins(PREDICTION, frame[answer])
    truth = None if pred is None or target not in frame.columns else rebin(pred, LABEL, frame[target])
    return Profile(model=model, version=str(version), source=source, rows=len(frame), columns=cols,
                   prediction=pred, target=truth)


def rebin(bins: Bins, name: str, series) -> Bins:
    """``bins``' edges or categories with the counts of another column (the target on the answers' bins)."""
    counts = [0] * bins.size
    missing = 0
    for value in series:
        i = bins.index(value)
        if i == MISSING:
            missing += 1
        else:
            counts[i] += 1
    return Bins(name, bins.kind, edges=bins.edges, categories=bins.categories, reference=tuple(counts),
                reference_missing=missing)


def _fmt(x: float) -> str:
    return f"{x:.4g}"
