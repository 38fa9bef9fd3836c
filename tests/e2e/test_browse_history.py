"""Browsing model history in a real browser: models → a model → a version → compare, and deep links."""

from __future__ import annotations

import re
import subprocess
from urllib.parse import quote, urlencode

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (
    CLASSIFIER,
    REGRESSOR,
    ROOT,
    assert_no_exception,
    dataframe,
    grid_records,
    metric,
    multiselect,
    open_app,
    open_tab,
    python,
    select_option,
    shot,
    wait_idle,
    widget,
)

pytestmark = pytest.mark.e2e

UNICODE_MODEL = "modèle ü ✓ 名前"


def _heading(page):
    return page.locator('[data-testid="stMain"] h1').first


def _click_models_row(page, row: int) -> None:
    """Select a row of the models table (single-row selection opens the model).

    The table is a canvas: click the row's selection marker (first column), whose position is
    fixed by the grid's header and row height (35 px each in Streamlit's theme).
    """
    canvas = page.locator(".st-key-models-table canvas").first
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 35 * row + 17)


def test_browse_model_version_and_compare(page):
    # the list shows both demo models
    open_app(page, "/models", "Models")
    table = page.locator(".st-key-models-table")
    expect(table).to_contain_text(CLASSIFIER)
    expect(table).to_contain_text(REGRESSOR)
    rows = grid_records(table)
    names = [r["Model"] for r in rows]
    assert {CLASSIFIER, REGRESSOR} <= set(names), rows
    classifier = next(r for r in rows if r["Model"] == CLASSIFIER)
    assert classifier["Open"] == f"/models?{urlencode({'model': CLASSIFIER})}"
    assert "@champion" in classifier["Aliases"] and "@challenger" in classifier["Aliases"], classifier
    assert int(classifier["Versions"]) >= 4, classifier
    shot(page, "01-models-list")

    # click into the classifier (select its row)
    _click_models_row(page, names.index(CLASSIFIER))
    expect(_heading(page)).to_have_text(CLASSIFIER)
    expect(page).to_have_url(re.compile(rf"/models\?model={CLASSIFIER}$"))
    expect(page.get_by_role("heading", name="Versions", exact=True)).to_be_visible()
    versions = grid_records(dataframe(page.locator('[data-testid="stMain"]')))
    assert len(versions) >= 4, versions
    assert any("@champion" in v["Aliases"] for v in versions), versions
    expect(metric(page, "Champion")).to_contain_text(re.compile(r"v\d+"))
    # the metric chart is drawn when its expander is opened (Plotly costs the browser a 4.7 MB script)
    expect(page.locator(".st-key-metric-chart")).to_have_count(0)
    page.locator(".st-key-metric-chart-open summary").click()
    expect(page).to_have_url(re.compile(r"&chart=1$"))
    chart = page.locator(".st-key-metric-chart")
    chart.scroll_into_view_if_needed()
    expect(chart.locator('[data-testid="stPlotlyChart"], .js-plotly-plot').first).to_be_visible()
    expect(chart.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
    assert_no_exception(page)
    shot(page, "02-model-page")

    # open a version through the picker and the button
    select_option(page, "version-picker", re.compile(r"^v1( \(champion\))?$"))
    widget(page, "open-version").click()
    expect(_heading(page)).to_have_text(f"{CLASSIFIER} · v1")
    expect(page).to_have_url(re.compile(rf"model={CLASSIFIER}&version=1$"))
    shot(page, "03-version-overview")

    panel = open_tab(page, "Parameters")
    params = grid_records(dataframe(panel))
    assert params and set(params[0]) == {"parameter", "value"}, params
    assert any(p["parameter"] == "C" for p in params), params
    shot(page, "04-version-parameters")

    panel = open_tab(page, "Metrics")
    metrics = {m["metric"]: m for m in grid_records(dataframe(panel))}
    assert {"accuracy", "roc_auc"} <= set(metrics), metrics
    assert 0.5 < float(metrics["accuracy"]["value"]) <= 1.0, metrics["accuracy"]
    shot(page, "05-version-metrics")

    panel = open_tab(page, "Signature")
    expect(panel).to_contain_text("Inputs")
    expect(panel).to_contain_text("Outputs")
    inputs = grid_records(dataframe(panel, 0))
    assert {"name": "mean radius", "type": "double"} in inputs, inputs[:5]
    shot(page, "06-version-signature")

    panel = open_tab(page, "Dependencies")
    reqs = [r["requirement"] for r in grid_records(dataframe(panel))]
    assert any(r.startswith("scikit-learn") for r in reqs), reqs
    assert any(r.startswith("mlflow") for r in reqs), reqs
    shot(page, "07-version-dependencies")

    panel = open_tab(page, "Lineage")
    datasets = grid_records(dataframe(panel))
    assert datasets and all(d["dataset"] for d in datasets), datasets
    assert {d["context"] for d in datasets} & {"training", "train"}, datasets
    expect(panel).to_contain_text("Source commit:")
    shot(page, "08-version-lineage")
    assert_no_exception(page)

    # go back (the page's own back link) and compare two versions
    page.locator('[data-testid="stPageLink"] a').filter(has_text=CLASSIFIER).click()
    expect(_heading(page)).to_have_text(CLASSIFIER)
    # the browser URL must follow the in-app link, or the next widget rerun sends ?version=1 back
    expect(page).to_have_url(re.compile(rf"/models\?model={CLASSIFIER}$"))
    multiselect(page, "compare-picker", ["v1", "v2"])
    expect(_heading(page)).to_have_text(CLASSIFIER)  # still on the model page after the widget reruns
    widget(page, "open-compare").click()
    expect(_heading(page)).to_have_text(f"Compare {CLASSIFIER}")
    expect(page).to_have_url(re.compile(r"compare=1(%2C|,)2"))
    _check_compare_view(page, "09-compare")


def _check_compare_view(page, name: str) -> None:
    expect(page.locator('[data-testid="stMain"]')).to_contain_text("Baseline: v1")
    panel = open_tab(page, "Parameters")
    diff = grid_records(dataframe(panel))
    assert diff, "no parameter differs between v1 and v2"
    assert {"v1", "v2"} <= set(diff[0]), diff[0]
    c = next((r for r in diff if r.get("key") == "C"), None)
    assert c is not None and c["v1"] != c["v2"], diff
    shot(page, f"{name}-parameters")

    panel = open_tab(page, "Metrics")
    deltas = {r["metric"]: r for r in grid_records(dataframe(panel))}
    assert "accuracy" in deltas, deltas
    row = deltas["accuracy"]
    assert {"v1", "v2", "Δ v2"} <= set(row), row
    assert abs(float(row["v2"]) - float(row["v1"]) - float(row["Δ v2"])) < 1e-3, row
    shot(page, f"{name}-metrics")
    assert_no_exception(page)


def test_compare_deep_link_restores_the_view(page):
    open_app(page, f"/models?model={CLASSIFIER}&compare=1,2", f"Compare {CLASSIFIER}")
    _check_compare_view(page, "10-compare-deep-link")


def test_version_deep_link(page):
    open_app(page, f"/models?model={CLASSIFIER}&version=2", f"{CLASSIFIER} · v2")
    expect(page.get_by_role("tab", name="Lineage", exact=True)).to_be_visible()
    assert_no_exception(page)


def test_unknown_model_deep_link_says_so_without_traceback(page):
    open_app(page, "/models?model=no-such-model-xyz")
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="does not exist")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("no-such-model-xyz")
    expect(page.locator('[data-testid="stPageLink"] a').filter(has_text="Back to all models")).to_be_visible()
    assert_no_exception(page)
    shot(page, "11-unknown-model")


def test_unknown_unicode_model_name_in_url(page):
    name = "inconnu ü ✓ 名前 'x'%_"
    open_app(page, f"/models?{urlencode({'model': name})}")
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="does not exist")
    expect(alert).to_contain_text(name)  # decoded exactly, quote and % included
    assert_no_exception(page)


@pytest.fixture(scope="module")
def unicode_model(e2e_env):
    """A registered model with a unicode name and one version (its files do not exist)."""
    script = ("import os, sys; from mlflow import MlflowClient; u = os.environ['MLFLOW_TRACKING_URI']; "
              "c = MlflowClient(u, u); n = sys.argv[1]; "
              "c.create_registered_model(n, description='A model whose name is not ASCII.'); "
              "c.create_model_version(n, 'file:///nonexistent/model', description='no files')")
    proc = subprocess.run([python(), "-c", script, UNICODE_MODEL], cwd=ROOT, env=e2e_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return UNICODE_MODEL


def test_unicode_model_name_round_trips_through_urls(page, unicode_model):
    open_app(page, f"/models?model={quote(unicode_model)}", unicode_model)
    expect(_heading(page)).to_have_text(unicode_model)
    expect(metric(page, "Versions")).to_contain_text("1")
    assert_no_exception(page)
    shot(page, "12-unicode-model")

    # the app's own navigation keeps the name intact in the URL
    select_option(page, "version-picker", "v1")
    widget(page, "open-version").click()
    expect(_heading(page)).to_have_text(f"{unicode_model} · v1")
    expect(page).to_have_url(re.compile(re.escape(urlencode({"model": unicode_model})) + "&version=1$"))
    # its files are missing: a warning, not a crash
    expect(page.locator('[data-testid="stAlert"]').filter(has_text="does not exist")).to_be_visible()
    assert_no_exception(page)

    # and the list's search finds it
    open_app(page, f"/models?q={quote('modèle')}", "Models")
    table = page.locator(".st-key-models-table")
    expect(table).to_contain_text(unicode_model)
    wait_idle(page)
    assert [r["Model"] for r in grid_records(table)] == [unicode_model]
