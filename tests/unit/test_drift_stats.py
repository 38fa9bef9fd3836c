"""Drift statistics: equal to scipy on known cases, Evidently's selection rules at their boundaries, missing,
infinite, constant and empty inputs, and the statistical behaviour (false alarms, power) over many seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from services.drift.stats import (
    METHODS,
    PSI_EPSILON,
    binned_drift,
    column_drift,
    dataset_drift,
    dataset_verdict,
    hellinger,
    infer_kind,
    jensenshannon,
    psi,
)
from services.errors import Invalid


def normal(seed: int, n: int, loc: float = 0.0, scale: float = 1.0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).normal(loc, scale, n))


def choice(seed: int, n: int, values, p=None) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).choice(np.asarray(list(values), dtype=object), n, p=p))


def assert_no_nan(res) -> None:
    for field in ("statistic", "p_value", "threshold"):
        value = getattr(res, field)
        assert value is None or not math.isnan(value), (field, res)
    if not res.computable:
        assert res.statistic is None and res.p_value is None and res.drifted is None and res.reason


# --------------------------------------------------------------------------- equal to scipy on known cases
def test_ks_is_scipys_two_sample_test():
    ref, cur = normal(1, 400), normal(2, 700, loc=0.2)
    res = column_drift(ref, cur)
    expected = stats.ks_2samp(ref.to_numpy(), cur.to_numpy())
    assert res.method == "ks" and res.kind == "numeric"
    assert res.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert res.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert res.drifted is bool(expected.pvalue <= 0.05)


def test_chisquare_uses_reference_shares_scaled_to_the_current_size():
    ref = choice(3, 600, ["a", "b", "c"], p=[0.5, 0.3, 0.2])
    cur = choice(4, 900, ["a", "b", "c"], p=[0.4, 0.35, 0.25])
    res = column_drift(ref, cur)
    keys = ["a", "b", "c"]
    observed = [int((cur == k).sum()) for k in keys]
    expected = [int((ref == k).sum()) / len(ref) * len(cur) for k in keys]
    want = stats.chisquare(observed, expected)
    assert res.method == "chisquare" and res.kind == "categorical"
    assert res.statistic == pytest.approx(want.statistic, rel=1e-9)
    assert res.p_value == pytest.approx(want.pvalue, rel=1e-9)
    assert res.drifted is bool(want.pvalue < 0.05)


def test_chisquare_with_a_value_the_reference_never_had_is_infinite_and_drifted():
    ref = choice(5, 500, ["a", "b", "c"])
    cur = pd.concat([choice(6, 500, ["a", "b", "c"]), pd.Series(["d"])], ignore_index=True)
    res = column_drift(ref, cur)
    assert res.method == "chisquare" and math.isinf(res.statistic) and res.p_value == 0.0 and res.drifted
    assert res.as_dict()["statistic"] == "inf"


def test_z_test_compares_the_share_of_the_first_sorted_value():
    ref = choice(7, 500, ["yes", "no"], p=[0.3, 0.7])
    cur = choice(8, 800, ["yes", "no"], p=[0.45, 0.55])
    res = column_drift(ref, cur)
    p1, p2 = float((ref == "no").mean()), float((cur == "no").mean())  # "no" sorts first
    pooled = (p1 * len(ref) + p2 * len(cur)) / (len(ref) + len(cur))
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / len(ref) + 1 / len(cur)))
    assert res.method == "z"
    assert abs(res.statistic) == pytest.approx(abs(z), rel=1e-9)
    assert res.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert res.drifted


def test_normed_wasserstein_divides_by_the_population_std_of_the_reference():
    ref, cur = normal(9, 5000, scale=2.0), normal(10, 8000, loc=0.3, scale=2.0)
    res = column_drift(ref, cur)
    r = ref.to_numpy()
    want = stats.wasserstein_distance(r, cur.to_numpy()) / r.std(ddof=0)
    assert res.method == "wasserstein" and res.p_value is None and res.threshold == 0.1
    assert res.statistic == pytest.approx(want, rel=1e-12)
    assert res.statistic != pytest.approx(want * r.std(ddof=0) / r.std(ddof=1), rel=1e-6)


def test_normed_wasserstein_floors_the_std_at_0_001():
    ref = pd.Series([5.0] * 3000)  # std 0
    cur = pd.Series(np.r_[np.full(3000, 5.0), np.linspace(5.0, 6.0, 3000)])
    res = column_drift(ref, cur, method="wasserstein")
    assert res.statistic == pytest.approx(stats.wasserstein_distance(ref, cur) / 0.001, rel=1e-12)


def test_jensenshannon_on_categories_is_scipys_with_the_natural_log():
    ref = choice(11, 3000, list("abcd"), p=[0.4, 0.3, 0.2, 0.1])
    cur = choice(12, 2000, list("abcde"), p=[0.3, 0.3, 0.2, 0.1, 0.1])
    res = column_drift(ref, cur)
    keys = list("abcde")
    p = [float((ref == k).mean()) for k in keys]
    q = [float((cur == k).mean()) for k in keys]
    assert res.method == "jensenshannon"
    assert res.statistic == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    assert res.statistic != pytest.approx(distance.jensenshannon(p, q, base=2), rel=1e-3)


def test_jensenshannon_on_numbers_uses_sturges_bins_over_both_sides_without_smoothing():
    ref, cur = normal(13, 3000), normal(14, 4000, loc=1.5)
    res = column_drift(ref, cur, method="jensenshannon")
    edges = np.histogram_bin_edges(np.r_[ref.to_numpy(), cur.to_numpy()], bins="sturges")
    p = np.histogram(ref, edges)[0] / len(ref)
    q = np.histogram(cur, edges)[0] / len(cur)
    assert (p == 0).any() or (q == 0).any()  # empty bins: no smoothing must matter here
    assert res.statistic == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)


def test_numeric_jensenshannon_takes_one_bin_per_value_up_to_20_reference_values():
    ref = pd.Series(np.random.default_rng(15).integers(0, 20, 3000).astype(float))
    cur = pd.Series(np.random.default_rng(16).integers(0, 21, 3000).astype(float))
    res = column_drift(ref, cur, method="jensenshannon", categorical=False)
    keys = np.arange(21.0)
    p = [float((ref == k).mean()) for k in keys]
    q = [float((cur == k).mean()) for k in keys]
    assert res.statistic == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)


# --------------------------------------------------------------------------- selection at its boundaries
@pytest.mark.parametrize(("rows", "numeric", "categorical"), [(1000, "ks", "chisquare"),
                                                              (1001, "wasserstein", "jensenshannon")])
def test_1000_reference_rows_are_small_1001_are_large(rows, numeric, categorical):
    assert column_drift(normal(17, rows), normal(18, 2000)).method == numeric
    assert column_drift(choice(19, rows, list("abc")), choice(20, 2000, list("abc"))).method == categorical


def test_reference_rows_are_counted_after_dropping_missing_ones():
    ref = normal(21, 1001)
    ref[5] = np.nan
    res = column_drift(ref, normal(22, 2000))
    assert (res.method, res.reference_rows, res.missing_reference) == ("ks", 1000, 1)


@pytest.mark.parametrize(("values", "small", "large"), [(2, "z", "jensenshannon"), (3, "chisquare", "jensenshannon"),
                                                        (5, "chisquare", "jensenshannon"), (6, "ks", "wasserstein")])
def test_distinct_values_of_a_numeric_column_choose_the_method(values, small, large):
    for rows, want in ((800, small), (3000, large)):
        ref = pd.Series(np.arange(rows, dtype=float) % values)
        cur = pd.Series(np.arange(900, dtype=float) % values)
        assert column_drift(ref, cur).method == want, (values, rows)


def test_distinct_values_are_counted_over_reference_and_current():
    ref = pd.Series(np.arange(800, dtype=float) % 2)  # two values ...
    cur = pd.Series(np.arange(900, dtype=float) % 3)  # ... and a third one in the current data only
    assert column_drift(ref, cur).method == "chisquare"
    ref5, cur6 = pd.Series(np.arange(800, dtype=float) % 5), pd.Series(np.arange(900, dtype=float) % 6)
    assert column_drift(ref5, cur6).method == "ks"
    assert column_drift(pd.Series(["a"] * 800), pd.Series(["a", "b"] * 400)).method == "z"


def test_kind_inference_follows_evidently():
    assert infer_kind(pd.Series([1.5, 2.5])) == "numeric"
    assert infer_kind(pd.Series(np.arange(10))) == "categorical"
    assert infer_kind(pd.Series(np.arange(11))) == "numeric"
    assert infer_kind(pd.Series(["a", "b"])) == "categorical"
    assert infer_kind(pd.Series([True, False])) == "categorical"
    assert infer_kind(pd.Series(["x", "y"], dtype="category")) == "categorical"


# --------------------------------------------------------------------------- missing, infinite, constant, empty
def test_nan_and_inf_are_counted_then_excluded():
    ref, cur = normal(23, 600), normal(24, 700, loc=0.1)
    dirty_ref = pd.concat([ref, pd.Series([np.nan, np.inf, -np.inf])], ignore_index=True)
    dirty_cur = pd.concat([pd.Series([np.nan, None], dtype=float), cur], ignore_index=True)
    clean, dirty = column_drift(ref, cur), column_drift(dirty_ref, dirty_cur)
    assert (dirty.missing_reference, dirty.missing_current) == (3, 2)
    assert (dirty.reference_rows, dirty.current_rows) == (600, 700)
    assert (dirty.statistic, dirty.p_value, dirty.method) == (clean.statistic, clean.p_value, clean.method)


def test_missing_categories_are_excluded_too():
    res = column_drift(pd.Series(["a", None, "b", np.nan] * 200), pd.Series(["a", "b", None] * 300))
    assert (res.missing_reference, res.missing_current, res.reference_rows, res.current_rows) == (400, 300, 400, 600)
    assert res.method == "z" and res.computable


@pytest.mark.parametrize("method", METHODS)
def test_a_constant_column_on_both_sides_never_gives_nan(method):
    for rows in (500, 5000):
        res = column_drift(pd.Series([3.0] * rows), pd.Series([3.0] * 700), method=method)
        assert_no_nan(res)
        if res.computable:
            assert res.drifted is False, res
        else:
            assert method == "chisquare" and "one value" in res.reason


def test_constant_sides_that_differ_drift():
    for method in ("auto", "ks", "z", "wasserstein", "jensenshannon", "psi", "hellinger"):
        res = column_drift(pd.Series([1.0] * 500), pd.Series([2.0] * 500), method=method)
        assert res.computable and res.drifted, res


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("side", ["reference", "current"])
def test_an_empty_side_is_not_computable(method, side):
    full, empty = normal(25, 300), pd.Series([np.nan, np.inf], dtype=float)
    ref, cur = (empty, full) if side == "reference" else (full, empty)
    res = column_drift(ref, cur, method=method)
    assert not res.computable and side in res.reason and "2 missing" in res.reason
    assert_no_nan(res)
    res = column_drift(pd.Series([], dtype=float), full) if side == "reference" else column_drift(
        full, pd.Series([], dtype=float))
    assert not res.computable and res.drifted is None


def test_methods_that_need_numbers_refuse_text_plainly():
    ref, cur = choice(26, 300, list("ab")), choice(27, 300, list("ab"))
    for method in ("ks", "wasserstein"):
        res = column_drift(ref, cur, method=method)
        assert not res.computable and "categorical" in res.reason
    res = column_drift(ref, cur, categorical=False)
    assert not res.computable and "not numbers" in res.reason


def test_an_unknown_method_is_invalid():
    with pytest.raises(Invalid, match="unknown drift method"):
        column_drift(normal(1, 10), normal(2, 10), method="kl")
    with pytest.raises(Invalid, match="unknown drift method"):
        dataset_drift(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0]}), methods={"a": "nope"})


# --------------------------------------------------------------------------- fixed bins
def test_psi_on_counts_matches_its_formula_and_smooths_empty_bins_with_epsilon():
    r, c = [50, 30, 20, 0], [25, 35, 20, 20]
    pr, pc = [0.5, 0.3, 0.2, PSI_EPSILON], [0.25, 0.35, 0.2, 0.2]
    want = sum((b - a) * math.log(b / a) for a, b in zip(pr, pc, strict=True))
    assert psi(r, c) == pytest.approx(want, rel=1e-12)
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)  # the same shares


def test_jensenshannon_and_hellinger_on_counts():
    r, c = np.array([40, 30, 20, 10, 0]), np.array([10, 20, 30, 25, 15])
    p, q = r / r.sum(), c / c.sum()
    assert jensenshannon(r, c) == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    assert hellinger(r, c) == pytest.approx(np.linalg.norm(np.sqrt(p) - np.sqrt(q)) / math.sqrt(2), rel=1e-9)
    assert hellinger([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensenshannon([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))


def test_binned_drift_refuses_mismatched_bins_and_reports_empty_sides():
    with pytest.raises(Invalid, match="same bins"):
        binned_drift("f", [1, 2, 3], [1, 2])
    with pytest.raises(Invalid, match="not negative"):
        binned_drift("f", [1, -2], [1, 2])
    with pytest.raises(Invalid, match="unknown method"):
        binned_drift("f", [1, 2], [1, 2], method="ks")
    res = binned_drift("f", [5, 5], [0, 0], method="hellinger", missing_current=4)
    assert not res.computable and "current" in res.reason and res.missing_current == 4
    res = binned_drift("f", [90, 10], [50, 50], method="jensenshannon")
    assert res.computable and res.drifted and res.reference_rows == 100 and res.threshold == 0.1


def test_psi_on_raw_numbers_uses_ten_quantile_bins_of_the_reference_with_open_ends():
    ref, cur = normal(28, 5000), normal(29, 5000, loc=0.2)
    inner = np.quantile(ref, np.linspace(0, 1, 11))[1:-1]
    r = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=10)
    c = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=10)
    assert column_drift(ref, cur, method="psi").statistic == pytest.approx(psi(r, c), rel=1e-12)
    assert column_drift(ref, cur, method="hellinger").statistic == pytest.approx(hellinger(r, c), rel=1e-12)
    beyond = column_drift(ref, pd.Series(ref.max() + 1 + np.arange(100.0)), method="psi")
    assert beyond.drifted and beyond.statistic > 1  # values past the reference's maximum land in the last bin


# --------------------------------------------------------------------------- dataset verdict
def test_dataset_drift_share_is_taken_among_computable_columns():
    ref = pd.DataFrame({"a": normal(30, 3000), "b": normal(31, 3000), "gone": normal(32, 3000)})
    cur = pd.DataFrame({"a": normal(33, 3000, loc=1.0), "b": normal(34, 3000), "new": normal(35, 3000)})
    res = dataset_drift(ref, cur)
    by = {c.column: c for c in res.columns}
    assert [c.column for c in res.columns] == ["a", "b", "gone", "new"]
    assert by["a"].drifted and not by["b"].drifted
    assert "current" in by["gone"].reason and "reference" in by["new"].reason
    assert (res.computable_columns, res.drifted_columns, res.share, res.drifted) == (2, 1, 0.5, True)
    assert dataset_drift(ref, cur, share_threshold=0.51).drifted is False
    assert dataset_drift(ref, cur, columns=["b"]).drifted is False


def test_dataset_drift_does_not_depend_on_threads_and_takes_methods_kinds_thresholds():
    ref = pd.DataFrame({"a": normal(36, 3000), "k": np.arange(3000) % 4})
    cur = pd.DataFrame({"a": normal(37, 3000, loc=0.05), "k": np.arange(3000) % 4})
    assert dataset_drift(ref, cur, workers=1) == dataset_drift(ref, cur, workers=4)
    res = dataset_drift(ref, cur, methods={"a": "ks"}, kinds={"k": "numeric"}, thresholds={"a": 0.5})
    a, k = res.columns
    assert (a.method, a.threshold, k.kind, k.method) == ("ks", 0.5, "numeric", "jensenshannon")
    with pytest.raises(Invalid, match="kind"):
        dataset_drift(ref, cur, kinds={"a": "text"})


def test_verdict_without_computable_columns_is_none_and_the_threshold_is_checked():
    empty = column_drift(pd.Series([], dtype=float), normal(1, 10))
    verdict = dataset_verdict([empty])
    assert (verdict.share, verdict.drifted, verdict.computable_columns) == (None, None, 0)
    with pytest.raises(Invalid):
        dataset_verdict([empty], share_threshold=0)


# --------------------------------------------------------------------------- statistical behaviour
def test_ks_false_alarm_rate_under_no_drift_is_near_5_percent():
    runs = 400
    alarms = sum(column_drift(normal(1000 + s, 300), normal(5000 + s, 400)).drifted for s in range(runs))
    low, high = stats.binom.interval(0.999, runs, 0.05)
    assert low <= alarms <= high, alarms


def test_a_half_sd_shift_is_detected():
    small = [column_drift(normal(s, 300), normal(100 + s, 400, loc=0.5)) for s in range(50)]
    assert all(r.method == "ks" and r.drifted for r in small)
    large = [column_drift(normal(s, 5000), normal(100 + s, 20000, loc=0.5)) for s in range(20)]
    assert all(r.method == "wasserstein" and r.drifted for r in large)
    steady = [column_drift(normal(s, 5000), normal(100 + s, 20000)) for s in range(20)]
    assert not any(r.drifted for r in steady)


@pytest.mark.parametrize(("n_ref", "n_cur"), [(500, 600), (1000, 100)])
def test_chisquare_takes_the_reference_shares_as_exact_so_false_alarms_exceed_5_percent(n_ref, n_cur):
    """Evidently's chi-square is a goodness-of-fit test against the reference shares: with no drift its statistic
    is ≈ (1 + n_cur/n_ref) · χ²(k − 1), so it alarms more often than 5 % unless the reference is much larger."""
    runs, p = 400, [0.5, 0.3, 0.2]
    alarms = sum(column_drift(choice(s, n_ref, "abc", p), choice(9000 + s, n_cur, "abc", p)).drifted
                 for s in range(runs))
    rate = stats.chi2.sf(stats.chi2.ppf(0.95, 2) / (1 + n_cur / n_ref), 2)
    low, high = stats.binom.interval(0.999, runs, rate)
    assert low <= alarms <= high, (alarms, rate)


def test_z_test_false_alarm_rate_under_no_drift_is_near_5_percent():
    runs = 400
    alarms = sum(column_drift(choice(s, 500, "ab", [0.3, 0.7]), choice(7000 + s, 600, "ab", [0.3, 0.7])).drifted
                 for s in range(runs))
    low, high = stats.binom.interval(0.999, runs, 0.05)
    assert low <= alarms <= high, alarms
