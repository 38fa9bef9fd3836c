"""The Explanations page (AppTest) over the seeded demo: the explainer, output space, background and sample
stated, the three charts, tables that add up, the view in the URL; one logged prediction's waterfall; explanation
drift against production traffic and, on the compare page, between versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from services.predictions import PredictionRow
from tests.ui.conftest import texts

CLS = "breast-cancer-classifier"
ENDPOINT = "cancer-screening"


def no_error(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def figures(at) -> dict[str, dict]:
    """Plotly figures by their title."""
    out = {}
    for el in at.get("plotly_chart"):
        fig = json.loads(el.proto.spec)
        out[fig["layout"]["title"]["text"]] = fig
    return out


def arr(x) -> list:
    """A Plotly data array: a list, or numpy's typed-array encoding ({"dtype", "bdata"})."""
    if isinstance(x, dict) and "bdata" in x:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    return list(x)


def qp(at, key):
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def frame(at, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_a_tree_version_is_explained_with_its_method_stated_and_tables_that_add_up(app):
    at = app("explain.py", model=CLS, version="4")
    no_error(at)
    shown = texts(at)
    assert "TreeExplainer (path-dependent TreeSHAP)" in shown and "GradientBoostingClassifier" in shown
    assert "log-odds of class 1" in shown and "the 143 rows of v4's held-out frame" in shown
    assert "the training data as the trees recorded it" in shown
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Explainer"] == "tree" and metrics["Output space"] == "log-odds"
    assert metrics["Rows explained"] == "143"
    figs = figures(at)
    importance = next(f for t, f in figs.items() if t.startswith("Global importance"))
    bars = arr(importance["data"][0]["x"])
    assert len(bars) == 20 and bars == sorted(bars), "the top 20, the most important on top"
    beeswarm = next(f for t, f in figs.items() if t.startswith("Beeswarm"))
    assert len(arr(beeswarm["data"][0]["x"])) == 15 * 143 and "hovertemplate" in beeswarm["data"][0]
    assert any(t.startswith("Dependence: ") for t in figs)
    # the attribution table adds up: base value + each row's attributions == its output
    table = frame(at, "base value")
    out_col = next(c for c in table.columns if c.startswith("output"))
    features = [c for c in table.columns if c not in ("row", "base value", out_col)]
    assert len(features) == 31 and len(table) == 143
    gap = (table["base value"] + table[features].sum(axis=1) - table[out_col]).abs().max()
    assert gap < 1e-6
    imp = frame(at, "mean |SHAP|")
    by_hand = table[features].abs().mean().sort_values(ascending=False)
    assert list(imp["feature"][:5]) == list(by_hand.index[:5])
    assert imp["mean |SHAP|"].iloc[0] == pytest.approx(by_hand.iloc[0])
    downloads = [b.proto.label for b in at.get("download_button")]
    assert downloads.count("Download CSV") >= 2


def test_the_pickers_and_the_dependence_feature_live_in_the_url(app):
    at = app("explain.py", model=CLS, version="2", feature="mean radius")
    no_error(at)
    assert at.selectbox(key="explain-feature").value == "mean radius"
    assert "Dependence: mean radius" in figures(at)
    shown = texts(at)
    assert "LinearExplainer" in shown and "100 rows of v2's training reference" in shown
    assert "after its preprocessing (StandardScaler)" in shown
    at.selectbox(key="explain-feature").set_value("worst area").run()
    no_error(at)
    assert qp(at, "feature") == "worst area" and "Dependence: worst area" in figures(at)
    at.selectbox(key="explain-version").set_value("3").run()
    no_error(at)
    assert (qp(at, "model"), qp(at, "version")) == (CLS, "3")
    assert {m.label: m.value for m in at.metric}["Explainer"] == "tree"
    assert "probability of class 1" in texts(at), "a decision tree's leaves are class fractions"


def test_without_parameters_the_champion_is_explained(app):
    at = app("explain.py")
    no_error(at)
    model = qp(at, "model")
    assert model and qp(at, "version")
    assert at.selectbox(key="explain-version").value == qp(at, "version")


def _log(c, request_id: str, version: str, features: dict, *, at: datetime, status: int = 200) -> None:
    from services.predictions.sql import SqlPredictionLog

    SqlPredictionLog(c.engine).write([PredictionRow(request_id, 0, ENDPOINT, at, version, "stable", CLS, features,
                                                    1, 4.0, status)])


@pytest.fixture
def logged(app, private_demo):
    c = private_demo()
    held_out = c.registry.reference_data(CLS, "4", kind="eval").drop(columns="target")
    now = datetime.now(UTC)
    for i in range(30):
        _log(c, f"req-{i}", "4", held_out.iloc[i].to_dict(), at=now - timedelta(minutes=i))
    _log(c, "no-inputs", "4", {"mean radius": 1.0}, at=now)
    app.held_out = held_out
    return app


def test_one_logged_prediction_is_explained_as_a_waterfall(logged):
    at = logged("explain.py", endpoint=ENDPOINT, request_id="req-7")
    no_error(at)
    shown = texts(at)
    assert "One prediction: request req-7 on cancer-screening" in shown
    assert "Answered by **breast-cancer-classifier v4**" in shown
    assert (qp(at, "model"), qp(at, "version")) == (CLS, "4"), "the version that answered is explained below"
    waterfall = next(f for t, f in figures(at).items() if t.startswith("Why this prediction"))["data"][0]
    assert waterfall["measure"][0] == "absolute" and waterfall["measure"][-1] == "total"
    xs = arr(waterfall["x"])
    base, pushes, output = xs[0], xs[1:-1], xs[-1]
    assert base + sum(pushes) == pytest.approx(output, abs=1e-9)
    steps = frame(at, "attribution")
    assert len(steps) == 31 and steps["attribution"].abs().is_monotonic_decreasing
    assert steps.set_index("feature").loc["mean radius", "value"] == pytest.approx(
        logged.held_out.iloc[7]["mean radius"])


def test_a_prediction_that_cannot_be_explained_says_why(logged):
    at = logged("explain.py", endpoint=ENDPOINT, request_id="nope")
    assert not at.exception
    assert any("no logged prediction 'nope'" in e.value for e in at.error)
    at = logged("explain.py", endpoint=ENDPOINT, request_id="no-inputs")
    assert not at.exception
    assert any("lacks 30 input(s)" in e.value for e in at.error)
    assert qp(at, "version") == "2", "the rest of the page goes on: the champion (v2) is explained below"
    assert {m.label: m.value for m in at.metric}.get("Explainer") == "linear"


def test_reference_vs_production_traffic(logged):
    at = logged("explain.py", model=CLS, version="4", drift="1")
    no_error(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == "30" and metrics["Attribution shift"].endswith("%")
    assert qp(at, "traffic") == ENDPOINT and qp(at, "window") == "-24h"
    assert "Reference: the 143 rows of v4's held-out frame" in texts(at)
    drift = frame(at, "rank reference")
    assert abs(drift["shift"].astype(float)).sum() > 0


def test_the_compare_page_shows_explanation_drift_only_when_opened(app):
    at = app("models.py", model=CLS, compare="2,4")
    no_error(at)
    assert not [d for d in at.dataframe if "attribution shift" in d.value.columns]
    at = app("models.py", model=CLS, compare="2,4", explain="1")
    no_error(at)
    summary = frame(at, "attribution shift")
    row = summary.iloc[0]
    assert (row["version"], row["against"], row["rows"]) == ("v4", "v2", 143)
    assert 0 < row["attribution shift"] <= 1 and row["explainers"] == "linear / tree"
    per_feature = frame(at, "share v4")
    ratio = per_feature.set_index("feature").loc["worst to mean radius ratio"]
    assert ratio["only in"] == "v4" and ratio["rank v2"] == "—"
