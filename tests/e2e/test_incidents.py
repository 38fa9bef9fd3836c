"""The Incidents page in Chromium, as the on-call engineer paged by a failing canary: the alert is listed firing,
"what served at" the alert's moment names the canary, the canary's start leads the suspects; a click on the chart
well before the canary started shows what served then (the URL follows); then, as an operator, the canary is
aborted from the page and the audit entry names the alert it answered."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (
    LIVE,
    act_as,
    assert_no_exception,
    confirm_dialog,
    grid_records,
    metric,
    open_app,
    select_option,
    shot,
    wait_idle,
    widget,
)
from tests.ui.test_incidents_page import age_history, scripted_incident

pytestmark = pytest.mark.e2e
# the promotion flow test changes cancer-screening (and the live gates it reads would see this failing canary);
# diabetes-risk serves no canary in the demo and takes the defaults' alert rules, canary-errors among them
ENDPOINT = "diabetes-risk"


@pytest.fixture(scope="module")
def incident(e2e_env):
    """The scripted incident on ``ENDPOINT`` (a fresh canary, 30 minutes of traffic, the canary failing from 12
    minutes ago, the real evaluator firing canary-errors). Afterwards the endpoint is left as the other tests
    expect it: no canary, and no traffic in the last hour (the Monitoring test reads that hour as quiet), so the
    scripted rows are taken out of the prediction log again and the evaluator resolves the alert."""
    from services.alerts.runner import run_once
    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env(e2e_env))
    alice = c.directory.get("alice")
    # the store was seeded minutes ago: its serving history is moved back two hours, so the scripted canary
    # starts between the seed's state and now with its traffic after it
    age_history(c, ENDPOINT, timedelta(hours=2))
    story: dict = {}
    try:
        story = scripted_incident(c, ENDPOINT)
        story["container"] = c
        yield story
    finally:
        try:
            if c.serving.get_endpoint(ENDPOINT).canary_version:  # the test failed before its abort
                c.actions.execute(c.actions.plan(alice, "abort_canary", ENDPOINT), alice, "e2e incidents done")
            _remove_scripted_traffic(c, since=story.get("now", datetime.now(UTC)) - timedelta(minutes=31))
            run_once(c.alerts, c.policy, c.metrics, c.predictions, c.serving, lambda: datetime.now(UTC))
        finally:
            c.engine.dispose()


def _remove_scripted_traffic(c, *, since: datetime) -> None:
    """Delete what ``scripted_incident`` wrote on ``ENDPOINT``: its rows (request ids ``inc-…``), and the minute
    rollups and hourly histograms of the endpoint from ``since`` on (nothing else writes this endpoint's last
    hour in the e2e session)."""
    from sqlalchemy import delete

    from services.clock import iso
    from services.predictions import minute_of
    from services.predictions.histograms import hour_of
    from services.store.tables import feature_histograms, prediction_rollups, predictions

    with c.engine.begin() as conn:
        conn.execute(delete(predictions).where(predictions.c.endpoint == ENDPOINT,
                                               predictions.c.request_id.like("inc-%")))
        conn.execute(delete(prediction_rollups).where(prediction_rollups.c.endpoint == ENDPOINT,
                                                      prediction_rollups.c.minute >= iso(minute_of(since))))
        conn.execute(delete(feature_histograms).where(feature_histograms.c.endpoint == ENDPOINT,
                                                      feature_histograms.c.hour >= iso(hour_of(since))))


def _frame_with_column(scope, column: str):
    """The (live) st.dataframe in ``scope`` that has a column headed ``column``."""
    return scope.locator(f'{LIVE} [data-testid="stDataFrame"]').filter(
        has=scope.page.locator('[role="columnheader"]', has_text=re.compile(rf"^{re.escape(column)}$")))


def _served_heading(scope):
    return scope.locator(f'{LIVE} h3').filter(has_text="What served at")


def _click_point_before(page, moment: datetime) -> None:
    """Click a point of the chart's first trace (the first version's request rate; its steps before the traffic
    are zeros) that lies well before ``moment``. Plotly finds the point under the mouse from its drag layer
    (the point's own element takes no pointer events), so hover it first, then click at the same place."""
    trace = page.locator(f'{LIVE} [data-testid="stPlotlyChart"] .scatterlayer .trace').first
    points = trace.locator("path.point")
    expect(points.first).to_be_attached()
    # each point element carries its calcdata (x in ms on a date axis, y): pick the one nearest 20 minutes back
    index = trace.evaluate("""(t, target) => {
        const pts = [...t.querySelectorAll('path.point')].map((p, i) => ({i, x: p.__data__.x, y: p.__data__.y}));
        const busy = pts.filter(p => p.y !== undefined && p.x <= target);
        busy.sort((a, b) => Math.abs(a.x - target) - Math.abs(b.x - target));
        return busy.length ? busy[0].i : -1;
    }""", _epoch_ms(moment - timedelta(minutes=20)))
    assert index >= 0, "no point before the canary started on the request-rate line"
    point = points.nth(index)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    assert box, "the picked point has no box"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 15, y)
    page.mouse.move(x, y, steps=5)
    expect(page.locator(f'{LIVE} [data-testid="stPlotlyChart"] .hoverlayer .hovertext').first).to_be_attached()
    page.mouse.click(x, y)


def _epoch_ms(at: datetime) -> float:
    """``at`` as Plotly places it on a date axis of UTC times (ms since the epoch)."""
    return at.timestamp() * 1000


def test_on_call_finds_the_canary_and_aborts_it_from_the_incident(new_context, incident):
    c, canary, stable = incident["container"], incident["canary"], incident["stable"]
    fired = [ch.alert for ch in incident["changes"] if ch.kind == "fired" and ch.alert.endpoint == ENDPOINT]
    assert "canary-errors" in [a.rule for a in fired], f"canary-errors fired on {ENDPOINT}: {incident['changes']}"
    alert = next(a for a in fired if a.rule == "canary-errors")
    started = incident["before_changes"]  # just before the canary's start was recorded

    page = new_context().new_page()
    open_app(page, f"/incidents?endpoint={ENDPOINT}&from=-6h&to=now", "Incidents")
    main = page.locator('[data-testid="stMain"]')

    # the alert, listed firing and picked (its id in the URL)
    alerts = _frame_with_column(main, "Rule")
    expect(alerts).to_have_count(1)
    rows = grid_records(alerts)
    row = next((r for r in rows if r["Rule"] == "canary-errors"), None)
    assert row is not None and row["State"] == "firing", rows
    if not re.search(rf"[?&]alert={re.escape(str(alert.id))}(&|$)", page.url):  # another alert is listed first
        select_option(page, "inc-alert", re.compile(r"canary-errors \(page\)"))
    expect(page).to_have_url(re.compile(rf"[?&]alert={re.escape(str(alert.id))}(&|$)"))

    # what served at the alert's moment: the new canary
    expect(_served_heading(main)).to_have_count(1)
    expect(metric(page, "Canary")).to_contain_text(f"v{canary}")
    expect(metric(page, "Stable")).to_contain_text(f"v{stable}")

    # the suspects: the canary's start first
    suspects = _frame_with_column(main, "Score")
    expect(suspects).to_have_count(1)
    first = grid_records(suspects)[0]
    assert first["Rank"] == "1" and f"canary v{canary} started" in first["What"], first

    chart = page.locator(f'{LIVE} [data-testid="stPlotlyChart"]')
    expect(chart).to_have_count(1)
    expect(chart.locator(".scatterlayer .trace").first).to_be_attached()
    assert_no_exception(page)
    shot(page, "60-incident-alert")

    # a click on the request-rate line well before the canary started: what served then
    _click_point_before(page, started)
    expect(page, "a click on a point of the chart sets at= in the URL").to_have_url(
        re.compile(r"[?&]at=\d{4}-\d\d-\d\dT\d\d(:|%3A)\d\d"))
    wait_idle(page)
    at_text = re.search(r"[?&]at=([^&]+)", page.url).group(1).replace("%3A", ":")
    clicked = datetime.fromisoformat(at_text).replace(tzinfo=UTC)
    assert clicked < started - timedelta(minutes=10), (clicked, started)
    served = main.locator('[data-testid="stColumn"]').filter(has=_served_heading(page))
    expect(served).to_have_count(1)
    expect(_served_heading(main)).to_contain_text(clicked.strftime("%Y-%m-%d %H:%M"))
    # the seed's state (its history moved two hours back): the stable version, not the new canary
    expect(served).to_contain_text(re.compile(r"Canary weight|cannot say what served"))
    expect(metric(page, "Canary").filter(has_text=f"v{canary}")).to_have_count(0)
    assert_no_exception(page)
    shot(page, "61-incident-what-served-before")

    # alice (an operator) aborts the canary from here
    act_as(page, "alice")
    abort = widget(page, "inc-abort")
    expect(abort).to_be_enabled()
    expect(abort).to_contain_text(f"Abort canary v{canary}")
    abort.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"In answer to alert canary-errors ({alert.id})")
    expect(dialog).to_contain_text(f"Abort canary on {ENDPOINT}")
    expect(dialog.locator(".st-key-reason textarea")).to_be_visible()  # the dialog is drawn to its end
    shot(page, "62-incident-abort-dialog")
    confirm_dialog(page, "canary failing: canary-errors (e2e)", "Confirm")
    expect(dialog).to_be_hidden()
    flash = page.locator(f'{LIVE} [data-testid="stAlert"]').filter(has_text=f"on {ENDPOINT}: done")
    expect(flash).to_be_visible()
    expect(widget(page, "inc-abort")).to_be_disabled()
    expect(widget(page, "inc-abort")).not_to_contain_text(f"v{canary}")
    assert_no_exception(page)
    shot(page, "63-incident-aborted")
    page.locator('.st-key-inc-abort:not([data-stale="true"]) [data-testid="stTooltipHoverTarget"]').first.hover()
    expect(page.locator('[data-testid="stTooltipContent"]')).to_contain_text("no canary runs on this endpoint")

    assert c.serving.get_endpoint(ENDPOINT).canary_version is None
    entry = next(e for e in c.audit.entries(limit=20, action="abort_canary") if e.result == "ok")
    assert entry.actor == "alice" and entry.details["context"]["alert"]["id"] == alert.id, entry.details
