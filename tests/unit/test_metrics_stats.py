"""The pure maths of live metrics against scipy on known cases, and the metrics port on hand-made rollups."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from services.history.serving import ServedState
from services.metrics import MetricsSource, default_step, minutes_at_weight, significance
from services.metrics.sql import SqlMetricsSource
from services.metrics.stats import (
    Aggregate,
    bucket_midpoints,
    histogram_quantile,
    mann_whitney_histograms,
    merge,
    min_detectable_difference,
    two_proportion_ztest,
)
from services.predictions import LATENCY_BUCKETS_MS, Rollup

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def hist(**by_bound) -> tuple[int, ...]:
    """Counts per LATENCY_BUCKETS_MS bucket from {"b10": 3, ...} (bucket with upper bound 10 ms)."""
    return tuple(by_bound.get(f"b{b if not math.isinf(b) else 'inf'}", 0) for b in LATENCY_BUCKETS_MS)


def rollup(minute: int, version: str, role: str, count: int, errors: int, buckets, **kw) -> Rollup:
    return Rollup(minute=T0 + timedelta(minutes=minute), endpoint="ep", version=version, role=role, count=count,
                  errors=errors, latency_sum_ms=kw.pop("latency_sum_ms", 0.0), latency_buckets=buckets, **kw)


# -- histogram quantiles ---------------------------------------------------------------------------------------
def test_quantile_interpolates_linearly_inside_the_bucket():
    bounds, counts = (10, 20, 50, math.inf), (10, 10, 0, 0)
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(10.0)
    assert histogram_quantile(0.75, bounds, counts) == pytest.approx(15.0)  # halfway into (10, 20]
    assert histogram_quantile(0.25, bounds, counts) == pytest.approx(5.0)  # first bucket starts at 0
    assert histogram_quantile(1.0, bounds, counts) == pytest.approx(20.0)
    assert histogram_quantile(0.99, (10, math.inf), (1, 99)) == 10.0, "open last bucket: its lower edge"
    assert histogram_quantile(0.5, bounds, (0, 0, 0, 0)) is None


def test_quantile_of_uniform_data_is_close_to_numpy():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1000, 20000)
    counts = np.histogram(x, bins=[0, *LATENCY_BUCKETS_MS[:-1], 1e9])[0]
    for q in (0.5, 0.95, 0.99):
        assert histogram_quantile(q, LATENCY_BUCKETS_MS, counts) == pytest.approx(np.quantile(x, q), rel=0.02)


# -- two-proportion z-test ------------------------------------------------------------------------------------
def test_two_proportion_z_matches_the_chi_square_test_without_correction():
    res = two_proportion_ztest(30, 1000, 15, 1000)
    chi2, p, _, _ = stats.chi2_contingency([[30, 970], [15, 985]], correction=False)
    assert res.statistic == pytest.approx(math.sqrt(chi2)) and res.p_value == pytest.approx(p)
    assert res.statistic > 0, "the first group has more errors"
    assert res.p_value == pytest.approx(0.0237, abs=1e-4)  # z = 0.015 / 0.006633 = 2.262


def test_two_proportion_degenerate_cases():
    assert two_proportion_ztest(0, 100, 0, 100).p_value == 1.0
    assert two_proportion_ztest(1, 0, 0, 100) is None


# -- Mann–Whitney U from histograms ------------------------------------------------------------------------------
def test_mann_whitney_from_histograms_equals_scipy_on_expanded_midpoints():
    a = hist(b5=10, b10=30, b20=40, b50=15, b100=5)
    b = hist(b5=20, b10=40, b20=30, b50=8, b100=1, binf=1)
    mids = bucket_midpoints(LATENCY_BUCKETS_MS)
    xa, xb = np.repeat(mids, a), np.repeat(mids, b)
    ref = stats.mannwhitneyu(xa, xb, alternative="two-sided", method="asymptotic", use_continuity=True)
    res = mann_whitney_histograms(a, b)
    assert res.statistic == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    assert res.p_value < 0.05 and res.statistic > len(xa) * len(xb) / 2, "a is slower"


def test_mann_whitney_same_distribution_is_not_significant():
    a = hist(b10=50, b20=50)
    res = mann_whitney_histograms(a, a)
    assert res.p_value == pytest.approx(1.0) and mann_whitney_histograms(a, hist()) is None


# -- smallest detectable difference --------------------------------------------------------------------------
@pytest.mark.parametrize("p0,n", [(0.01, 5000), (0.05, 1000), (0.2, 200), (0.0, 3000)])
def test_min_detectable_difference_solves_the_power_formula(p0, n):
    d = min_detectable_difference(p0, n, n)
    p1 = p0 + d
    pbar = (p0 + p1) / 2
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    # the classic sample size per group for detecting p0 → p1 at α = 0.05 (two-sided), power 0.8
    n_needed = (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p0 * (1 - p0))) ** 2 / d**2
    assert n_needed == pytest.approx(n, rel=1e-6)


def test_min_detectable_difference_shrinks_with_samples():
    small, large = min_detectable_difference(0.02, 500, 2000), min_detectable_difference(0.02, 5000, 20000)
    assert small > large > 0
    assert min_detectable_difference(0.02, 0, 100) is None


# -- merging and the port on hand-made rollups ------------------------------------------------------------------
def test_merge_sums_per_version_and_role():
    rs = [rollup(0, "2", "stable", 10, 1, hist(b10=10), latency_sum_ms=50.0),
          rollup(1, "2", "stable", 5, 0, hist(b20=5), latency_sum_ms=60.0, labelled=4, correct=3),
          rollup(1, "4", "canary", 3, 2, hist(b50=3))]
    m = merge(rs)
    s = m[("2", "stable")]
    assert (s.count, s.errors, s.latency_sum_ms, s.labelled, s.correct) == (15, 1, 110.0, 4, 3)
    assert s.buckets == hist(b10=10, b20=5) and s.accuracy == 0.75 and s.mae is None
    assert m[("4", "canary")].error_rate == pytest.approx(2 / 3)
    reg = Aggregate("1", "stable", count=4, labelled=4, abs_error_sum=8.0, sq_error_sum=20.0)
    assert (reg.quality_kind, reg.accuracy, reg.mae, reg.rmse) == ("regression", None, 2.0, pytest.approx(5**0.5))


class _Log:
    def __init__(self, rollups):
        self.rs = rollups
        self.asked = []

    def rollups(self, endpoint, start, end):
        self.asked.append((endpoint, start, end))
        return [r for r in self.rs if start <= r.minute < end]


class _History:
    def __init__(self, changes):
        self.items = changes

    def changes(self, endpoint, start=None, end=None):
        return list(self.items)


def test_source_summary_series_and_tests_on_rollups():
    rs = []
    for m in range(10):
        rs.append(rollup(m, "1", "stable", 100, 1, hist(b10=80, b20=20)))
        rs.append(rollup(m, "2", "canary", 25, 3, hist(b20=20, b50=5)))
    src = SqlMetricsSource(_Log(rs), clock=lambda: T0 + timedelta(minutes=10))
    summary = src.summary("ep", T0, T0 + timedelta(minutes=10))
    assert [(s.version, s.role, s.requests, s.errors) for s in summary] == [("1", "stable", 1000, 10),
                                                                           ("2", "canary", 250, 30)]
    assert summary[0].latency_p50_ms == pytest.approx(5 + 5 * 500 / 800)
    assert summary[1].latency_p95_ms == pytest.approx(20 + 30 * (237.5 - 200) / 50)
    series = src.series("ep", T0, T0 + timedelta(minutes=10), timedelta(minutes=5))
    assert [(p.at, p.stats.version, p.stats.requests) for p in series] == [
        (T0, "1", 500), (T0, "2", 125), (T0 + timedelta(minutes=5), "1", 500), (T0 + timedelta(minutes=5), "2", 125)]
    assert series[0].request_rate == pytest.approx(500 / 300)
    err, lat = src.significance("ep", T0, T0 + timedelta(minutes=10))
    ref = two_proportion_ztest(30, 250, 10, 1000)
    assert (err.candidate, err.baseline, err.p_value) == ("2", "1", pytest.approx(ref.p_value))
    assert err.significant and err.min_detectable_diff == pytest.approx(min_detectable_difference(0.01, 250, 1000))
    assert lat.significant and lat.test.startswith("Mann–Whitney")


def test_current_reads_the_window_at_the_current_weight():
    rs = [rollup(m, "2", "canary", 10, 1 if m >= 30 else 0, hist(b100=10)) for m in range(60)]
    history = _History([ServedState("ep", T0 - timedelta(days=1), "1"),
                        ServedState("ep", T0, "1", "2", 10),
                        ServedState("ep", T0 + timedelta(minutes=30), "1", "2", 50)])
    src = SqlMetricsSource(_Log(rs), history=history, clock=lambda: T0 + timedelta(minutes=60),
                           window=timedelta(hours=2))
    assert src.current("ep", "2", "minutes_at_weight") == pytest.approx(30)
    assert src.current("ep", "2", "requests") == 300, "only the 30 minutes at 50 %"
    assert src.current("ep", "2", "error_rate") == pytest.approx(0.1)
    assert src.current("ep", "2", "p95_latency_ms") == pytest.approx(50 + 50 * 0.95)
    assert src.current("ep", "9", "requests") == 0 and src.current("ep", "9", "error_rate") is None
    assert src.current("ep", "1", "minutes_at_weight") == pytest.approx(30), "stable's share changed too"


def test_minutes_at_weight_without_history_or_traffic():
    assert minutes_at_weight([], "2", T0) is None
    assert minutes_at_weight([ServedState("ep", T0, "1")], "2", T0) is None, "v2 serves nothing"


def test_significance_needs_both_sides_and_default_step():
    a = Aggregate("2", "canary", count=10, errors=1, buckets=hist(b10=10))
    assert [s.metric for s in significance(a, Aggregate("1", "stable", count=10, buckets=hist(b10=10)))] == [
        "error_rate", "latency"]
    assert default_step(T0, T0 + timedelta(days=7)) == timedelta(minutes=84)
    assert default_step(T0, T0 + timedelta(minutes=5)) == timedelta(minutes=1)
    assert issubclass(SqlMetricsSource, MetricsSource)


# -- live gates: the policy's rules (pure) and the planner reading a real metrics source ----------------------
def test_live_gate_compare_with_stable_tolerance_and_significance():
    from services.policy import LiveEvidence, LiveGate, evaluate_live

    both = LiveGate("error_rate", compare="stable", max_increase=0.01, alpha=0.05, min_samples=100)
    tol = LiveGate("error_rate", compare="stable", max_increase=0.01)
    sig = LiveGate("error_rate", compare="stable", alpha=0.05)
    worse_sig = LiveEvidence(0.05, baseline=0.01, p_value=0.001, samples=500)
    worse_noise = LiveEvidence(0.05, baseline=0.01, p_value=0.2, samples=500)
    slightly = LiveEvidence(0.015, baseline=0.01, p_value=0.01, samples=5000)
    assert [r.passed for r in evaluate_live((both, tol, sig), {"error_rate": worse_sig})] == [False, False, False]
    assert [r.passed for r in evaluate_live((both, tol, sig), {"error_rate": worse_noise})] == [True, False, True]
    assert [r.passed for r in evaluate_live((both, tol, sig), {"error_rate": slightly})] == [True, True, False]
    res = evaluate_live((both,), {"error_rate": worse_sig})[0]
    assert (res.candidate, res.baseline, res.threshold) == (0.05, 0.01, pytest.approx(0.02))
    assert "vs stable" in res.name and "p = 0.001" in res.detail
    better = LiveEvidence(0.001, baseline=0.01, p_value=0.0001, samples=500)
    assert evaluate_live((sig,), {"error_rate": better})[0].passed, "significantly better is not a failure"


def test_live_gate_samples_missing_and_floors():
    from services.policy import LiveEvidence, LiveGate, evaluate_live

    gates = (LiveGate("p95_latency_ms", 300, min_samples=100), LiveGate("minutes_at_weight", min_value=30),
             LiveGate("error_rate", compare="stable", max_increase=0.01, on_missing="pass"))
    few = evaluate_live(gates, {"p95_latency_ms": LiveEvidence(120, samples=40), "minutes_at_weight": 45,
                                "error_rate": LiveEvidence(0.02, baseline=None, samples=40)})
    assert [r.passed for r in few] == [False, True, True]
    assert "only 40 requests" in few[0].detail and "stable version" in few[2].detail
    none = evaluate_live(gates, {"p95_latency_ms": LiveEvidence(120, samples=0), "minutes_at_weight": 10})
    assert [r.passed for r in none] == [False, False, True] and "no live data" in none[0].detail
    ok = evaluate_live(gates[:2], {"p95_latency_ms": LiveEvidence(350, samples=400), "minutes_at_weight": 31})
    assert [r.passed for r in ok] == [False, True] and "350 > 300" in ok[0].detail


@pytest.mark.parametrize("bad", [
    {"metric": "error_rate"}, {"metric": "error_rate", "compare": "champion", "max_increase": 0.1},
    {"metric": "error_rate", "compare": "stable"}, {"metric": "error_rate", "compare": "stable", "alpha": 2}])
def test_bad_live_gates_are_refused(bad):
    from services.actions.catalog import VOCABULARY
    from services.errors import Invalid
    from services.policy import Policy

    with pytest.raises(Invalid):
        Policy.from_dict({"defaults": {"gates": {"live": [bad]}}}, VOCABULARY)


def test_the_demo_policy_has_live_gates_for_promoting_a_canary():
    from services.actions.catalog import VOCABULARY
    from services.policy import Policy
    from services.settings import REPO_ROOT

    p = Policy.load(REPO_ROOT / "deploy" / "policy.yaml", VOCABULARY)
    for ep in ("cancer-screening", "diabetes-risk"):
        gates = p.for_endpoint(ep).live_gates
        assert {g.metric for g in gates} >= {"error_rate", "p95_latency_ms", "minutes_at_weight"}
        assert all("promote_canary" in g.applies_to and "start_canary" not in g.applies_to for g in gates)
        assert any(g.compare == "stable" for g in gates) and all(g.min_samples for g in gates)


def test_planner_reads_stable_and_canary_from_the_metrics_source():
    from tests.unit.test_actions_usecases import EP, World

    policy = {"defaults": {"gates": {"live": [
        {"metric": "error_rate", "compare": "stable", "max_increase": 0.01, "alpha": 0.05, "min_samples": 200},
        {"metric": "p95_latency_ms", "max_value": 80, "min_samples": 200},
        {"metric": "minutes_at_weight", "min_value": 30}]}}}
    w = World(policy=policy)  # the endpoint: stable v1, canary v2 at 20 % since the clock's start
    start = w.clock()
    w.clock.advance(minutes=45)
    rs = []
    for m in range(45):
        rs.append(Rollup(start + timedelta(minutes=m), EP, "1", "stable", 40, 0, 20.0, hist(b20=40)))
        rs.append(Rollup(start + timedelta(minutes=m), EP, "2", "canary", 10, 1, 50.0, hist(b50=10)))
    w.actions.planning.live_metrics = SqlMetricsSource(_Log(rs), history=w.history, clock=w.clock)
    plan = w.actions.plan(w.who("alice"), "promote_canary", EP)
    live = {g.name.split()[1]: g for g in plan.gates if g.kind == "live"}
    assert live["error_rate"].passed is False and live["error_rate"].baseline == 0.0
    assert live["error_rate"].candidate == pytest.approx(0.1) and "p = " in live["error_rate"].detail
    assert live["p95_latency_ms"].passed and live["p95_latency_ms"].candidate == pytest.approx(48.5)
    assert live["minutes_at_weight"].passed and live["minutes_at_weight"].candidate == pytest.approx(45)
