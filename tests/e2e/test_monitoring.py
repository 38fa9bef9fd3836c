"""The Monitoring page in Chromium: an operator opens an endpoint's live view from the Deployments page,
sees stable and canary side by side with the significance test and the charts, changes the time range
(the URL follows), and a shared link restores the view."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import assert_no_exception, open_app, shot, wait_idle, widget
from tests.ui.test_monitoring_page import seed_traffic

pytestmark = pytest.mark.e2e
ENDPOINT = "diabetes-risk"  # the promotion flow test changes cancer-screening; this endpoint keeps its stable


@pytest.fixture(scope="module")
def traffic(e2e_env):
    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env(e2e_env))
    alice = c.directory.get("alice")
    started = False
    try:
        ep = c.serving.get_endpoint(ENDPOINT)
        if not ep.canary_version:  # give it a canary to compare with, as an operator would
            other = next(v.version for v in c.registry.list_versions(ep.model) if v.version != ep.stable_version)
            c.actions.execute(c.actions.plan(alice, "start_canary", ENDPOINT, version=other, weight=20), alice,
                              "e2e monitoring")
            started = True
        # two hours ago: outside the live gates' window, so the other browser tests' promotions are not gated
        # by this traffic (the gates read the last hour at most)
        yield seed_traffic(c, ENDPOINT, minutes=40, now=datetime.now(UTC) - timedelta(hours=2))
    finally:
        if started:  # leave the endpoint as the other tests expect it
            c.actions.execute(c.actions.plan(alice, "abort_canary", ENDPOINT), alice, "e2e monitoring done")
        c.engine.dispose()


def test_monitoring_shows_versions_side_by_side_and_keeps_the_view_in_the_url(page, traffic):
    assert traffic > 1000
    open_app(page, f"/deployments?endpoint={ENDPOINT}", "Deployments")
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("Live:")
    main.get_by_role("link", name="Monitoring").click()  # the endpoint's own link, not the sidebar's
    expect(page.locator('[data-testid="stMain"] h1').first).to_have_text("Monitoring")
    wait_idle(page)
    expect(main).to_contain_text("No requests on " + ENDPOINT)  # the last hour was quiet
    # The fixture wrote its traffic two hours back, behind the console's back; the Incidents tests read this
    # endpoint's last 6 hours before it (the console shares that read and re-reads it in the background), so,
    # as an operator told of new data would, refresh first.
    widget(page, "refresh").click()
    wait_idle(page)
    page.locator(".st-key-mon-range button").filter(has_text="6 hours").click()
    wait_idle(page)
    expect(page).to_have_url(re.compile(r"from=-6h"))
    expect(main).to_contain_text(re.compile(r"stable v\d"))
    expect(main).to_contain_text(re.compile(r"canary v\d"))
    expect(main).to_contain_text("two-proportion z-test")
    expect(main).to_contain_text("Mann–Whitney")
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(4)
    assert_no_exception(page)
    shot(page, "40-monitoring")
    shared = page.url
    page.goto(shared)  # a fresh session restores the same view from the URL
    wait_idle(page)
    expect(page.locator(".st-key-mon-range button[aria-checked='true'], .st-key-mon-range button[kind*='Active']")
           .first).to_contain_text("6 hours")
    expect(main).to_contain_text(re.compile(r"stable v\d"))
    assert_no_exception(page)
