"""The Drift page in Chromium: an analyst opens an endpoint's drift view for one version, sees the shifted
feature lead the severity table with its charts, picks another feature (the URL follows and a reload restores
it), and narrows the range to 24 hours where the shifted feature is marked drifted."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (
    LIVE,
    assert_no_exception,
    dataframe,
    grid_records,
    open_app,
    shot,
    wait_idle,
)
from tests.ui.test_drift_page import SHIFTED, seed_drift_traffic

pytestmark = pytest.mark.e2e
ENDPOINT = "cancer-screening"
OTHER = "mean radius"  # a feature that did not move: never first in the table


@pytest.fixture(scope="module")
def seeded_version(e2e_env) -> str:
    """72 hours of the endpoint's stable version ending three hours ago (outside the live gates' last hour, which
    the other browser tests' promotions read), ``SHIFTED`` moved by 4 SDs for the last 20; returns the version
    seeded (read back from the log: other tests change which version is stable).

    The shift covers nearly all of the 24-hour window the test narrows to, and by far more than its threshold:
    the window also holds the demo's own unshifted traffic for the version, and with the UI test's milder
    shift (2 SDs over half the window) that dilution once left the PSI just under 0.1."""
    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env(e2e_env))
    try:
        rows = seed_drift_traffic(c, ENDPOINT, now=datetime.now(UTC) - timedelta(hours=3), shift_hours=20, sds=4.0)
        assert rows == 72 * 60
        [logged] = c.predictions.rows(ENDPOINT, request_id="drift-71-0")
        return str(logged.version)
    finally:
        c.engine.dispose()


def _first_feature(page, feature: str, *, drifted: str | None = None) -> None:
    """The severity table's first row is ``feature`` (and says ``drifted``: yes / no)."""
    frame = dataframe(page.locator('[data-testid="stMain"]'))
    first_row = frame.locator('table[role="grid"] tbody [role="row"]').first
    expect(first_row.locator('[role="gridcell"]').first).to_have_text(feature)  # waits for a rerun to settle
    row = grid_records(frame)[0]
    assert row["Feature"] == feature, row
    if drifted is not None:
        assert row["Drifted"] == drifted, row


def pick_feature(page, name: str) -> None:
    """Pick ``name`` in the Feature select box by typing it: its list is virtualised (32 entries, only those in
    view are in the DOM), and "mean radius" is also part of "worst to mean radius ratio"."""
    combo = page.locator(".st-key-drift-feature input[role='combobox']")
    wait_idle(page)
    combo.scroll_into_view_if_needed()
    combo.click()
    combo.fill(name)
    choice = page.get_by_role("option").filter(has_text=re.compile(rf"^{re.escape(name)}$"))
    expect(choice).to_have_count(1)
    choice.click()
    expect(page.get_by_role("listbox")).to_have_count(0)
    expect(combo).to_have_value(name)
    wait_idle(page)


def test_drift_page_leads_with_the_shifted_feature_and_keeps_the_view_in_the_url(page, seeded_version):
    v = seeded_version
    open_app(page, f"/drift?endpoint={ENDPOINT}&version={v}&from=-7d&to=now", "Drift")
    main = page.locator('[data-testid="stMain"]')
    expect(page.locator('[data-testid="stApp"]')).to_have_attribute("data-test-script-state", "notRunning")
    expect(page.locator('[data-testid="stMain"] h1').first).to_have_text("Drift")
    expect(page.locator(".st-key-drift-version input[role='combobox']")).to_have_value(re.compile(rf"^v{v}\b"))
    expect(main).to_contain_text("Features by severity")
    expect(main).to_contain_text(f"v{v} of ")
    _first_feature(page, SHIFTED)

    charts = page.locator(f'{LIVE} [data-testid="stPlotlyChart"]')
    expect(charts).to_have_count(3)  # distribution, hourly mean, heatmap
    expect(charts.nth(0)).to_contain_text(f"{SHIFTED}: reference vs current")
    expect(charts.nth(1)).to_contain_text(f"{SHIFTED}: hourly mean")
    expect(charts.nth(2)).to_contain_text("Drift per")
    expect(charts.nth(2).locator("g.hm").first).to_be_attached()  # the heatmap is drawn
    expect(page.locator(".st-key-drift-feature input[role='combobox']")).to_have_value(SHIFTED)
    expect(page).to_have_url(re.compile(r"feature=mean(\+|%20)texture"))

    pick_feature(page, OTHER)
    expect(page).to_have_url(re.compile(r"feature=mean(\+|%20)radius"))
    expect(charts.nth(0)).to_contain_text(f"{OTHER}: reference vs current")
    expect(charts.nth(1)).to_contain_text(f"{OTHER}: hourly mean")
    assert_no_exception(page)

    page.goto(page.url)  # a reload is a new session: the URL alone restores the view
    wait_idle(page)
    expect(page.locator(".st-key-drift-feature input[role='combobox']")).to_have_value(OTHER)
    expect(page.locator(".st-key-drift-version input[role='combobox']")).to_have_value(re.compile(rf"^v{v}\b"))
    expect(charts.nth(0)).to_contain_text(f"{OTHER}: reference vs current")
    expect(page).to_have_url(re.compile(r"from=-7d"))

    page.locator(".st-key-drift-range button").filter(has_text="24 hours").click()
    wait_idle(page)
    expect(page).to_have_url(re.compile(r"from=-24h"))
    expect(page).to_have_url(re.compile(rf"version={v}\b"))
    expect(page.locator(".st-key-drift-feature input[role='combobox']")).to_have_value(OTHER)
    _first_feature(page, SHIFTED, drifted="yes")
    expect(charts).to_have_count(3)
    assert_no_exception(page)
    shot(page, "50-drift")
    assert_no_exception(page)
