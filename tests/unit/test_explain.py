"""Explanations on small scikit-learn models trained here: which explainer a model gets, SHAP additivity (base
value + attributions == the model's own output in the stated space) for every explainer, pipelines, the
results cache, one logged prediction, explanation drift, and the CLI's file reading."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from services.errors import Invalid, NotFound, PreconditionFailed
from services.explain import LOG_ODDS, PROBABILITY, RAW, Explanation, background_sample
from services.explain import explainers as ex
from services.explain.drift import explanation_drift
from services.explain.service import Explainer, LoadedEstimator, rows_key
from services.predictions import PredictionRow
from tests.fakes import FakeClock, FakePredictionLog, FakeRegistry

COLS = ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.fixture(scope="module")
def cls_data():
    x, y = make_classification(n_samples=240, n_features=5, n_informative=3, random_state=1)
    return pd.DataFrame(x, columns=COLS), y


@pytest.fixture(scope="module")
def reg_data():
    x, y = make_regression(n_samples=240, n_features=5, noise=5.0, random_state=2)
    return pd.DataFrame(x * [1, 10, 100, 0.1, 1] + [0, 5, -50, 2, 0], columns=COLS), y


def _check_adds_up(exp: Explanation, expected_outputs) -> None:
    """base + sum(attributions) equals the model's output computed here, independently of the explainer."""
    expected = np.asarray(expected_outputs, dtype=float)
    assert exp.values.shape == (len(expected), len(exp.features))
    np.testing.assert_allclose(exp.base_value + exp.values.sum(axis=1), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(exp.outputs, expected, rtol=1e-9, atol=1e-9)
    assert exp.additivity_error < 1e-6
    assert np.abs(exp.values).sum() > 0, "an explanation of all zeros would add up trivially"


# -- which explainer ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,kind", [
    (DecisionTreeClassifier(max_depth=3), ex.TREE),
    (RandomForestRegressor(n_estimators=5, max_depth=3), ex.TREE),
    (GradientBoostingClassifier(n_estimators=10), ex.TREE),
    (HistGradientBoostingClassifier(max_iter=10), ex.TREE),
    (LogisticRegression(), ex.LINEAR),
    (Ridge(), ex.LINEAR),
    (SGDClassifier(loss="log_loss"), ex.LINEAR),
    (KNeighborsClassifier(), ex.AGNOSTIC),
])
def test_the_explainer_follows_the_model(model, kind, cls_data):
    x, y = cls_data
    model.fit(x, y)
    assert ex.kind_of(model) == kind
    assert ex.kind_of(make_pipeline(StandardScaler(), model)) == ex.AGNOSTIC  # a pipeline itself is opaque...
    prep, final = ex.split_pipeline(make_pipeline(StandardScaler(), model).fit(x, y))
    if kind == ex.AGNOSTIC:  # ...so it is explained whole when its last step is not a tree or linear model
        assert prep is None
    else:  # ...or through its last step
        assert type(final) is type(model) and type(prep.steps[0][1]) is StandardScaler


# -- additivity, every explainer -----------------------------------------------------------------------------
@pytest.mark.parametrize("model,space,output", [
    (DecisionTreeClassifier(max_depth=4, random_state=0), PROBABILITY, lambda m, x: m.predict_proba(x)[:, 1]),
    (RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0), PROBABILITY,
     lambda m, x: m.predict_proba(x)[:, 1]),
    (GradientBoostingClassifier(n_estimators=20, random_state=0), LOG_ODDS, lambda m, x: m.decision_function(x)),
    (HistGradientBoostingClassifier(max_iter=20, random_state=0), LOG_ODDS, lambda m, x: m.decision_function(x)),
])
def test_tree_explainer_adds_up_to_the_model_output(model, space, output, cls_data):
    x, y = cls_data
    model.fit(x, y)
    exp = ex.explain(model, x.iloc[:60], None)
    assert exp.kind == ex.TREE and exp.explainer.startswith("TreeExplainer")
    assert exp.output_space == space and exp.output_label == f"{space} of class 1"
    assert exp.background_rows == 0 and exp.features == tuple(COLS)
    _check_adds_up(exp, output(model, x.iloc[:60]))


def test_tree_regressor_explains_the_raw_prediction(reg_data):
    x, y = reg_data
    model = RandomForestRegressor(n_estimators=8, max_depth=5, random_state=0).fit(x, y)
    exp = ex.explain(model, x.iloc[:50], None)
    assert (exp.kind, exp.output_space, exp.output_label) == (ex.TREE, RAW, RAW)
    _check_adds_up(exp, model.predict(x.iloc[:50]))


def test_linear_explainer_through_a_scaling_pipeline_adds_up_in_log_odds(cls_data):
    x, y = cls_data
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(x, y)
    background = background_sample(x, 100, seed=3)
    exp = ex.explain(model, x.iloc[:40], background)
    assert exp.kind == ex.LINEAR and exp.explainer.startswith("LinearExplainer")
    assert exp.output_space == LOG_ODDS and exp.background_rows == 100
    assert any("StandardScaler" in n and "LogisticRegression" in n for n in exp.notes)
    _check_adds_up(exp, model.decision_function(x.iloc[:40]))
    # the attribution of a linear model is coefficient × (scaled value − the background's mean scaled value)
    scaler, lr = model[0], model[-1]
    z, z_bg = scaler.transform(x.iloc[:40]), scaler.transform(background)
    np.testing.assert_allclose(exp.values, lr.coef_[0] * (z - z_bg.mean(axis=0)), atol=1e-9)
    # the values shown are the input's own units (StandardScaler is 1:1 by name)
    np.testing.assert_allclose(exp.data, x.iloc[:40].to_numpy())


def test_linear_regressor_adds_up_in_raw_units(reg_data):
    x, y = reg_data
    model = Ridge(alpha=1.0).fit(x, y)
    exp = ex.explain(model, x.iloc[:30], background_sample(x, 100))
    assert (exp.kind, exp.output_space) == (ex.LINEAR, RAW)
    _check_adds_up(exp, model.predict(x.iloc[:30]))


def test_sgd_log_loss_is_linear_in_log_odds(cls_data):
    x, y = cls_data
    model = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(x, y)
    exp = ex.explain(model, x.iloc[:30], background_sample(x, 80))
    assert (exp.kind, exp.output_space) == (ex.LINEAR, LOG_ODDS)
    _check_adds_up(exp, model.decision_function(x.iloc[:30]))


def test_model_agnostic_explainer_adds_up_in_probability(cls_data):
    x, y = cls_data
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=7)).fit(x, y)
    progress = []
    exp = ex.explain(model, x.iloc[:12], background_sample(x, 20), progress=lambda f, t: progress.append((f, t)))
    assert exp.kind == ex.AGNOSTIC and exp.explainer.startswith("PermutationExplainer")
    assert exp.output_space == PROBABILITY and exp.background_rows == 20
    assert exp.notes == ("explains the output for class 1",), "a whole pipeline: no preprocessing note"
    _check_adds_up(exp, model.predict_proba(x.iloc[:12])[:, 1])
    # the base value is the model's mean output over the background
    assert exp.base_value == pytest.approx(model.predict_proba(background_sample(x, 20))[:, 1].mean())
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and any("12 of 12 rows" in t for _, t in progress)


def test_model_agnostic_regressor_adds_up_in_raw_units(reg_data):
    x, y = reg_data
    model = KNeighborsRegressor(n_neighbors=5).fit(x, y)
    exp = ex.explain(model, x.iloc[:8], background_sample(x, 15))
    assert (exp.kind, exp.output_space) == (ex.AGNOSTIC, RAW)
    _check_adds_up(exp, model.predict(x.iloc[:8]))


def test_a_multiclass_model_explains_the_class_asked_for():
    x, y = make_classification(n_samples=300, n_features=5, n_informative=4, n_redundant=0, n_classes=3,
                               random_state=4)
    x = pd.DataFrame(x, columns=COLS)
    model = LogisticRegression(max_iter=500).fit(x, y)
    for k in (0, 2):
        exp = ex.explain(model, x.iloc[:20], background_sample(x, 50), target_class=k)
        assert exp.output_space == RAW and exp.output_label == f"raw of class {k}"
        _check_adds_up(exp, model.decision_function(x.iloc[:20])[:, k])
    with pytest.raises(Invalid, match="not one of the model's classes"):
        ex.explain(model, x.iloc[:5], background_sample(x, 50), target_class=7)


def test_attributions_that_do_not_add_up_are_refused(cls_data, monkeypatch):
    x, y = cls_data
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y)
    real = ex._pick
    monkeypatch.setattr(ex, "_pick", lambda *a: (real(*a)[0] * 1.01, real(*a)[1]))  # 1 % off
    with pytest.raises(PreconditionFailed, match="do not add up"):
        ex.explain(model, x.iloc[:20], None)


def test_rows_must_hold_the_model_columns_and_extra_ones_are_ignored(cls_data):
    x, y = cls_data
    model = Ridge().fit(x, y)
    with pytest.raises(Invalid, match=r"lack 2 column\(s\).*'beta', 'delta'"):
        ex.explain(model, x.drop(columns=["beta", "delta"]), background_sample(x))
    with pytest.raises(Invalid, match="no rows"):
        ex.explain(model, x.iloc[:0], background_sample(x))
    shuffled = x.iloc[:10][list(reversed(COLS))].assign(target=1)  # other order, and the label column
    exp = ex.explain(model, shuffled, background_sample(x))
    assert exp.features == tuple(COLS)
    _check_adds_up(exp, model.predict(x.iloc[:10]))


# -- the use cases over the ports (fakes) ---------------------------------------------------------------------
class ReferenceRegistry(FakeRegistry):
    """The fake registry plus reference frames (what the MLflow adapter reads from each run)."""

    def __init__(self):
        super().__init__()
        self.frames: dict[tuple[str, str, str], pd.DataFrame] = {}
        self.reads = 0

    def reference_data(self, name, version, kind="train"):
        self.reads += 1
        self._summary(name, version)
        try:
            return self.frames[(name, str(version), kind)]
        except KeyError:
            raise NotFound(f"{name} v{version} logged no {kind} frame", source=self.source) from None


@pytest.fixture
def world(cls_data):
    x, y = cls_data
    reg = ReferenceRegistry()
    fitted = {"1": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
              "2": GradientBoostingClassifier(n_estimators=15, random_state=0).fit(x, y),
              "3": GradientBoostingClassifier(n_estimators=15, random_state=0).fit(x[COLS[:3]], y)}
    for v in fitted:
        reg.add("clf", v)
        cols = COLS[:3] if v == "3" else COLS
        reg.frames[("clf", v, "train")] = x.iloc[:180][cols].assign(target=y[:180])
        reg.frames[("clf", v, "eval")] = x.iloc[180:][cols].assign(target=y[180:])
    loads = []

    def models(name, version):
        loads.append((name, version))
        return LoadedEstimator(fitted[version], ())

    return reg, Explainer(reg, models=models, cache_size=3), fitted, loads


def test_a_version_is_explained_on_its_held_out_frame_and_kept(world, cls_data):
    reg, explainer, fitted, _ = world
    x, _ = cls_data
    exp = explainer.explain_version("clf", "1")
    assert (exp.model, exp.version, exp.rows) == ("clf", "1", 60)
    assert exp.sample == "the 60 rows of v1's held-out frame"
    assert exp.background == "100 rows of v1's training reference (seeded sample, seed 0)"
    assert exp.row_ids == tuple(range(180, 240)), "the held-out frame's own row labels"
    _check_adds_up(exp, fitted["1"].decision_function(x.iloc[180:]))
    reads = reg.reads
    assert explainer.explain_version("clf", "1") is exp, "the second view comes from the cache"
    assert reg.reads == reads
    tree = explainer.explain_version("clf", "2")
    assert tree.background.startswith("the training data as the trees recorded it")
    with pytest.raises(NotFound, match="no held-out"):
        reg.frames.pop(("clf", "3", "eval"))
        explainer.explain_version("clf", "3")


def test_the_cache_keeps_the_most_recent_results(world, cls_data):
    _, explainer, _, _ = world
    x, _ = cls_data
    first = explainer.explain_rows("clf", "1", x.iloc[:5])
    assert explainer.explain_rows("clf", "1", x.iloc[:5].copy()) is first, "same content, same key"
    assert rows_key(x.iloc[:5]) != rows_key(x.iloc[1:6])
    for i in range(3):  # three other results push it out of a cache of three
        explainer.explain_rows("clf", "2", x.iloc[i:i + 4])
    assert explainer.cached(("clf", "1", f"rows:{rows_key(x.iloc[:5])}", None)) is None
    assert explainer.explain_rows("clf", "1", x.iloc[:5]) is not first


def _logged(request_id, version, features, *, row=0, at=None, model="clf", status=200):
    return PredictionRow(request_id, row, "ep", at or FakeClock().now, version, "stable", model, features,
                         1, 3.0, status)


def test_one_logged_prediction_as_a_waterfall(world, cls_data):
    reg, explainer, fitted, _ = world
    x, _ = cls_data
    log = FakePredictionLog()
    features = {**x.iloc[200].to_dict(), "unused": 5.0}
    log.write([_logged("req-1", "2", features), _logged("req-1", "2", x.iloc[201].to_dict(), row=1),
               _logged("req-2", None, features), _logged("req-3", "2", {"alpha": 1.0})])
    out = explainer.explain_prediction(log, "ep", "req-1", row=1)
    assert (out["model"], out["version"], out["row"], out["rows_in_request"]) == ("clf", "2", 1, 2)
    w = out["waterfall"]
    expected = fitted["2"].decision_function(x.iloc[[201]])[0]
    assert w["output"] == pytest.approx(expected) and w["output_space"] == LOG_ODDS
    assert w["base_value"] + sum(s["shap"] for s in w["steps"]) == pytest.approx(expected)
    assert [abs(s["shap"]) for s in w["steps"]] == sorted((abs(s["shap"]) for s in w["steps"]), reverse=True)
    assert {s["feature"] for s in w["steps"]} == set(COLS), "extra logged features are not the model's"
    assert out["explanation"]["explainer"].startswith("TreeExplainer")
    with pytest.raises(NotFound, match="no logged prediction 'nope'"):
        explainer.explain_prediction(log, "ep", "nope")
    with pytest.raises(NotFound, match="there is no row 5"):
        explainer.explain_prediction(log, "ep", "req-1", row=5)
    with pytest.raises(NotFound, match="which model version"):
        explainer.explain_prediction(log, "ep", "req-2")
    with pytest.raises(Invalid, match="lacks 4 input"):
        explainer.explain_prediction(log, "ep", "req-3")


def test_explanation_drift_of_an_explanation_with_itself_is_nothing(world):
    _, explainer, _, _ = world
    exp = explainer.explain_version("clf", "2")
    d = explanation_drift(exp, exp)
    assert d["attribution_shift"] == 0 and d["rank_correlation"] == pytest.approx(1.0)
    assert all(r["rank_change"] == 0 and r["shift"] == 0 for r in d["features"])
    assert sum(r["share_a"] for r in d["features"]) == pytest.approx(1.0)


def test_two_versions_on_the_same_rows(world):
    _, explainer, fitted, _ = world
    d = explainer.version_drift("clf", "3", "2")  # v3 takes 3 inputs: v2's frame (5 columns) serves both
    assert d["a"]["sample"] == d["b"]["sample"] == "the 60 rows of v2's held-out frame"
    by = {r["feature"]: r for r in d["features"]}
    assert by["delta"]["only_in"] == "b" and by["delta"]["rank_a"] is None and by["delta"]["share_a"] == 0
    assert d["common_features"] == 3 and d["same_output_space"]
    shares_b = [r["share_b"] for r in d["features"]]
    assert sum(shares_b) == pytest.approx(1.0)
    assert d["attribution_shift"] == pytest.approx(0.5 * sum(abs(r["share_b"] - r["share_a"]) for r in d["features"]))
    assert 0 < d["attribution_shift"] <= 1
    ranks = {r["feature"]: r for r in d["features"] if r["rank_change"] is not None}
    assert all(r["rank_change"] == r["rank_a"] - r["rank_b"] for r in ranks.values())
    with pytest.raises(Invalid, match="two different versions"):
        explainer.version_drift("clf", "2", "2")


def test_one_version_on_reference_and_on_a_production_window(world, cls_data):
    _, explainer, _, _ = world
    x, _ = cls_data
    clock = FakeClock()
    log = FakePredictionLog(clock)
    shifted = x.iloc[:40].assign(alpha=x["alpha"].iloc[:40] + 3.0)  # production drifted in one input
    log.write([_logged(f"r{i}", "2", shifted.iloc[i].to_dict(), at=clock.now - timedelta(minutes=i))
               for i in range(40)] + [_logged("other", "1", x.iloc[0].to_dict())])
    d = explainer.production_drift(log, "ep", "clf", "2", clock.now - timedelta(hours=1),
                                   clock.now + timedelta(minutes=1))
    assert d["a"]["sample"] == "the 60 rows of v2's held-out frame"
    assert d["b"]["row_count"] == 40 and "served on ep" in d["b"]["sample"]
    with pytest.raises(NotFound, match="no logged predictions of v2"):
        explainer.production_drift(log, "ep", "clf", "2", clock.now - timedelta(days=3),
                                   clock.now - timedelta(days=2))


def test_the_cli_reads_parquet_and_csv(tmp_path, cls_data):
    from services.explain.commands import explanation_text, read_rows

    x, y = cls_data
    x.iloc[:4].to_parquet(tmp_path / "rows.parquet")
    x.iloc[:4].to_csv(tmp_path / "rows.csv", index=False)
    pd.testing.assert_frame_equal(read_rows(str(tmp_path / "rows.parquet")), x.iloc[:4])
    np.testing.assert_allclose(read_rows(str(tmp_path / "rows.csv")).to_numpy(), x.iloc[:4].to_numpy())
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(Invalid, match=r"\.parquet or \.csv"):
        read_rows(str(tmp_path / "rows.txt"))
    with pytest.raises(NotFound):
        read_rows(str(tmp_path / "missing.csv"))
    exp = ex.explain(Ridge().fit(x, y), x.iloc[:2], background_sample(x), meta={"model": "m", "version": "7"})
    text = explanation_text(exp, top=2)
    assert text.startswith("m v7: LinearExplainer") and "output space: raw" in text
    assert "row 1: output" in text and "3 more" in text
