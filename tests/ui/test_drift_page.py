"""The Drift page (AppTest) over a private copy of the demo with three days of traffic written through the
prediction log (the alarms learn their baseline from the first two), one feature moved by 2 reference SDs for
the last 12 hours: the verdict, the features by severity, the selected feature's distributions and mean with
its alarm, the heatmap, the URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.drift.profiles import ensure_profile
from services.predictions import PredictionRow
from tests.ui.conftest import texts

CANCER = "cancer-screening"
SHIFTED = "mean texture"


def seed_drift_traffic(c, endpoint: str = CANCER, *, hours: int = 72, per_hour: int = 60, shift_hours: int = 12,
                       now: datetime | None = None, sds: float = 2.0) -> int:
    """Rows of the endpoint's stable version resampled from its training reference; ``SHIFTED`` moves by
    ``sds`` reference SDs for the last ``shift_hours``. Returns the rows written."""
    ep = c.serving.get_endpoint(endpoint)
    ensure_profile(c.predictions, c.registry, ep.model, ep.stable_version)
    ref = c.registry.reference_data(ep.model, ep.stable_version)
    features = [col for col in ref.columns if col != "target"]
    sd = float(ref[SHIFTED].std())
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    rng = np.random.default_rng(9)
    rows = []
    for h in range(hours):
        at = now - timedelta(hours=hours - h)
        shift = sds * sd if h >= hours - shift_hours else 0.0
        for i, k in enumerate(rng.integers(0, len(ref), per_hour)):
            values = {f: float(ref[f].iloc[k]) for f in features}
            values[SHIFTED] += shift
            rows.append(PredictionRow(f"drift-{h}-{i}", 0, endpoint, at + timedelta(seconds=i * 40),
                                      ep.stable_version, "stable", ep.model, values, int(ref["target"].iloc[k]),
                                      5.0, 200))
    c.predictions.write(rows)
    return len(rows)


@pytest.fixture
def drift(app, private_demo):
    app.rows = seed_drift_traffic(private_demo())
    return app


def test_the_drifted_feature_leads_with_its_distribution_mean_alarm_and_heatmap(drift):
    at = drift("drift.py", endpoint=CANCER, **{"from": "-24h", "to": "now"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = texts(at)
    assert "Drift" in shown and "reference: training data (reference/train.parquet)" in shown
    table = at.dataframe[0].value
    table = getattr(table, "data", table)  # a Styler's frame
    assert table["Feature"].iloc[0] == SHIFTED and table["Drifted"].iloc[0] == "yes"
    # the window's hourly bins: 24 hours of the seeded traffic, or 23 when the page's "now" (rounded up to 30 s)
    # has crossed into the next hour since the seeding (a run in the last seconds of an hour)
    rows = int(table["Rows"].iloc[0])
    assert rows in (23 * 60, 24 * 60) and (table["Rows"] == rows).all(), table["Rows"]
    assert (table["Drifted"] == "yes").sum() < len(table) / 2
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Dataset"] == "No drift" and metrics["Requests in window"] == f"{rows:,}"
    assert at.selectbox(key="drift-feature").value == SHIFTED
    assert _qp(at, "feature") == SHIFTED and _qp(at, "version") == at.selectbox(key="drift-version").value
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any("reference vs current" in t for t in titles) and any("hourly mean" in t for t in titles)
    heat = next(f for f in figs if "period" in f["layout"]["title"]["text"])
    assert heat["data"][0]["y"][0] == SHIFTED and "hovertemplate" in heat["data"][0]
    downloads = {b.proto.label for b in at.get("download_button")}
    assert {"Download CSV", "Download heatmap CSV"} <= downloads
    # three days: the Page–Hinkley alarm on the feature's hourly mean, marked on its chart and in the table
    at.segmented_control(key="drift-range").set_value("-7d").run()
    assert _qp(at, "from") == "-7d" and not at.exception
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    mean = next(f for f in figs if "hourly mean" in f["layout"]["title"]["text"])
    assert any(s.get("line", {}).get("color") == "#cf222e" for s in mean["layout"].get("shapes", [])), \
        "the Page–Hinkley alarm is marked on the mean chart"
    alarms = at.dataframe[1].value
    assert SHIFTED in set(alarms["What"]) and "Page–Hinkley" in set(alarms["Detector"])
    week = at.dataframe[0].value
    week = getattr(week, "data", week).set_index("Feature")
    drifted, periods = map(int, week.loc[SHIFTED, "Drifted periods"].split(" of "))
    assert 0 < drifted < periods, "drifted late in the window: some periods, not all"
    assert all(p.startswith("0 of") for f, p in week["Drifted periods"].items() if f != SHIFTED)


def test_the_url_restores_feature_and_range_and_bad_input_is_said_plainly(drift):
    at = drift("drift.py", endpoint=CANCER, feature="mean radius", **{"from": "-24h", "to": "now"})
    assert at.selectbox(key="drift-feature").value == "mean radius" and not at.exception
    assert at.segmented_control(key="drift-range").value == "-24h"
    at = drift("drift.py", endpoint=CANCER, version="999", **{"from": "-7d", "to": "now"})
    assert not at.exception and "no reference profile" in " ".join(e.value for e in at.error)
    at = drift("drift.py", endpoint="diabetes-risk")
    assert not at.exception and "No request of a known version on **diabetes-risk**" in texts(at)
    at = drift("drift.py", endpoint=CANCER, **{"from": "someday", "to": "now"})
    assert not at.exception and "is not now, -30m/-24h/-7d" in texts(at)


def _qp(at, key):
    v = at.query_params[key]
    return v[0] if isinstance(v, list) else v
