"""Drift statistics of one column or a whole dataset, reference vs current: pure functions (numpy, scipy,
pandas), no I/O. Prediction drift and label drift are :func:`column_drift` on the prediction or label column.

**Automatic selection** (``method=None`` / ``"auto"``) is Evidently 0.7's (``_get_default_stattest`` in
``evidently/legacy/calculations/stattests/registry.py``), its numbers matched to its source:
* reference ≤ 1000 rows: numeric → KS (> 5 values), chi-square (3–5), Z (≤ 2); categorical → chi-square
  (> 2 values), Z (≤ 2); drift at p < 0.05 (KS: p ≤ 0.05);
* reference > 1000 rows: numeric → normed Wasserstein (> 5 values), Jensen–Shannon (≤ 5); categorical →
  Jensen–Shannon; drift at statistic ≥ 0.1;
* NaN, None and ±inf rows are dropped first and counted (``missing_*``); "rows" are the rows left, "values"
  the distinct values of reference ∪ current.
* KS: ``scipy.stats.ks_2samp`` (two-sided, default method); the only test drifting at ``p <= threshold``.
* chi-square: ``scipy.stats.chisquare`` of the current counts against the reference counts scaled to the
  current size (``n_ref_v * n_cur / n_ref``) over the values of reference ∪ current (a value the reference
  never had: infinite statistic, p = 0). A goodness-of-fit test that takes the reference shares as exact: with
  no drift it alarms more often than 5 % (χ² grows by 1 + n_cur/n_ref: ≈ 26 % at 500 vs 600 rows, 3 values).
* Z: pooled two-proportion z-test (``services.metrics.stats.two_proportion_ztest``) of the share of the first
  sorted value; p = 1 when both sides hold the same single value.
* normed Wasserstein: ``scipy.stats.wasserstein_distance / max(np.std(reference), 0.001)`` (ddof 0).
* Jensen–Shannon: ``scipy.spatial.distance.jensenshannon`` (natural log) of the two sides' shares, no
  smoothing, on equal-width bins (``np.histogram_bin_edges(reference ∪ current, "sturges")``) for a numeric
  column with more than 20 distinct reference values, else one bin per value of reference ∪ current.
* The kind, unless given, is Evidently's ``infer_column_type`` of the current data (of the reference if the
  current has no value): integers with ≤ 10 distinct values, bool, category and text are categorical.

**By name**: any of the above, and ``"psi"`` / ``"hellinger"``, which on raw data use 10 quantile bins of the
reference for a numeric column with more than 10 distinct reference values (inner edges ``np.quantile(reference,
k/10)``, repeated ones merged, the end bins open so values past the reference's range count), else one bin per value.
On counts of fixed bins (:func:`psi`, :func:`jensenshannon`, :func:`hellinger`, :func:`binned_drift`, fed from
the stored per-version bins), with r and c the two sides' shares per bin, drift at ≥ 0.1:
* PSI = Σ (c − r) · ln(c / r); an empty bin's share is set to ε = 1e-4 (``PSI_EPSILON``) on that side, without
  renormalising (Evidently's own choice when no share is below 1e-4);
* JS as above (finite with empty bins, no smoothing);
* Hellinger = sqrt(1 − Σ sqrt(r · c)) (the Bhattacharyya coefficient clipped to [0, 1]).

**Not computable** (``computable=False``, a plain ``reason``, ``statistic``/``p_value``/``drifted`` None; never
an exception or NaN): a column absent from one side, a side without a usable value, text given to KS or
Wasserstein, a statistic undefined for the data (chi-square over one value). A constant column is computable
where the method defines it: the same value on both sides gives KS p = 1, Z p = 1, and distances of 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from services.errors import Invalid
from services.metrics.stats import two_proportion_ztest

SOURCE = "drift"
NUMERIC, CATEGORICAL = "numeric", "categorical"
THRESHOLDS = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1,
              "hellinger": 0.1}
METHODS = ("auto", *THRESHOLDS)
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
SMALL_REFERENCE = 1000  # up to this many reference rows, the p-value tests
FEW_VALUES = 5  # numeric with at most this many distinct values: chi-square / Z, or JS per value
BINARY_VALUES = 2  # at most this many: Z
JS_PER_VALUE = 20  # numeric JS: one bin per value up to this many distinct reference values
INTEGER_CARDINALITY_LIMIT = 10  # integers with at most this many distinct values are categorical
WASSERSTEIN_STD_FLOOR = 0.001
PSI_EPSILON = 1e-4
RAW_BINS = 10
_SAMPLE = 4096  # distinct-value counts are decided on a head sample first when it already exceeds the bound


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift. ``statistic``: KS D, chi-square χ², Z z, or the distance; ``p_value`` for the three
    tests only. ``reference_rows``/``current_rows``: rows used, after the ``missing_*`` ones (NaN, None, ±inf)
    were excluded. ``threshold`` and ``method`` may be None/"auto" when nothing could be selected."""

    column: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    drifted: bool | None
    reference_rows: int
    current_rows: int
    missing_reference: int
    missing_current: int
    computable: bool = True
    reason: str | None = None

    @property
    def score(self) -> float | None:
        """What the threshold is compared with: a test's p-value, else the statistic."""
        return self.p_value if self.method in P_VALUE_METHODS else self.statistic

    def as_dict(self) -> dict:
        """Plain data for JSON; an infinite statistic (chi-square, a value the reference never had) as "inf"."""
        d = asdict(self)
        if self.statistic is not None and math.isinf(self.statistic):
            d["statistic"] = "inf" if self.statistic > 0 else "-inf"
        return d


@dataclass(frozen=True)
class DatasetDrift:
    """The dataset verdict: ``share`` = drifted / computable columns; ``drifted`` when ``share >=
    share_threshold`` (Evidently's comparison); both None when no column is computable."""

    columns: tuple[ColumnDrift, ...]
    share_threshold: float
    computable_columns: int
    drifted_columns: int
    share: float | None
    drifted: bool | None

    def as_dict(self) -> dict:
        return {"columns": [c.as_dict() for c in self.columns], **{k: getattr(self, k) for k in (
            "share_threshold", "computable_columns", "drifted_columns", "share", "drifted")}}


# --------------------------------------------------------------------------- counts of fixed bins
def _counts(reference_counts: Sequence[float], current_counts: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The two sides' counts, checked: over the same bins, finite, not negative."""
    r, c = np.asarray(reference_counts, dtype="float64"), np.asarray(current_counts, dtype="float64")
    if r.ndim != 1 or r.shape != c.shape or r.size == 0:
        raise Invalid(f"reference and current counts must be two lists over the same bins (got {r.size} and "
                      f"{c.size})", source=SOURCE)
    if not (np.isfinite(r).all() and np.isfinite(c).all()) or (r < 0).any() or (c < 0).any():
        raise Invalid("bin counts must be finite and not negative", source=SOURCE)
    return r, c


def _shares(reference_counts: Sequence[float], current_counts: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r, c = _counts(reference_counts, current_counts)
    if r.sum() <= 0 or c.sum() <= 0:
        raise Invalid("a side has no counts in any bin", source=SOURCE)
    return r / r.sum(), c / c.sum()


def psi(reference_counts: Sequence[float], current_counts: Sequence[float], *, epsilon: float = PSI_EPSILON
        ) -> float:
    """Population stability index over fixed bins; an empty bin's share is ``epsilon`` (see the module doc)."""
    r, c = _shares(reference_counts, current_counts)
    r, c = np.where(r == 0, epsilon, r), np.where(c == 0, epsilon, c)
    return float(np.sum((c - r) * np.log(c / r)))


def jensenshannon(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """Jensen–Shannon distance (natural log, no smoothing) of the two sides' shares; in [0, sqrt(ln 2)]."""
    r, c = _shares(reference_counts, current_counts)
    value = float(distance.jensenshannon(r, c))
    return 0.0 if math.isnan(value) else value  # NaN only from rounding below zero at equal shares


def hellinger(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """Hellinger distance sqrt(1 − Σ sqrt(r·c)) of the two sides' shares; in [0, 1]."""
    r, c = _shares(reference_counts, current_counts)
    return math.sqrt(1.0 - float(np.clip(np.sum(np.sqrt(r * c)), 0.0, 1.0)))


_ON_COUNTS = {"psi": psi, "jensenshannon": jensenshannon, "hellinger": hellinger}


def binned_drift(column: str, reference_counts: Sequence[float], current_counts: Sequence[float], *,
                 method: str = "psi", threshold: float | None = None, kind: str = NUMERIC,
                 missing_reference: int = 0, missing_current: int = 0) -> ColumnDrift:
    """PSI, JS or Hellinger of one column from the counts of its fixed bins (a side with no count: not
    computable). Counts over different bins, or negative ones, are refused as :class:`Invalid`."""
    if method not in _ON_COUNTS:
        raise Invalid(f"unknown method on bins {method!r}: use one of {', '.join(_ON_COUNTS)}", source=SOURCE)
    limit = THRESHOLDS[method] if threshold is None else float(threshold)
    r, c = _counts(reference_counts, current_counts)
    n_ref, n_cur = int(round(r.sum())), int(round(c.sum()))
    base = dict(column=str(column), kind=kind, method=method, threshold=limit, reference_rows=n_ref,
                current_rows=n_cur, missing_reference=int(missing_reference), missing_current=int(missing_current))
    if empty := "reference" if n_ref <= 0 else "current" if n_cur <= 0 else None:
        return ColumnDrift(statistic=None, p_value=None, drifted=None, computable=False,
                           reason=f"no {empty} values in the bins", **base)
    return ColumnDrift(statistic=(value := _ON_COUNTS[method](reference_counts, current_counts)), p_value=None,
                       drifted=value >= limit, **base)


# --------------------------------------------------------------------------- raw data
def infer_kind(values: pd.Series) -> str:
    """Evidently 0.7's ``infer_column_type``: numeric or categorical."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return CATEGORICAL if values.nunique() <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    return NUMERIC if _is_number_dtype(values) and not pd.api.types.is_bool_dtype(values.dtype) else CATEGORICAL


def _is_number_dtype(values: pd.Series) -> bool:  # bool counts as a number, as in numpy
    return pd.api.types.is_numeric_dtype(values.dtype) and not isinstance(values.dtype, pd.CategoricalDtype)


def _clean(values: pd.Series, numeric: bool) -> tuple[np.ndarray | pd.Series, int]:
    """The usable values (floats for a numeric column) and how many were missing, NaN or ±inf."""
    if numeric:
        arr = values.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(arr)
        return (arr if finite.all() else arr[finite]), int(arr.size - np.count_nonzero(finite))
    missing = values.isna().to_numpy()
    if _is_number_dtype(values):
        missing = missing | ~np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
    elif values.dtype == object:
        missing = missing | values.isin([np.inf, -np.inf]).to_numpy()
    return values[~missing], int(missing.sum())


class _Sides:
    """The cleaned reference and current values of one column, and their per-value counts when needed."""

    def __init__(self, kind: str, ref, cur):
        self.kind, self.ref, self.cur = kind, ref, cur
        self._counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the distinct values of reference ∪ current, sorted where they can be; reference and current counts)."""
        if self._counts is None:
            both = (np.concatenate([self.ref, self.cur]) if self.kind == NUMERIC
                    else pd.concat([pd.Series(self.ref), pd.Series(self.cur)], ignore_index=True))
            try:
                codes, keys = pd.factorize(both, sort=True)
            except TypeError:  # values of mixed types: any order (only Z needs one, and sorts by text then)
                codes, keys = pd.factorize(both)
                order = np.argsort([f"{type(k).__name__}:{k}" for k in keys], kind="stable")
                codes, keys = np.argsort(order)[codes], np.asarray(keys, dtype=object)[order]
            n = len(self.ref)
            self._counts = (np.asarray(keys), np.bincount(codes[:n], minlength=len(keys)),
                            np.bincount(codes[n:], minlength=len(keys)))
        return self._counts

    def distinct_over(self, limit: int, *, reference_only: bool = False) -> bool:
        """Whether there are more than ``limit`` distinct values (in the reference, or reference ∪ current)."""
        if self.kind != NUMERIC:
            keys, r, _ = self.counts()
            return int(np.count_nonzero(r) if reference_only else len(keys)) > limit
        parts = [self.ref] if reference_only else [self.ref, self.cur]
        if len(pd.unique(np.concatenate([p[:_SAMPLE] for p in parts]))) > limit:
            return True
        return len(pd.unique(np.concatenate(parts))) > limit


def select_method(kind: str, reference_rows: int, many_values: bool, few_values: bool) -> str:
    """Evidently's choice: ``many_values`` = more than 5 distinct values, ``few_values`` = at most 2."""
    if reference_rows <= SMALL_REFERENCE:
        if few_values:
            return "z"
        return "ks" if kind == NUMERIC and many_values else "chisquare"
    return "wasserstein" if kind == NUMERIC and many_values else "jensenshannon"


def _ks(s: _Sides) -> tuple[float, float]:
    res = stats.ks_2samp(s.ref, s.cur)
    return float(res.statistic), float(res.pvalue)


def _wasserstein(s: _Sides) -> tuple[float, None]:
    """Given sorted values (np.sort), scipy's own argsort and merge run in linear time: same value, ~2x faster."""
    distance_ = float(stats.wasserstein_distance(np.sort(s.ref), np.sort(s.cur)))
    return distance_ / max(float(np.std(s.ref)), WASSERSTEIN_STD_FLOOR), None


def _chisquare(s: _Sides) -> tuple[float, float]:
    keys, r, c = s.counts()
    if len(keys) < 2:
        raise _NotComputable("one value only: chi-square needs two or more")
    with np.errstate(divide="ignore", invalid="ignore"):
        res = stats.chisquare(c, r * (len(s.cur) / len(s.ref)))
    return float(res.statistic), float(res.pvalue)


def _z(s: _Sides) -> tuple[float, float]:
    keys, r, c = s.counts()
    res = two_proportion_ztest(len(s.ref) - r[0], len(s.ref), len(s.cur) - c[0], len(s.cur))
    return float(res.statistic), float(res.p_value)


def _jensenshannon(s: _Sides) -> tuple[float, None]:
    if s.kind == NUMERIC and s.distinct_over(JS_PER_VALUE, reference_only=True):
        edges = np.histogram_bin_edges(np.concatenate([s.ref, s.cur]), bins="sturges")
        return jensenshannon(np.histogram(s.ref, edges)[0], np.histogram(s.cur, edges)[0]), None
    _, r, c = s.counts()
    return jensenshannon(r, c), None


def _quantile_counts(s: _Sides) -> tuple[np.ndarray, np.ndarray]:
    if s.kind != NUMERIC or not s.distinct_over(RAW_BINS, reference_only=True):
        return s.counts()[1:]
    inner = np.unique(np.quantile(s.ref, np.linspace(0.0, 1.0, RAW_BINS + 1))[1:-1])
    return tuple(np.bincount(np.searchsorted(inner, x, side="right"), minlength=inner.size + 1)
                 for x in (s.ref, s.cur))


_RAW = {"ks": _ks, "wasserstein": _wasserstein, "chisquare": _chisquare, "z": _z, "jensenshannon": _jensenshannon,
        "psi": lambda s: (psi(*_quantile_counts(s)), None),
        "hellinger": lambda s: (hellinger(*_quantile_counts(s)), None)}


class _NotComputable(Exception):
    pass


def check_method(method: str | None) -> str:
    """``None`` → "auto"; an unknown name is :class:`Invalid`."""
    name = (method or "auto").strip().lower()
    if name not in METHODS:
        raise Invalid(f"unknown drift method {method!r}: use one of {', '.join(METHODS)}", source=SOURCE)
    return name


def column_drift(reference: pd.Series, current: pd.Series, *, method: str | None = None,
                 categorical: bool | None = None, threshold: float | None = None, column: str | None = None
                 ) -> ColumnDrift:
    """Drift of one column (see the module doc). ``categorical`` None infers the kind; ``threshold`` None is the
    method's default; ``column`` names the result (default: the series' name)."""
    chosen = check_method(method)
    name = next((str(n) for n in (column, reference.name, current.name) if n is not None), "value")
    kind = (infer_kind(current if current.notna().any() else reference) if categorical is None
            else CATEGORICAL if categorical else NUMERIC)
    numeric = kind == NUMERIC and _is_number_dtype(reference) and _is_number_dtype(current)
    ref, missing_ref = _clean(reference, numeric)
    cur, missing_cur = _clean(current, numeric)
    base = dict(column=name, kind=kind, reference_rows=len(ref), current_rows=len(cur),
                missing_reference=missing_ref, missing_current=missing_cur)

    def refuse(reason: str, method_name: str = chosen) -> ColumnDrift:
        limit = None if method_name == "auto" else THRESHOLDS[method_name] if threshold is None else float(threshold)
        return ColumnDrift(method=method_name, statistic=None, p_value=None, threshold=limit, drifted=None,
                           computable=False, reason=reason, **base)

    if kind == NUMERIC and not numeric:
        return refuse("the values are not numbers (give the column as categorical)")
    for side, values, miss in (("reference", ref, missing_ref), ("current", cur, missing_cur)):
        if len(values) == 0:
            return refuse(f"no {side} value" + (f" ({miss} missing or infinite)" if miss else ""))
    sides = _Sides(kind, ref, cur)
    if chosen == "auto":
        chosen = select_method(kind, len(ref), sides.distinct_over(FEW_VALUES),
                               not sides.distinct_over(BINARY_VALUES))
    if chosen in ("ks", "wasserstein") and kind != NUMERIC:
        return refuse(f"{chosen} needs numbers; the column is categorical", chosen)
    try:
        statistic, p_value = _RAW[chosen](sides)
    except _NotComputable as exc:
        return refuse(str(exc), chosen)
    limit = THRESHOLDS[chosen] if threshold is None else float(threshold)
    score = p_value if chosen in P_VALUE_METHODS else statistic
    if score is None or math.isnan(score) or math.isnan(statistic):
        return refuse(f"{chosen} is undefined for these values", chosen)
    drifted = (score <= limit if chosen == "ks" else score < limit) if chosen in P_VALUE_METHODS else score >= limit
    return ColumnDrift(method=chosen, statistic=statistic, p_value=p_value, threshold=limit, drifted=bool(drifted),
                       **base)


def dataset_verdict(results: Iterable[ColumnDrift], share_threshold: float = 0.5) -> DatasetDrift:
    """Share of drifted columns among the computable ones against ``share_threshold`` (in (0, 1])."""
    if not 0 < share_threshold <= 1:
        raise Invalid(f"the drift share threshold must lie in (0, 1], not {share_threshold}", source=SOURCE)
    results = tuple(results)
    usable = [r for r in results if r.computable]
    drifted = sum(1 for r in usable if r.drifted)
    share = drifted / len(usable) if usable else None
    return DatasetDrift(results, float(share_threshold), len(usable), drifted, share,
                        None if share is None else share >= share_threshold)


def dataset_drift(reference: pd.DataFrame, current: pd.DataFrame, *, columns: Iterable[str] | None = None,
                  methods: Mapping[str, str] | None = None, share_threshold: float = 0.5,
                  kinds: Mapping[str, str] | None = None, thresholds: Mapping[str, float] | None = None,
                  workers: int | None = None) -> DatasetDrift:
    """Every column's drift and the dataset verdict. ``columns`` default: all of either side (reference order
    first), one absent from a side being not computable. ``methods``/``kinds``/``thresholds`` per column name
    (method names as :data:`METHODS`, kinds "numeric"/"categorical"; missing entries: auto, inferred, default).
    Columns are computed on ``workers`` threads (default: one per CPU, at most 8; numpy's sorts release the GIL);
    the results do not depend on it."""
    methods = {name: check_method(m) for name, m in (methods or {}).items()}
    kinds, thresholds = dict(kinds or {}), dict(thresholds or {})
    for name, k in kinds.items():
        if k not in (NUMERIC, CATEGORICAL):
            raise Invalid(f"unknown kind {k!r} for {name}: use numeric or categorical", source=SOURCE)
    names = list(columns) if columns is not None else list(dict.fromkeys([*reference.columns, *current.columns]))

    def one(name) -> ColumnDrift:
        method, kind, limit = methods.get(name, "auto"), kinds.get(name), thresholds.get(name)
        if name in reference.columns and name in current.columns:
            return column_drift(reference[name], current[name], method=method, threshold=limit, column=str(name),
                                categorical=None if kind is None else kind == CATEGORICAL)
        absent = [side for side, df in (("reference", reference), ("current", current)) if name not in df.columns]
        present = next((df for df in (current, reference) if name in df.columns), None)
        rows = {side: 0 if side in absent or present is None else len(present) for side in ("reference", "current")}
        return ColumnDrift(str(name), kind or (NUMERIC if present is None else infer_kind(present[name])), method,
                           None, None, THRESHOLDS.get(method) if limit is None else limit, None, rows["reference"],
                           rows["current"], 0, 0, False, f"not in the {' or '.join(absent)} data")

    with ThreadPoolExecutor(max_workers=max(1, workers or min(8, os.cpu_count() or 1, len(names) or 1))) as pool:
        return dataset_verdict(pool.map(one, names), share_threshold)
