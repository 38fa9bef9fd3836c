"""The Explanations page in Chromium: a version's SHAP charts with the explainer stated, the dependence feature in
a URL a fresh session restores, and one logged prediction's waterfall from its deep link."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import CLASSIFIER, assert_no_exception, open_app, select_option, shot, wait_idle

pytestmark = pytest.mark.e2e
LOG_ENDPOINT = "explain-e2e"  # an endpoint name of its own in the log: the monitoring tests never read it


@pytest.fixture(scope="module")
def logged_request(e2e_env):
    """One prediction of the classifier's v4 in the prediction log, as the ingest would have stored it."""
    from services.composition import build
    from services.predictions import PredictionRow
    from services.settings import Settings

    c = build(Settings.from_env(e2e_env))
    try:
        row = c.registry.reference_data(CLASSIFIER, "4", kind="eval").drop(columns="target").iloc[3].to_dict()
        c.predictions.write([PredictionRow("e2e-explain-1", 0, LOG_ENDPOINT, datetime.now(UTC), "4", "stable",
                                           CLASSIFIER, row, 1, 6.0, 200)])
    finally:
        c.engine.dispose()
    return "e2e-explain-1"


def test_a_version_is_explained_with_its_charts_and_the_view_is_in_the_url(page, new_context):
    open_app(page, f"/explain?model={CLASSIFIER}&version=4", "Explanations")
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("TreeExplainer (path-dependent TreeSHAP)")  # the stated explainer
    expect(main).to_contain_text("log-odds of class 1")
    expect(main).to_contain_text("the 143 rows of v4's held-out frame")
    charts = page.locator('[data-testid="stPlotlyChart"]')
    expect(charts).to_have_count(3)  # importance, beeswarm, dependence
    expect(charts.nth(0)).to_contain_text("Global importance")
    expect(charts.nth(1)).to_contain_text("Beeswarm")
    expect(charts.nth(1).locator("g.points path").first).to_be_attached()  # the swarm's points are drawn
    assert_no_exception(page)
    select_option(page, "explain-feature", "mean texture")
    expect(page).to_have_url(re.compile(r"feature=mean(\+|%20)texture"))
    expect(charts.nth(2)).to_contain_text("Dependence: mean texture")
    shot(page, "explain-version")
    shared = page.url
    other = new_context().new_page()  # a new session from the shared link
    other.goto(shared)
    wait_idle(other)
    expect(other.locator(".st-key-explain-feature input[role='combobox']")).to_have_value("mean texture")
    expect(other.locator(".st-key-explain-version input[role='combobox']")).to_have_value(re.compile(r"^v4"))


def test_one_logged_prediction_opens_as_a_waterfall_from_its_link(page, logged_request):
    open_app(page, f"/explain?endpoint={LOG_ENDPOINT}&request_id={logged_request}", "Explanations")
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text(f"One prediction: request {logged_request} on {LOG_ENDPOINT}")
    expect(main).to_contain_text(f"Answered by {CLASSIFIER} v4")
    waterfall = page.locator('[data-testid="stPlotlyChart"]').first
    expect(waterfall).to_contain_text("Why this prediction")
    expect(waterfall).to_contain_text("base value")
    expect(page).to_have_url(re.compile(r"version=4"))  # the version that answered is explained below
    assert_no_exception(page)
    shot(page, "explain-prediction")
