"""What the evaluator reads per metric (role filter, windows, rate against a day earlier, no data) from real
rollups of an in-memory prediction log, and the runner over the fakes: fire once, resolve on recovery and on
no data, a rule that left the policy resolves, a failing or hanging endpoint does not stop the others."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from services.actions.catalog import VOCABULARY
from services.alerts import AlertRule
from services.alerts.evaluate import observe
from services.alerts.runner import run_once
from services.errors import Unavailable
from services.metrics.sql import SqlMetricsSource
from services.policy import DriftPolicy, Policy
from services.predictions import PredictionRow
from services.serving import Endpoint
from tests.fakes import FakeAlertStore, FakeClock, FakePredictionLog, FakeServing

NOW = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)
EP = Endpoint("ep", "m", "1", canary_version="2", canary_weight=20)
N = iter(range(10**9))


def rows(at: datetime, n: int, *, role: str = "stable", errors: int = 0, latency: float = 10.0, pred=1
         ) -> list[PredictionRow]:
    version = "2" if role == "canary" else "1"
    return [PredictionRow(request_id=f"r{next(N)}", row=0, endpoint="ep", at=at, version=version, role=role,
                          model="m", features={"x": 1.0}, prediction=None if i < errors else pred,
                          latency_ms=latency, status=500 if i < errors else 200, error="boom" if i < errors else "")
            for i in range(n)]


def rule(name, metric, window="1m", **kw) -> AlertRule:
    from services.alerts import parse_window

    return AlertRule(name=name, metric=metric, window=parse_window(window), **kw)


def look(log, *rules, ep=EP, now=NOW):
    return observe(rules, ep, metrics=SqlMetricsSource(log), predictions=log, drift_policy=DriftPolicy(), now=now)


def test_error_rate_and_latency_per_role():
    log = FakePredictionLog()
    log.write(rows(NOW - timedelta(seconds=20), 40, role="stable", errors=2, latency=20.0))
    log.write(rows(NOW - timedelta(seconds=20), 10, role="canary", errors=5, latency=900.0))
    log.write(rows(NOW - timedelta(minutes=10), 30, role="canary", errors=30))  # outside every window below
    obs = look(log, rule("c", "error_rate", role="canary"), rule("s", "error_rate", role="stable"),
               rule("all", "error_rate"), rule("p95c", "p95_latency_ms", role="canary"),
               rule("p95s", "p95_latency_ms", "5m", role="stable"))
    assert (obs["c"].value, obs["c"].samples) == (0.5, 10)
    assert (obs["s"].value, obs["s"].samples) == (0.05, 40)
    assert (obs["all"].value, obs["all"].samples) == (7 / 50, 50)
    assert 500 < obs["p95c"].value <= 1000 and obs["p95s"].value <= 25


def test_no_requests_is_no_data_but_a_served_role_has_a_rate_of_zero():
    log = FakePredictionLog()
    log.write(rows(NOW - timedelta(seconds=10), 60, role="stable"))
    obs = look(log, rule("c", "error_rate", role="canary"), rule("rc", "requests", role="canary"),
               rule("rs", "requests", role="stable"), rule("q", "accuracy", "1h"))
    assert obs["c"].value is None and obs["c"].note == "no requests"
    assert (obs["rc"].value, obs["rc"].samples) == (0.0, 0.0), "a canary serves: its rate fell to zero"
    assert obs["rs"].value == pytest.approx(1.0) and obs["rs"].samples == 60
    assert obs["q"].value is None and obs["q"].note == "no labels yet"
    no_canary = Endpoint("ep", "m", "1")
    assert look(log, rule("rc", "requests", role="canary"), ep=no_canary)["rc"].value is None


def test_live_quality_reads_the_labelled_requests():
    log = FakePredictionLog()
    answered = rows(NOW - timedelta(minutes=30), 10)
    log.write(answered + rows(NOW - timedelta(minutes=20), 5))  # the last 5 not labelled yet
    log.add_labels([(r.request_id, 0, 1 if i < 8 else 0) for i, r in enumerate(answered)])
    ob = look(log, rule("q", "accuracy", "1h"))["q"]
    assert (ob.value, ob.samples) == (0.8, 10)


def test_rate_change_is_against_the_same_window_a_day_earlier():
    log = FakePredictionLog()
    log.write(rows(NOW - timedelta(days=1, minutes=10), 100))
    log.write(rows(NOW - timedelta(minutes=10), 25))
    ob = look(log, rule("d", "rate_change", "30m"))["d"]
    assert (ob.value, ob.samples) == (-0.75, 100)
    empty = look(FakePredictionLog(), rule("d", "rate_change", "30m"))["d"]
    assert empty.value is None and "a day earlier" in empty.note


def test_drift_without_a_reference_profile_is_no_data():
    log = FakePredictionLog()
    log.write(rows(NOW - timedelta(minutes=5), 10))
    obs = look(log, rule("d", "drift_share", "1h"), rule("f", "feature_alarm", "6h"),
               rule("dc", "drift_share", "1h", role="canary"), ep=Endpoint("ep", "m", "1"))
    assert obs["d"].value is None and "no reference profile" in obs["d"].note
    assert obs["f"].value is None
    assert obs["dc"].value is None and obs["dc"].note == "no canary version serves"


def test_a_failing_source_is_an_error_not_no_data():
    log = FakePredictionLog()
    log.fail["rollups"] = Unavailable("down", source="prediction log")
    ob = look(log, rule("c", "error_rate"))["c"]
    assert ob.value is None and ob.error == "prediction log: down"


# -- the runner ---------------------------------------------------------------------------------------------
POLICY = {"defaults": {"alerts": [{"name": "canary-errors", "metric": "error_rate", "role": "canary",
                                   "window": "1m", "above": 0.1, "min_samples": 5, "severity": "page"}]}}


@pytest.fixture
def world():
    clock = FakeClock(NOW)
    log = FakePredictionLog(clock)
    serving = FakeServing()
    serving.add("ep", "m", "1", "2", 20)
    serving.add("other", "m", "1")
    store = FakeAlertStore()
    return clock, log, serving, store


def run(world, policy=POLICY, metrics=None, **kw):
    clock, log, serving, store = world
    return run_once(store, Policy.from_dict(policy, VOCABULARY), metrics or SqlMetricsSource(log), log, serving,
                    clock, **kw)


def test_the_runner_fires_once_keeps_firing_and_resolves(world):
    clock, log, serving, store = world
    assert run(world) == []
    log.write(rows(clock() - timedelta(seconds=5), 20, role="canary", errors=6))
    changes = run(world)
    assert [(c.kind, c.alert.endpoint, c.alert.rule, c.alert.value) for c in changes] == [
        ("fired", "ep", "canary-errors", 0.3)]
    clock.advance(seconds=15)
    log.write(rows(clock() - timedelta(seconds=1), 20, role="canary", errors=20))
    assert run(world) == [], "still firing: no change"
    (a,) = store.alerts(state="firing")
    assert (a.value, a.last_value) == (0.3, 0.65) and "65.0%" in a.summary
    clock.advance(minutes=3)  # the canary serves no more: its series is gone
    changes = run(world)
    assert [(c.kind, c.alert.id, c.alert.resolved_at) for c in changes] == [("resolved", a.id, clock())]


def test_a_rule_that_left_the_policy_resolves(world):
    clock, log, serving, store = world
    log.write(rows(clock() - timedelta(seconds=5), 20, role="canary", errors=10))
    assert [c.kind for c in run(world)] == ["fired"]
    changes = run(world, {"defaults": {"alerts": []}})
    assert [(c.kind, c.alert.rule) for c in changes] == [("resolved", "canary-errors")]


def test_one_failing_endpoint_does_not_stop_the_others(world):
    clock, log, serving, store = world
    log.write(rows(clock() - timedelta(seconds=5), 20, role="canary", errors=10))

    class Flaky(SqlMetricsSource):
        def aggregates(self, endpoint, start, end):
            if endpoint == "other":
                raise RuntimeError("bug in an adapter")
            return super().aggregates(endpoint, start, end)

    warnings = []
    changes = run(world, metrics=Flaky(log), warn=warnings.append)
    assert [(c.kind, c.alert.endpoint) for c in changes] == [("fired", "ep")]
    assert warnings == ["alerts: other: evaluation failed: RuntimeError: bug in an adapter; its alerts stay as "
                        "they are"]


def test_a_hanging_source_is_cut_off_and_its_alerts_stay(world):
    clock, log, serving, store = world
    log.write(rows(clock() - timedelta(seconds=5), 20, role="canary", errors=10))
    assert [c.kind for c in run(world)] == ["fired"]
    release = threading.Event()

    class Hangs(SqlMetricsSource):
        def aggregates(self, endpoint, start, end):
            if endpoint == "ep":
                release.wait(30)
            return super().aggregates(endpoint, start, end)

    clock.advance(minutes=5)  # no canary traffic any more: a finished evaluation would resolve it
    warnings = []
    try:
        assert run(world, metrics=Hangs(log), timeout_s=0.3, warn=warnings.append) == []
    finally:
        release.set()
    assert warnings == ["alerts: ep: not evaluated within 0.3 s (a source hangs?); its alerts stay as they are"]
    assert [a.rule for a in store.alerts(state="firing")] == ["canary-errors"]
    assert [c.kind for c in run(world)] == ["resolved"]


def test_a_broken_store_write_is_said_and_the_run_goes_on(world):
    clock, log, serving, store = world
    log.write(rows(clock() - timedelta(seconds=5), 20, role="canary", errors=10))
    store.fail["fire"] = Unavailable("disk full", source="alert store")
    warnings = []
    assert run(world, warn=warnings.append) == []
    assert warnings == ["alerts: ep canary-errors: the alert store failed: alert store: disk full"]
