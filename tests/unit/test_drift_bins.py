"""Reference profiles (fixed bins) and the histograms the prediction log keeps on them, on the fake log."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from services.drift.bins import MAX_BINS, MISSING, PREDICTION, Bins, Profile, build_profile, column_bins
from services.drift.profiles import ensure_profile, profile_from_window
from services.errors import Invalid, NotFound
from services.predictions import PredictionRow
from services.predictions.histograms import MISSING_SLOT, PREDICTION_SLOTS, prediction_cells
from tests.fakes import FakePredictionLog

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_numeric_bins_are_reference_deciles_each_holding_a_tenth():
    rng = np.random.default_rng(1)
    values = pd.Series(rng.normal(5, 2, 10_000))
    b = column_bins("x", values)
    assert b.kind == "numeric" and b.size == MAX_BINS and len(b.edges) == MAX_BINS - 1
    assert list(b.edges) == sorted(b.edges)
    assert sum(b.reference) == 10_000 and all(abs(c - 1000) <= 1 for c in b.reference)
    assert b.mean == pytest.approx(values.mean()) and b.std == pytest.approx(values.std(ddof=1))
    # index() of every value agrees with the stored (vectorised) reference counts
    counts = [0] * b.size
    for v in values:
        counts[b.index(v)] += 1
    assert tuple(counts) == b.reference
    assert b.index(-1e9) == 0 and b.index(1e9) == b.size - 1


def test_few_distinct_values_get_one_bin_each_and_missing_values_are_apart():
    b = column_bins("n", pd.Series([1, 2, 2, 3, 3, 3, np.nan, np.inf, -np.inf]))
    assert b.edges == (1.0, 2.0) and b.reference == (1, 2, 3) and b.reference_missing == 3
    assert [b.index(v) for v in (1, 2, 3, 2.5, 0, 99)] == [0, 1, 2, 2, 0, 2]
    for missing in (None, math.nan, math.inf, -math.inf, "abc", True):
        assert b.index(missing) == MISSING
    assert b.labels() == ["≤ 1", "(1, 2]", "> 2"]


def test_categorical_bins_keep_the_most_frequent_values_and_an_other_bin():
    values = [f"c{i}" for i in range(15) for _ in range(15 - i)] + [None]
    b = column_bins("cat", pd.Series(values, dtype=object))
    assert b.kind == "categorical" and len(b.categories) == MAX_BINS
    assert set(b.categories) == {f"c{i}" for i in range(MAX_BINS)}  # the ten most frequent
    assert b.reference[-1] == sum(15 - i for i in range(MAX_BINS, 15)) and b.reference_missing == 1
    assert b.index("c0") == b.categories.index("c0") and b.index("zzz") == MAX_BINS and b.index(None) == MISSING
    assert b.labels()[-1] == "(other)"
    flags = column_bins("flag", pd.Series([True, False, True]))
    assert flags.kind == "categorical" and flags.index(True) == flags.categories.index("True")


def test_a_profile_round_trips_and_refuses_what_it_cannot_bin():
    frame = pd.DataFrame({"a": np.arange(50.0), "b": ["x", "y"] * 25, "target": [0, 1] * 25})
    p = build_profile("m", "3", frame, source="unit")
    assert list(p.columns) == ["a", "b"] and p.prediction.column == PREDICTION and p.prediction.edges == (0.0,)
    assert Profile.from_dict(p.as_dict()) == p and Bins.from_dict(p.columns["a"].as_dict()) == p.columns["a"]
    for bad, message in ((frame.iloc[:0], "no rows"), (frame[["target"]], "no feature"),
                         (frame.assign(**{PREDICTION: 1}), "may not be called")):
        with pytest.raises(Invalid, match=message):
            build_profile("m", "3", bad, source="unit")


def _rows(n: int, *, version="1", model="m", start=T0, seed=0, status=200):
    rng = random.Random(seed)
    return [PredictionRow(request_id=f"r{seed}-{i}", row=0, endpoint="ep", at=start + timedelta(minutes=i),
                          version=version, role="stable", model=model,
                          features={"a": rng.gauss(0, 1), "b": rng.choice("xyz")}, prediction=rng.choice([0, 1]),
                          latency_ms=5.0, status=status, error="" if status < 400 else "boom")
            for i in range(n)]


@pytest.fixture
def log():
    log = FakePredictionLog()
    ref = pd.DataFrame({"a": np.random.default_rng(0).normal(0, 1, 500), "b": list("xyz") * 166 + ["x", "y"],
                        "target": [0, 1] * 250})
    log.save_profile(build_profile("m", "1", ref, source="unit"))
    return log


def test_rows_fill_the_prediction_histogram_and_the_feature_histograms_once(log):
    rows = _rows(120)
    log.write(rows)
    log.write(rows[:30])  # at-least-once delivery: duplicates add nothing
    rollups = log.rollups("ep", T0, T0 + timedelta(hours=3))
    assert sum(sum(r.prediction_bins) for r in rollups) == 120
    assert all(len(r.prediction_bins) == PREDICTION_SLOTS for r in rollups)
    cells = log.histograms("ep", T0, T0 + timedelta(hours=3))
    by_feature = {f: sum(sum(c.counts) for c in cells if c.feature == f) for f in ("a", "b")}
    assert by_feature == {"a": 120, "b": 120}
    assert {c.period for c in cells} == {T0, T0 + timedelta(hours=1)}  # 120 minutes: two hours
    total = sum(c.total for c in cells if c.feature == "a")
    assert total == pytest.approx(sum(r.features["a"] for r in rows))
    bins_a = log.profile("m", "1").columns["a"]
    first = next(c for c in cells if c.feature == "a" and c.period == T0)
    assert first.bins(bins_a.size) == [sum(1 for r in rows[:60] if bins_a.index(r.features["a"]) == i)
                                       for i in range(bins_a.size)]
    assert first.mean == pytest.approx(sum(r.features["a"] for r in rows[:60]) / 60)
    pred = prediction_cells(rollups)
    assert [c.counts[:2] for c in pred if c.period == T0] == [
        tuple(sum(1 for r in rows[:60] if (r.prediction > 0) == bool(b)) for b in (0, 1))]
    daily = log.histograms("ep", T0 - timedelta(hours=10), T0 + timedelta(hours=3), granularity="day")
    assert {c.period for c in daily} == {T0.replace(hour=0)} and sum(sum(c.counts) for c in daily) == 360
    # the answers, hourly beside the features, agree with the rollups' per-minute slots
    hourly_pred = [c.counts for c in cells if c.feature == PREDICTION]
    assert hourly_pred == [c.counts for c in pred]
    with pytest.raises(Invalid, match="granularity"):
        log.histograms("ep", T0, T0 + timedelta(hours=1), granularity="week")


def test_failed_answers_and_unprofiled_versions_are_counted_but_not_binned(log):
    log.write(_rows(10, status=503, seed=1) + _rows(10, version="9", seed=2))
    rollups = log.rollups("ep", T0, T0 + timedelta(hours=1))
    assert sum(r.count for r in rollups) == 20 and sum(sum(r.prediction_bins) for r in rollups) == 0
    cells = log.histograms("ep", T0, T0 + timedelta(hours=1))
    assert {c.version for c in cells} == {"1"} and sum(sum(c.counts) for c in cells if c.feature == "a") == 10


def test_missing_features_and_answers_land_in_the_missing_bins(log):
    row = PredictionRow(request_id="m1", row=0, endpoint="ep", at=T0, version="1", role="canary", model="m",
                        features={"b": "x", "extra": 1}, prediction=None)
    log.write([row])
    cells = {c.feature: c for c in log.histograms("ep", T0, T0 + timedelta(hours=1))}
    assert (cells["a"].missing, cells["a"].present, cells["a"].mean) == (1, 0, None)
    assert (cells["b"].missing, cells["b"].counts[0]) == (0, 1) and set(cells) == {"a", "b", PREDICTION}
    assert cells[PREDICTION].missing == 1
    assert log.rollups("ep", T0, T0 + timedelta(minutes=1))[0].prediction_bins[MISSING_SLOT] == 1


class _Registry:
    REFERENCE_ARTIFACTS = {"train": "reference/train.parquet"}

    def __init__(self):
        self.calls = 0

    def reference_data(self, name, version, kind="train"):
        self.calls += 1
        if version == "404":
            raise NotFound("no run", source="fake registry")
        return pd.DataFrame({"a": [1.0, 2.0, 3.0], "target": [0, 1, 0]})


def test_a_profile_is_derived_once_from_training_data_or_a_baseline_window():
    log, reg = FakePredictionLog(), _Registry()
    first = ensure_profile(log, reg, "m", "1")
    assert first.source == "training data (reference/train.parquet)" and first.rows == 3
    assert ensure_profile(log, reg, "m", "1") == first and reg.calls == 1
    with pytest.raises(NotFound):
        ensure_profile(log, reg, "m", "404")
    log.write(_rows(40, version="2", seed=5))
    with pytest.raises(NotFound, match="no answered request"):
        profile_from_window(log, "m", "2", "ep", T0 - timedelta(days=2), T0 - timedelta(days=1))
    with pytest.raises(Invalid, match="starts after"):
        profile_from_window(log, "m", "2", "ep", T0, T0 - timedelta(days=1))
    p = profile_from_window(log, "m", "2", "ep", T0, T0 + timedelta(hours=1))
    assert p.rows == 40 and set(p.columns) == {"a", "b"} and p.source.startswith("baseline window")
    assert profile_from_window(log, "m", "2", "ep", T0, T0 + timedelta(minutes=5)) == p  # derived once


def test_the_label_name_is_reserved():
    from services.drift.bins import LABEL

    frame = pd.DataFrame({"a": [1.0, 2.0], LABEL: [0, 1], "target": [0, 1]})
    with pytest.raises(Invalid, match="may not be called"):
        build_profile("m", "1", frame, source="unit")


def test_the_prediction_reference_is_the_version_s_own_answers_and_labels_compare_with_the_target():
    from services.errors import Unavailable

    reg = _Registry()
    log = FakePredictionLog()
    seen = []

    def predict(model, version, frame):
        seen.append(list(frame.columns))
        return [0.5 * x for x in frame["a"]]  # narrower than the target, as a regressor's answers are

    p = ensure_profile(log, reg, "m", "1", predict=predict)
    assert seen == [["a"]], "the features only, without the target"
    assert p.source.endswith("answers: v1's own on it")
    assert p.prediction.edges == (0.5, 1.0) and p.prediction.reference == (1, 1, 1)
    assert p.target.edges == p.prediction.edges and p.target.reference == (2, 1, 0), "targets 0, 1, 0 on them"
    assert Profile.from_dict(p.as_dict()) == p

    def broken(model, version, frame):
        raise Unavailable("no model files", source="gateway")

    q = ensure_profile(FakePredictionLog(), reg, "m", "1", predict=broken)
    assert "its target (v1 could not be loaded: no model files)" in q.source
    assert q.prediction.edges == (0.0,) and q.target.reference == q.prediction.reference == (2, 1)
