"""Alert rules from the policy (parse_rules: good and bad input, each refusal naming its path) and the pure
evaluator's decisions: fire, resolve on recovery and on no data, min_samples, errors that keep the state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.actions.catalog import VOCABULARY
from services.alerts import AlertRule, format_window, parse_rules, parse_window
from services.alerts.evaluate import Observation, evaluate
from services.errors import Invalid
from services.policy import Policy

GOOD = {"name": "canary-errors", "metric": "error_rate", "role": "canary", "window": "1m", "above": 0.1,
        "severity": "page", "min_samples": 20}


def test_a_rule_parses_with_its_defaults():
    (r,) = parse_rules([GOOD], "x")
    assert r == AlertRule(name="canary-errors", metric="error_rate", window=timedelta(minutes=1), above=0.1,
                          below=None, role="canary", severity="page", min_samples=20, feature=None)
    (r,) = parse_rules([{"name": "drop", "metric": "rate_change", "window": "1h", "below": -0.5}], "x")
    assert (r.role, r.severity, r.min_samples, r.above, r.below) == (None, "ticket", 0, None, -0.5)
    assert r.condition == "rate_change < -0.5 over 1h"
    assert parse_rules(None, "x") == () and parse_rules([], "x") == ()


@pytest.mark.parametrize("text,expected", [("30s", timedelta(seconds=30)), ("1m", timedelta(minutes=1)),
                                           ("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1)),
                                           ("2d", timedelta(days=2)), (" 15m ", timedelta(minutes=15))])
def test_windows(text, expected):
    assert parse_window(text) == expected
    assert parse_window(format_window(expected)) == expected


@pytest.mark.parametrize("change,message", [
    ({"metric": "errors"}, r"x\[0\] \(canary-errors\)\.metric: unknown metric 'errors'"),
    ({"window": "1 minute"}, r"\.window: window must look like 30s, 1m, 5m, 1h or 1d, not '1 minute'"),
    ({"window": "0m"}, r"window must look like"),
    ({"window": 60}, r"window must look like"),
    ({"window": None}, r"window must look like"),
    ({"below": 0.2}, r"say exactly one of above or below"),
    ({"above": None}, r"say exactly one of above or below"),
    ({"above": "high"}, r"\.above must be a number, not 'high'"),
    ({"above": True}, r"\.above must be a number"),
    ({"role": "shadow"}, r"\.role: unknown role 'shadow'"),
    ({"severity": "critical"}, r"\.severity: unknown severity 'critical' \(one of page, ticket, info\)"),
    ({"min_samples": -1}, r"min_samples must be a whole number ≥ 0"),
    ({"min_samples": 2.5}, r"min_samples must be a whole number"),
    ({"feature": "mean radius"}, r"only a feature_alarm rule names a feature"),
    ({"threshold": 1}, r"unknown key\(s\) threshold"),
    ({"name": ""}, r"x\[0\]\.name is required"),
])
def test_bad_rules_are_refused_naming_the_path(change, message):
    raw = {**GOOD, **change}
    if "window" in change and change["window"] is None:
        raw.pop("window")
        message = r"\.window is required"
    with pytest.raises(Invalid, match=message) as info:
        parse_rules([raw], "x")
    assert info.value.source == "policy"


def test_duplicates_and_shapes_are_refused():
    with pytest.raises(Invalid, match=r"x\[1\]: duplicate rule name 'canary-errors'"):
        parse_rules([GOOD, {**GOOD, "window": "5m"}], "x")
    with pytest.raises(Invalid, match="x must be a list of rules"):
        parse_rules({"name": "a"}, "x")
    with pytest.raises(Invalid, match="x must be a list of rules"):
        parse_rules("canary-errors", "x")
    with pytest.raises(Invalid, match=r"x\[0\] must be a mapping"):
        parse_rules(["canary-errors"], "x")


def test_the_policy_reads_alerts_per_endpoint_over_the_defaults():
    data = {"defaults": {"alerts": [GOOD]},
            "endpoints": {"a": {}, "b": {"alerts": [{**GOOD, "name": "b-only", "above": 0.3}]}, "c": {"alerts": []}}}
    p = Policy.from_dict(data, VOCABULARY)
    assert [r.name for r in p.for_endpoint("a").alerts] == ["canary-errors"]
    assert [(r.name, r.above) for r in p.for_endpoint("b").alerts] == [("b-only", 0.3)]
    assert p.for_endpoint("c").alerts == ()
    assert [r.name for r in p.for_endpoint("unlisted").alerts] == ["canary-errors"]
    with pytest.raises(Invalid, match=r"endpoints\.b\.alerts\[0\] \(x\)\.severity: unknown severity"):
        Policy.from_dict({"endpoints": {"b": {"alerts": [{**GOOD, "name": "x", "severity": "sev1"}]}}}, VOCABULARY)


def test_the_demo_policy_has_rules_for_every_demo_endpoint():
    from services.demo.endpoints import DEMO_ENDPOINTS
    from services.settings import REPO_ROOT

    p = Policy.load(REPO_ROOT / "deploy" / "policy.yaml", VOCABULARY)
    for name in DEMO_ENDPOINTS:
        rules = {r.name: r for r in p.for_endpoint(name).alerts}
        expected = {"canary-errors", "stable-errors", "p95-latency-slo", "prediction-rate-drop", "input-drift"}
        assert expected <= set(rules)
        assert rules["canary-errors"].role == "canary" and rules["canary-errors"].severity == "page"
        slo = next(g.max_value for g in p.for_endpoint(name).live_gates if g.metric == "p95_latency_ms")
        assert rules["p95-latency-slo"].above == slo, "the alert holds the same SLO as the gate"


# -- the evaluator's decisions ------------------------------------------------------------------------------
ABOVE = AlertRule("err", "error_rate", timedelta(minutes=1), above=0.1, role="canary", min_samples=20)
BELOW = AlertRule("drop", "rate_change", timedelta(minutes=30), below=-0.5)


def decide(rule, ob):
    (d,) = evaluate([rule], {rule.name: ob} if ob is not None else {})
    return d


def test_a_breach_fires_and_recovery_resolves():
    d = decide(ABOVE, Observation(0.3, 100))
    assert (d.verdict, d.action, d.value, d.samples) == ("firing", "fire", 0.3, 100)
    assert d.summary == "canary error_rate 30.0% > 10.0% over 1m, n = 100"
    d = decide(ABOVE, Observation(0.1, 100))
    assert (d.verdict, d.action) == ("ok", "resolve"), "at the threshold is not above it"
    assert "≤ 10.0%" in d.summary
    d = decide(BELOW, Observation(-0.75, 400))
    assert (d.verdict, d.summary) == ("firing", "rate_change -75% < -50% over 30m, n = 400")
    assert decide(BELOW, Observation(-0.2, 400)).action == "resolve"


def test_no_data_resolves_like_a_series_that_disappeared():
    d = decide(ABOVE, Observation(None, 0.0, note="no requests"))
    assert (d.verdict, d.action) == ("no_data", "resolve")
    assert d.summary == "canary error_rate: no data over 1m: no requests"
    d = decide(ABOVE, None)  # not observed at all
    assert (d.verdict, d.action) == ("no_data", "resolve")


def test_min_samples_neither_fires_nor_resolves():
    d = decide(ABOVE, Observation(0.5, 19))
    assert (d.verdict, d.action) == ("too_few", "keep")
    assert "on 19 samples, fewer than 20: not judged" in d.summary
    assert decide(ABOVE, Observation(0.01, 5)).action == "keep", "too few to say it is over either"
    assert decide(ABOVE, Observation(0.5, 20)).action == "fire"
    assert decide(ABOVE, Observation(0.5, None)).action == "keep", "no sample count with min_samples: not judged"


def test_a_failing_source_keeps_the_alert_as_it_is():
    d = decide(ABOVE, Observation(None, error="prediction log: down"))
    assert (d.verdict, d.action) == ("error", "keep") and "cannot be read (prediction log: down)" in d.summary


def test_one_decision_per_rule_in_order():
    rules = [ABOVE, BELOW, AlertRule("lat", "p95_latency_ms", timedelta(minutes=5), above=500)]
    ds = evaluate(rules, {"err": Observation(0.5, 50), "lat": Observation(650.0, 80)})
    assert [(d.rule.name, d.action) for d in ds] == [("err", "fire"), ("drop", "resolve"), ("lat", "fire")]
    assert ds[2].summary == "p95_latency_ms 650 ms > 500 ms over 5m, n = 80"
