"""The Incidents page (AppTest) over a private copy of the demo: a canary that starts failing at a known moment,
the real alert evaluator firing canary-errors, and then on the page: the alert, the chart, what served at the
alert (the canary named), the canary start as first suspect, the timeline with links, the report, and the abort
from here with the alert linked in its audit entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.predictions import PredictionRow
from tests.ui.conftest import texts

CANCER = "cancer-screening"


def scripted_incident(c, endpoint: str = CANCER, *, now: datetime | None = None) -> dict:
    """A fresh canary started by alice 31 minutes before ``now`` (or just after the endpoint's last recorded
    change, if later: recorded at that time, the actions run on a container whose clock says so), 30 minutes of
    traffic with the canary failing 40 % of its answers for the last 12 (on a demo seeded minutes ago some canary
    rows come before its recorded start), and the alert evaluator run at ``now``. Returns what happened."""
    from services.alerts.runner import run_once
    from services.composition import build

    now = now or datetime.now(UTC)
    recorded = [ch.at for ch in c.history.changes(endpoint)]
    # 31 minutes ago, or just after the last recorded change if that is later (a demo seeded minutes ago)
    started = max([now - timedelta(minutes=31), *(t + timedelta(milliseconds=2) for t in recorded)])
    now = max(now, started + timedelta(milliseconds=2))  # the alert comes after the canary's start
    then = build(c.settings, clock=lambda: started)  # the same databases, its clock at the canary's start
    try:
        alice = then.directory.get("alice")
        ep = then.serving.get_endpoint(endpoint)
        seeded = ep.canary_version
        before_changes = started - timedelta(milliseconds=1)  # after every earlier change, before ours
        if ep.canary_version:
            then.actions.execute(then.actions.plan(alice, "abort_canary", endpoint), alice, "a clean start")
        canary = next(v.version for v in then.registry.list_versions(ep.model) if v.version != ep.stable_version)
        then.actions.execute(then.actions.plan(alice, "start_canary", endpoint, version=canary, weight=20), alice,
                             "try the challenger")
        ep = then.serving.get_endpoint(endpoint)
    finally:
        then.engine.dispose()
    failing_from = now - timedelta(minutes=12)
    rng = np.random.default_rng(4)
    rows = []
    for m in range(30):
        at = now - timedelta(minutes=30 - m)
        for version, role, n in ((ep.stable_version, "stable", 60), (ep.canary_version, "canary", 30)):
            for i in range(n):
                bad = role == "canary" and at >= failing_from and rng.random() < 0.4
                rows.append(PredictionRow(f"inc-{role}-{m}-{i}", 0, endpoint, at + timedelta(seconds=i), version,
                                          role, ep.model, {"x": 1.0}, None if bad else 1, 8.0, 503 if bad else 200,
                                          "boom" if bad else ""))
    c.predictions.write(rows)
    changes = run_once(c.alerts, c.policy, c.metrics, c.predictions, c.serving, lambda: now)
    return {"canary": ep.canary_version, "stable": ep.stable_version, "changes": changes, "now": now,
            "failing_from": failing_from, "seeded_canary": seeded, "before_changes": before_changes,
            "started": started}


def age_history(c, endpoint: str, by: timedelta) -> None:
    """Move the endpoint's recorded serving history back by ``by`` (a private copy of a demo seeded seconds
    ago: as if seeded earlier, so a scripted canary can start between the seed and now)."""
    from sqlalchemy import update

    from services.clock import iso
    from services.store.db import serving_changes, writing

    rows = c.history.changes(endpoint)
    with writing(c.engine) as conn:
        for i, ch in enumerate(rows):
            conn.execute(update(serving_changes).where(serving_changes.c.endpoint == endpoint,
                                                       serving_changes.c.at == iso(ch.at))
                         .values(at=iso(ch.at - by + timedelta(microseconds=i))))


@pytest.fixture
def incident(app, private_demo):
    c = private_demo()
    age_history(c, CANCER, timedelta(hours=2))
    app.story = scripted_incident(c)
    app.container = c
    return app


def test_the_alert_leads_to_what_served_the_suspect_and_the_timeline(incident):
    story = incident.story
    fired = [ch.alert.rule for ch in story["changes"] if ch.kind == "fired"]
    assert "canary-errors" in fired, f"the canary-errors rule fired: {story['changes']}"
    at = incident("incidents.py", endpoint=CANCER, **{"from": "-6h", "to": "now"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = texts(at)
    alerts = next(d.value for d in at.dataframe if "Rule" in getattr(d.value, "columns", []))
    assert {"canary-errors", "canary-errors-hourly"} <= set(alerts["Rule"]) and set(alerts["State"]) == {"firing"}
    assert at.selectbox(key="inc-alert").value == alerts["Id"].iloc[0] and _qp(at, "alert") == alerts["Id"].iloc[0]
    assert "What served at" in shown
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Canary"] == f"v{story['canary']}" and metrics["Stable"] == f"v{story['stable']}"
    suspects = next(d.value for d in at.dataframe if "Score" in getattr(d.value, "columns", []))
    assert f"canary v{story['canary']} started" in suspects["What"].iloc[0]
    events = next(d.value for d in at.dataframe if "Kind" in getattr(d.value, "columns", []))
    kinds = list(events["Kind"])
    assert kinds.index("serving change") < kinds.index("alert fired"), "the canary start comes before the alert"
    assert events["Open"].notna().all()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(t.get("name") == "events" for t in fig["data"]) and fig["layout"].get("shapes")
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles[:3] == ["Requests / s", "Error rate", "p95 latency (ms)"]
    assert titles[3].startswith("Live quality") and titles[4].startswith("Drift share")
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Incident report (Markdown)", "Incident report (JSON)"} <= labels


def test_what_served_at_a_moment_in_the_url(incident):
    story = incident.story
    # just before the incident's changes: the demo's own canary served then
    moment = story["before_changes"].strftime("%Y-%m-%dT%H:%M:%S.%f")
    at = incident("incidents.py", endpoint=CANCER, at=moment, **{"from": "-6h", "to": "now"})
    assert not at.exception and _qp(at, "at") == moment
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Canary"] == f"v{story['seeded_canary']}" != f"v{story['canary']}"
    early = (story["now"] - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    at = incident("incidents.py", endpoint=CANCER, at=early, **{"from": "-7d", "to": "now"})
    assert not at.exception and "cannot say what served" in texts(at)


def test_abort_from_the_incident_records_the_alert(incident):
    at = incident("incidents.py", identity="alice", endpoint=CANCER, **{"from": "-6h", "to": "now"})
    alert_id = at.selectbox(key="inc-alert").value
    assert not at.button(key="inc-abort").disabled
    at.button(key="inc-abort").click().run()
    assert "linked in the audit entry" in texts(at)
    at.text_area(key="reason").input("canary failing: canary-errors")
    at.button(key="confirm").click().run()
    assert not at.exception
    c = incident.container
    assert c.serving.get_endpoint(CANCER).canary_version is None
    entry = next(e for e in c.audit.entries(limit=5) if e.action == "abort_canary" and e.result == "ok")
    assert entry.details["context"]["alert"]["id"] == alert_id


def test_a_viewer_cannot_act_or_acknowledge(incident):
    at = incident("incidents.py", identity="carol", endpoint=CANCER, **{"from": "-6h", "to": "now"})
    assert at.button(key="inc-abort").disabled and at.button(key="inc-ack").disabled
    at = incident("incidents.py", identity="alice", endpoint=CANCER, **{"from": "-6h", "to": "now"})
    at.button(key="inc-ack").click().run()
    assert not at.exception and "alice" in texts(at)


def _qp(at, key):
    v = at.query_params[key]
    return v[0] if isinstance(v, list) else v


def test_the_overview_and_monitoring_lead_with_the_firing_alert(incident):
    for page, query in (("overview.py", {}), ("monitoring.py", {"endpoint": CANCER})):
        at = incident(page, **query)
        assert not at.exception, page
        banner = " ".join(e.value for e in at.error)
        assert "canary-errors" in banner and "firing" in banner and "/incidents?endpoint=" in banner, page
        assert "(page)" in banner, "the worst first: the page-severity rule, not the hourly ticket"
        table = next(d.value for d in at.dataframe if "Investigate" in getattr(d.value, "columns", []))
        assert table["State"].iloc[0] == "firing" and table["Rule"].iloc[0].startswith("canary-errors")
        assert table["Investigate"].iloc[0].startswith(f"/incidents?endpoint={CANCER}&alert=")
