"""Drift of logged traffic from the histograms (services.drift.windows) on the fake prediction log, and the
policy's drift section."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from services.actions.catalog import VOCABULARY
from services.drift.bins import build_profile
from services.drift.windows import endpoint_drift, served_versions
from services.errors import Invalid, NotFound
from services.policy import DriftPolicy, Policy
from services.predictions import PredictionRow
from tests.fakes import FakePredictionLog

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SHIFT_AT = T0 + timedelta(hours=48)
PER_HOUR = 60


@pytest.fixture(scope="module")
def log():
    return make_log()


def make_log() -> FakePredictionLog:
    rng = np.random.default_rng(3)
    n = 3000
    ref = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(5, 2, n), "c": rng.choice(["x", "y", "z"], n),
                        "target": rng.integers(0, 2, n)})
    log = FakePredictionLog()
    log.save_profile(build_profile("m", "1", ref, source="unit"))
    r = random.Random(4)
    rows = []
    for h in range(72):  # three days, hourly; "a" moves by +1 SD from hour 48; v1 is canary the first day
        at = T0 + timedelta(hours=h)
        for i in range(PER_HOUR):
            shift = 1.0 if at >= SHIFT_AT else 0.0
            rows.append(PredictionRow(
                request_id=f"q{h}-{i}", row=0, endpoint="ep", at=at + timedelta(seconds=i * 50), version="1",
                role="canary" if h < 24 else "stable", model="m",
                features={"a": r.gauss(shift, 1), "b": r.gauss(5, 2), "c": r.choice("xyz")},
                prediction=r.randint(0, 1), latency_ms=4.0))
    log.write(rows)
    return log


def test_a_shifted_feature_is_found_and_ranked_first_and_others_are_not(log):
    v = endpoint_drift(log, DriftPolicy(), "ep", SHIFT_AT, SHIFT_AT + timedelta(hours=24))
    assert (v.version, v.model, v.current_rows) == ("1", "m", 24 * PER_HOUR)
    assert [f.column for f in v.features][0] == "a" and v.features[0].drifted
    assert {f.column: f.drifted for f in v.features} == {"a": True, "b": False, "c": False}
    assert v.verdict.drifted_columns == 1 and v.verdict.share == pytest.approx(1 / 3) and not v.verdict.drifted
    assert v.prediction is not None and v.prediction.drifted is False
    before = endpoint_drift(log, DriftPolicy(), "ep", T0, SHIFT_AT)
    assert not any(f.drifted for f in before.features) and before.current_rows == 48 * PER_HOUR
    # PSI of a +1 SD shift on deciles is large: far above 0.25 (the textbook "significant")
    assert v.features[0].statistic > 0.25 > max(f.statistic for f in before.features)


def test_the_timeline_has_hours_or_days_distributions_and_an_alarm_after_the_shift(log):
    v = endpoint_drift(log, DriftPolicy(), "ep", T0, T0 + timedelta(hours=72))
    # 60 requests an hour: 6-hour periods hold the 300 rows a distance needs to say more than sampling noise
    assert v.granularity == "6 h" and len(v.periods) == 12 and set(v.heatmap) == {"a", "b", "c", "prediction"}
    row = v.heatmap["a"]
    assert max(row[:8]) < min(row[8:]), "every period after the shift scores worse than every period before"
    dist = v.distributions["a"]
    assert sum(dist.reference) == pytest.approx(1) and sum(dist.current) == pytest.approx(1)
    assert len(dist.labels) == len(dist.reference) == 10
    mean_alarms = [a for a in v.alarms if a["kind"] == "mean"]
    assert [a["feature"] for a in mean_alarms] == ["a"] and mean_alarms[0]["direction"] == "up"
    assert SHIFT_AT <= mean_alarms[0]["at"] <= SHIFT_AT + timedelta(hours=6)
    assert len(v.means["a"]) == 72 and "c" not in v.means
    assert sum(n for _, n in v.traffic) == 72 * PER_HOUR
    assert v.periods[1] - v.periods[0] == timedelta(hours=6)


@pytest.mark.parametrize("per_hour, hours, step", [
    (1000, 24, 1), (300, 24, 1), (150, 24 * 7, 2), (60, 24 * 7, 6), (60, 24, 6), (60, 8, 2), (5, 24 * 30, 24),
    (0, 24, 6)])
def test_the_heatmap_step_holds_enough_rows_within_the_window(per_hour, hours, step):
    from services.drift.windows import heatmap_step

    assert heatmap_step([per_hour] * hours, timedelta(hours=hours)) == step


def test_the_policy_picks_the_method_and_threshold_per_feature(log):
    pol = DriftPolicy(method="jensenshannon", features={"a": ("hellinger", 0.9), "c": ("psi", None)})
    v = endpoint_drift(log, pol, "ep", SHIFT_AT, SHIFT_AT + timedelta(hours=24))
    by = {f.column: f for f in v.features}
    assert (by["a"].method, by["a"].threshold, by["a"].drifted) == ("hellinger", 0.9, False)
    assert by["b"].method == "jensenshannon" and by["c"].method == "psi"


def test_versions_of_a_window_and_what_cannot_be_answered(log):
    assert served_versions(log, "ep", T0, T0 + timedelta(hours=72)) == [
        ("1", "stable", 48 * PER_HOUR), ("1", "canary", 24 * PER_HOUR)]
    with pytest.raises(Invalid, match="starts after"):
        endpoint_drift(log, DriftPolicy(), "ep", SHIFT_AT, T0)
    with pytest.raises(NotFound, match="no request"):
        endpoint_drift(log, DriftPolicy(), "ep", T0 - timedelta(days=9), T0 - timedelta(days=8))
    with pytest.raises(NotFound, match="no reference profile"):
        endpoint_drift(log, DriftPolicy(), "ep", T0, SHIFT_AT, version="7")


def test_a_window_without_traffic_of_a_profiled_version_is_not_computable_not_a_crash(log):
    v = endpoint_drift(log, DriftPolicy(), "ep", T0 - timedelta(days=9), T0 - timedelta(days=8), version="1",
                       model="m")
    assert v.current_rows == 0 and all(not f.computable and f.reason for f in v.features)
    assert v.verdict.drifted is None and v.alarms == [] and v.periods == []


@pytest.mark.parametrize("drift, message", [
    ({"method": "ks"}, "unknown drift method"), ({"threshold": -1}, "positive"), ({"threshold": "x"}, "number"),
    ({"share": 0}, r"\(0, 1\]"), ({"share": 1.5}, r"\(0, 1\]"), ({"features": ["a"]}, "map feature names"),
    ({"features": {"a": {"method": "wasserstein"}}}, "features.a"), ("psi", "mapping")])
def test_a_bad_drift_policy_is_refused_with_where(drift, message):
    with pytest.raises(Invalid, match=message):
        Policy.from_dict({"defaults": {"drift": drift}}, VOCABULARY)


def test_the_demo_policy_sets_drift_for_every_endpoint():
    from pathlib import Path

    p = Policy.load(Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml", VOCABULARY)
    assert p.for_endpoint("cancer-screening").drift == DriftPolicy("psi", 0.25, 0.5, {})
    assert p.for_endpoint("unknown").drift.threshold == 0.25


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "hellinger"])
def test_the_heatmap_statistics_equal_the_per_period_ones(method):
    """One numpy pass over a periods × bins matrix gives what binned_drift gives period by period."""
    from services.drift.stats import binned_drift
    from services.drift.windows import MIN_ROWS, per_period

    rng = np.random.default_rng(5)
    ref = rng.integers(0, 500, 10)
    ref[3] = 0  # an empty reference bin (PSI's epsilon)
    matrix = rng.integers(0, 200, (40, 10))
    matrix[5] = 0  # an empty period
    matrix[6, :] = [0] * 9 + [400]  # all in one bin
    matrix[7] = [3] * 10  # too few rows to tell
    got = per_period(method, ref, matrix)
    for i, row in enumerate(matrix):
        if row.sum() < MIN_ROWS:
            assert got[i] is None
        else:
            assert got[i] == pytest.approx(binned_drift("x", ref, row, method=method).statistic, abs=1e-12)
    assert sum(g is not None for g in got) >= 30
    with pytest.raises(Invalid, match="unknown method"):
        per_period("ks", ref, matrix)


def test_long_windows_keep_the_heatmap_to_a_chart_s_width():
    from services.drift.windows import MAX_COLUMNS, heatmap_step

    for days in (7, 30, 90):
        step = heatmap_step([5000] * 24 * days, timedelta(days=days))
        assert 24 * days / step <= MAX_COLUMNS and step in (1, 2, 3, 6, 12, 24)


def test_labels_give_label_drift_and_live_quality_beside_the_offline_metrics():
    log = make_log()  # its own: labels change the log
    rows = log.rows("ep", start=SHIFT_AT, end=SHIFT_AT + timedelta(hours=24), limit=0)
    # ground truth: all 1 (the reference's target is half 0, half 1), so 1 answer in 2 is right
    log.add_labels([(r.request_id, r.row, 1) for r in rows])
    v = endpoint_drift(log, DriftPolicy(), "ep", SHIFT_AT, SHIFT_AT + timedelta(hours=24),
                       offline={"accuracy": 0.9})
    assert v.label is not None and v.label.drifted and v.label.current_rows == len(rows)
    assert v.distributions["label"].current[-1] == pytest.approx(1.0) and "label" in v.heatmap
    p = v.performance
    ones = sum(1 for r in rows if r.prediction == 1)
    assert p["labelled"] == len(rows) and p["accuracy"] == pytest.approx(ones / len(rows))
    assert p["accuracy_low"] < p["accuracy"] < p["accuracy_high"] < 0.9 and p["degraded"] is True
    quiet = endpoint_drift(log, DriftPolicy(), "ep", T0, SHIFT_AT)
    assert quiet.label is None and quiet.performance is None, "no labels in that window"
    same = endpoint_drift(log, DriftPolicy(), "ep", SHIFT_AT, SHIFT_AT + timedelta(hours=24),
                          offline={"accuracy": p["accuracy"]})
    assert same.performance["degraded"] is False
