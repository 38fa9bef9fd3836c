"""The Capacity block of a local endpoint (issue 12, local replicas): replicas now from the gateway's latest sample,
its replicas over time beside request rate and p95 (one Plotly figure, shared x), the empty state when the gateway
never ran, and Set scaling applied through its dry run on the local backend."""

from __future__ import annotations

from datetime import timedelta

from tests.ui.conftest import texts

EP = "cancer-screening"


def _figure(at):
    import json

    (chart,) = [c for c in at.get("plotly_chart") if "capacity-history" in str(c.proto.id)]
    return json.loads(chart.proto.spec)


def test_no_gateway_yet_says_so_and_set_scaling_applies_on_the_local_backend(app, private_demo):
    at = app("deployments.py", endpoint=EP, identity="alice")
    assert not at.exception and not at.error, [e.value for e in at.error]
    m = {x.label: x.value for x in at.metric}
    assert (m["Replicas now"], m["Min / max replicas"], m["Scale target"]) == ("—", "— / —", "— concurrency")
    shown = texts(at)
    assert "has not served this endpoint" in shown and "no replica history" in shown
    fig = _figure(at)
    assert [t.get("name") for t in fig["data"]] == ["requests/s", "p95 ms"]  # rate and latency still drawn

    at.number_input(key="scaling-max").set_value(3)
    at.button(key="action-scaling").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert '"max_replicas": 3' in "\n".join(str(c.value) for c in at.code)
    at.text_area(key="reason").input("three workers at most")
    at.button(key="confirm").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert private_demo().serving.get_endpoint(EP).scaling.max_replicas == 3


def test_replicas_now_and_over_time_from_the_gateways_samples(app, private_demo):
    c = private_demo()
    now = c.clock()
    for i in range(60):  # every minute up to a minute ago, then a gap (the gateway was not running), then now
        if 30 <= i < 40:
            continue
        n = 3 if 20 <= i < 30 else 1
        c.serving.record_replicas([(EP, "5", n, n), (EP, "4", 1, 0)], at=now - timedelta(minutes=60 - i))
    c.serving.record_replicas([(EP, "5", 2, 2), (EP, "4", 1, 0)], at=now)
    at = app("deployments.py", endpoint=EP, identity="carol")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {x.label: x.value for x in at.metric}["Replicas now"] == "3"
    assert "local gateway" in texts(at)
    fig = _figure(at)
    names = [t.get("name") for t in fig["data"]]
    assert names[:2] == ["v4 replicas", "v5 replicas"] and names[2:] == ["requests/s", "p95 ms"]
    v5 = fig["data"][1]
    assert v5["line"]["shape"] == "hv" and max(y for y in v5["y"] if y is not None) == 3 and v5["xaxis"] == "x"
    assert v5["y"].count(None) == 1  # the gap is drawn as one, not bridged
    assert {t.get("xaxis", "x") for t in fig["data"]} == {"x", "x2", "x3"}
    assert fig["layout"]["xaxis"].get("matches") or fig["layout"]["xaxis3"].get("matches")  # one shared time axis
