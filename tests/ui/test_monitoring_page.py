"""The Monitoring page (AppTest) over a private copy of the demo with traffic written through the prediction
log: stable and canary side by side, the significance tests, the charts, the range in the URL, CSVs; and the
live line on the Deployments and Overview pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.predictions import PredictionRow
from tests.ui.conftest import texts

CANCER = "cancer-screening"


def seed_traffic(c, endpoint: str, minutes: int = 50, now: datetime | None = None) -> int:
    """Stable 30 requests/min at ~1 % errors, canary 8/min at ~10 %, labels for most; returns rows written."""
    from services.predictions.sql import SqlPredictionLog

    ep = c.serving.get_endpoint(endpoint)
    now = now or datetime.now(UTC)
    rng = np.random.default_rng(3)
    rows, labels = [], []
    for m in range(minutes):
        at = now - timedelta(minutes=minutes - m)
        for version, role, n, p_err, lat in ((ep.stable_version, "stable", 30, 0.01, 25.0),
                                             (ep.canary_version, "canary", 8, 0.10, 45.0)):
            for i in range(n):
                rid = f"{role}-{m}-{i}"
                err = rng.random() < p_err
                pred = int(rng.random() < 0.6)
                rows.append(PredictionRow(rid, 0, endpoint, at + timedelta(seconds=i), version, role, ep.model,
                                          {"x": 1.0}, None if err else pred, float(rng.exponential(lat)),
                                          500 if err else 200))
                if not err and rng.random() < 0.8:
                    labels.append((rid, 0, pred if rng.random() < 0.9 else 1 - pred))
    log = SqlPredictionLog(c.engine)
    log.write(rows)
    log.add_labels(labels)
    return len(rows)


@pytest.fixture
def mon(app, private_demo):
    app.rows = seed_traffic(private_demo(), CANCER)
    return app


def test_monitoring_shows_stable_and_canary_with_the_tests_and_charts(mon):
    at = mon("monitoring.py", endpoint=CANCER)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Monitoring" in shown and not at.error, [e.value for e in at.error]
    assert "stable v2" in shown and "canary v4" in shown
    metrics = {m.label: m.value for m in at.metric}
    assert "Error rate" in metrics and "p95 latency" in metrics and "Accuracy" in metrics
    tests = at.dataframe[0].value
    assert list(tests["Metric"]) == ["error rate", "latency"]
    assert tests["Test"].iloc[0].startswith("two-proportion z-test") and tests["p-value"].iloc[0] != "—"
    assert "%" in tests["Smallest detectable increase"].iloc[0]
    assert "detects an error-rate increase of" in shown
    charts = [el for el in at.main if getattr(el, "type", "") == "plotly_chart"] or at.get("plotly_chart")
    assert len(charts) == 4, "request rate, error rate, latency, live quality"
    downloads = [b.proto.label for b in at.get("download_button")]
    assert {"Download request rate CSV", "Download error rate CSV", "Download latency CSV"} <= set(downloads)
    assert at.query_params["from"] == ["-1h"] or at.query_params["from"] == "-1h"


def test_latency_chart_carries_the_policy_slo_line(mon):
    import json

    at = mon("monitoring.py", endpoint=CANCER)
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    latency = next(f for f in figs if f["layout"]["title"]["text"] == "Latency")
    shapes = latency["layout"].get("shapes", [])
    assert any(s.get("y0") == 500 for s in shapes), "the p95 SLO of deploy/policy.yaml"
    names = {t["name"] for t in latency["data"]}
    assert {"stable v2 p50", "stable v2 p95", "stable v2 p99", "canary v4 p95"} <= names
    assert "hovertemplate" in latency["data"][0]


def test_range_is_restored_from_the_url_and_written_back(mon):
    at = mon("monitoring.py", endpoint=CANCER, **{"from": "-15m", "to": "now"})
    assert at.segmented_control(key="mon-range").value == "-15m"
    at.segmented_control(key="mon-range").set_value("-7d").run()
    assert _qp(at, "from") == "-7d" and _qp(at, "to") == "now"
    start = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    at = mon("monitoring.py", endpoint=CANCER, **{"from": start, "to": "now"})
    assert at.segmented_control(key="mon-range").value == "custom"
    assert at.text_input(key="mon-from").value == start and not at.exception


def test_no_traffic_and_a_bad_range_are_said_plainly(mon):
    at = mon("monitoring.py", endpoint="diabetes-risk")
    assert "No requests on **diabetes-risk**" in texts(at) and not at.exception
    at = mon("monitoring.py", endpoint=CANCER, **{"from": "yesterday-ish", "to": "now"})
    assert "is not now, -30m/-24h/-7d" in texts(at) and not at.exception


def test_auto_refresh_toggle_keeps_the_page_working(mon):
    at = mon("monitoring.py", endpoint=CANCER)
    at.toggle(key="mon-auto").set_value(True).run()
    assert not at.exception and "canary v4" in texts(at)


def test_deployments_and_overview_show_the_live_rate(mon):
    at = mon("deployments.py", endpoint=CANCER)
    assert not at.exception
    assert "req/s" in texts(at) and "errors (last 5 min)" in texts(at)
    at = mon("overview.py")
    assert not at.exception and "req/s" in texts(at)


def _qp(at, key):
    v = at.query_params[key]
    return v[0] if isinstance(v, list) else v


def test_recent_predictions_link_to_their_explanation(mon):
    at = mon("monitoring.py", endpoint=CANCER)
    assert not at.exception and "Recent predictions" in texts(at)
    recent = next(d.value for d in at.dataframe if "Explain" in getattr(d.value, "columns", []))
    assert len(recent) == 50 and recent["Time"].is_monotonic_decreasing
    first = recent.iloc[0]
    assert first["Explain"] == f"/explain?endpoint={CANCER}&request_id={first['Request']}"
    assert set(recent["Role"]) <= {"stable", "canary"}
