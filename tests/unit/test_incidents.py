"""The incident timeline, "what served at T", suspects and the report on the in-memory fakes (milliseconds).
The same behaviour with the real adapters on SQLite and PostgreSQL is in tests/integration/test_incidents.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from services.actions import Actions
from services.actions.catalog import VOCABULARY
from services.errors import NotFound, Unavailable
from services.history.serving import ServedState
from services.identity import Directory
from services.incidents import Event, Incidents, report, served_at, suspects, timeline
from services.incidents.events import KINDS
from services.metrics.stats import Aggregate
from services.policy import Policy
from services.predictions import PredictionRow
from services.settings import DEFAULT_IDENTITIES
from tests.fakes import (
    FakeApprovals,
    FakeAuditTrail,
    FakeClock,
    FakeLiveMetrics,
    FakePredictionLog,
    FakeRegistry,
    FakeServing,
    FakeServingHistory,
)

EP, M = "screening", "cls"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = {"defaults": {"require_approval": ["promote"]}}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class DatedRegistry(FakeRegistry):
    """The fake registry with creation times (MLflow has them)."""

    def __init__(self):
        super().__init__()
        self.created: dict[str, datetime] = {}

    def list_versions(self, name, *, with_metrics=True):
        return [replace(v, created=self.created.get(v.version)) for v in super().list_versions(name)]


@dataclass
class Alert:
    id: int
    endpoint: str
    rule: str
    severity: str
    state: str
    started_at: datetime
    resolved_at: datetime | None = None
    value: float | None = None
    summary: str = ""
    source: str = "console"


class Alerts:
    """The alert store's duck type (services/alerts is another engineer's): a list, filtered by endpoint."""

    def __init__(self, *alerts: Alert, fail: Exception | None = None):
        self.items, self.fail, self.calls = list(alerts), fail, 0

    def alerts(self, *, endpoint=None, state=None, start=None, end=None, limit=500):
        self.calls += 1
        if self.fail:
            raise self.fail
        return [a for a in self.items if endpoint in (None, a.endpoint)][:limit]


class World:
    def __init__(self):
        self.clock = FakeClock(T0)
        self.registry = DatedRegistry()
        for v in ("1", "2", "3"):
            self.registry.add(M, v, metrics={"accuracy": 0.9})
        self.registry.alias_map[M]["champion"] = "1"
        self.history = FakeServingHistory()
        self.serving = FakeServing(history=self.history, clock=self.clock)
        self.serving.add(EP, M, "1")  # at T0
        self.audit = FakeAuditTrail(self.clock)
        self.directory = Directory(DEFAULT_IDENTITIES)
        self.actions = Actions(registry=self.registry, serving=self.serving, audit=self.audit,
                               approvals=FakeApprovals(self.clock), history=self.history,
                               policy=Policy.from_dict(POLICY, VOCABULARY), clock=self.clock,
                               approval_ttl=timedelta(hours=24), live_metrics=FakeLiveMetrics())

    def act(self, name: str, action: str, reason: str = "r", **params):
        who = self.directory.get(name)
        return self.actions.execute(self.actions.plan(who, action, EP, **params), who, reason)

    def timeline(self, start=T0, end=None, **kw):
        return timeline(EP, start, end or at(600), history=self.history, audit=self.audit,
                        registry=self.registry, serving=self.serving, **kw)


def kinds(events):
    return [e.kind for e in events]


def test_events_from_every_source_oldest_first_with_sources_and_links():
    w = World()
    w.registry.created["2"] = at(5)
    w.clock.advance(minutes=10)
    w.act("alice", "start_canary", "try v2", version="2", weight=20)
    w.clock.advance(minutes=20)
    out = w.act("alice", "request_promotion", "v2 is better", version="2")
    w.clock.advance(minutes=5)
    w.actions.approve(w.directory.get("bob"), out.request_id, "ok")
    alerts = Alerts(Alert(7, EP, "canary-errors", "page", "resolved", at(15), at(25), 0.2, "canary error rate 20 %"),
                    Alert(8, "other", "x", "page", "firing", at(16)))
    drift = [{"kind": "mean", "feature": "x", "detector": "Page–Hinkley", "at": at(20), "since": at(12),
              "direction": "up", "statistic": 3.2}]
    events = w.timeline(alerts=alerts, drift=lambda ep, s, e: drift)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert [(e.kind, e.at) for e in events] == [
        ("serving_change", at(0)), ("registration", at(5)), ("serving_change", at(10)), ("action", at(10)),
        ("alert_fired", at(15)), ("drift_alarm", at(20)), ("alert_resolved", at(25)), ("approval", at(30)),
        ("serving_change", at(35)), ("alias_move", at(35)), ("approval", at(35))]
    by = {(e.kind, e.at): e for e in events}
    canary = by[("serving_change", at(10))]
    assert (canary.source, canary.actor, canary.title) == ("serving history", "alice",
                                                           "canary v2 started at 20 % by alice")
    assert canary.link == {"page": "models", "model": M, "compare": "1,2"} and canary.versions == ("1", "2")
    promoted = by[("serving_change", at(35))]
    assert "canary v2 promoted to stable (was v1)" in promoted.title and "approved by bob" in promoted.title
    assert promoted.details["approved_by"] == "bob"
    action = by[("action", at(10))]
    assert (action.source, action.details["result"], action.title) == (
        "audit trail", "ok", "Start canary v2 at 20 % by alice: “try v2”")
    assert action.link == {"page": "audit", "endpoint": EP, "actor": "alice", "action": "start_canary",
                           "from": "2026-11-26", "to": "2026-11-26"}
    request = by[("approval", at(30))]
    assert request.title.startswith(f"Promote version v2 requested (request #{out.request_id})")
    assert request.link == {"page": "approvals", "request": out.request_id}
    approved = by[("approval", at(35))]
    assert approved.actor == "bob" and approved.title.startswith(f"request #{out.request_id} approved")
    move = by[("alias_move", at(35))]
    assert (move.source, move.details["from"], move.details["to"]) == ("audit trail", "1", "2")
    assert move.link == {"page": "models", "model": M, "version": "2"}
    assert by[("registration", at(5))].link == {"page": "models", "model": M, "version": "2"}
    fired = by[("alert_fired", at(15))]
    assert fired.source == "alerts" and "canary error rate 20 %" in fired.title and fired.details["id"] == 7
    assert fired.link["page"] == "monitoring" and fired.link["endpoint"] == EP
    assert by[("drift_alarm", at(20))].link["feature"] == "x"
    assert {e.kind for e in events} <= set(KINDS)
    json.dumps([e.as_dict() for e in events])  # plain data
    assert alerts.calls == 1, "each source is read once per call"


def test_refusals_are_actions_marked_as_such():
    w = World()
    w.clock.advance(minutes=1)
    with pytest.raises(Exception):  # noqa: B017,PT011 - any refusal: carol is a viewer
        w.act("carol", "start_canary", version="2", weight=10)
    (e,) = [e for e in w.timeline() if e.kind == "action"]
    assert e.details["refused"] and e.details["result"] == "refused" and e.title.startswith("REFUSED: Start canary")
    assert e.actor == "carol"


def test_window_is_half_open_start_in_end_out():
    w = World()
    w.registry.created.update({"2": at(60), "3": at(-1)})
    w.history.record(ServedState(EP, at(60), "1", "2", 10, "alice"))
    w.clock.now = at(60)
    w.audit.append(actor="alice", action="set_canary_weight", target=EP, result="ok")
    alerts = Alerts(Alert(1, EP, "r", "page", "firing", at(60)), Alert(2, EP, "r", "page", "resolved", at(0), at(60)))
    drift = [{"kind": "rate", "feature": "requests per hour", "detector": "CUSUM", "at": at(60), "since": at(0),
              "direction": "down", "statistic": 1.0}]
    events = w.timeline(T0, at(60), alerts=alerts, drift=lambda *a: drift)
    assert [(e.kind, e.at) for e in events] == [("serving_change", T0), ("alert_fired", T0)], \
        "everything at the end is out, the change and the alert at the start are in"
    events = w.timeline(at(60), at(61), alerts=alerts, drift=lambda *a: drift)
    assert kinds(events) == ["registration", "serving_change", "action", "drift_alarm", "alert_fired",
                             "alert_resolved"]
    assert events[1].details["before"] == {"stable_version": "1", "canary_version": None, "canary_weight": 0}, \
        "the first change of a window says what it changed (the state in force at the start is read)"


def test_same_instant_keeps_a_stable_order_whatever_the_recording_order():
    w = World()
    w.clock.now = at(30)
    w.audit.append(actor="alice", action="start_canary", target=EP, result="ok",
                   after={"stable_version": "1", "canary_version": "2", "canary_weight": 5})
    w.history.record(ServedState(EP, at(30), "1", "2", 5, "alice"))  # recorded after the audit entry
    w.history.record(ServedState(EP, at(30), "1", "2", 15, "alice"))
    first = w.timeline()
    assert [(e.kind, e.at) for e in first][1:] == [("serving_change", at(30)), ("serving_change", at(30)),
                                                   ("action", at(30))]
    assert ["5 %" in first[1].title, "5 % → 15 %" in first[2].title] == [True, True], \
        "changes at the same instant keep the order they were recorded in"
    assert [e.as_dict() for e in w.timeline()] == [e.as_dict() for e in first]


def test_a_failing_source_is_marked_not_raised():
    w = World()
    w.clock.advance(minutes=10)
    w.act("alice", "start_canary", version="2", weight=20)
    w.audit.fail["entries"] = Unavailable("database is down", source="audit store")
    w.registry.fail["list_versions"] = Unavailable("MLflow is down", source="MLflow")
    events = w.timeline(alerts=Alerts(fail=RuntimeError("boom")),
                        drift=lambda *a: (_ for _ in ()).throw(Unavailable("no rollups", source="drift")))
    markers = [e for e in events if e.kind == "source_unavailable"]
    assert [(e.source, e.at) for e in markers] == [("audit trail", T0), ("MLflow registry", T0), ("alerts", T0),
                                                   ("drift", T0)]
    assert "database is down" in markers[0].title and markers[2].details["message"] == "RuntimeError: boom"
    assert [e.kind for e in events if e.kind != "source_unavailable"] == ["serving_change", "serving_change"]


def test_drift_without_traffic_is_no_event_and_no_marker():
    w = World()

    def drift(ep, s, e):
        raise NotFound("no request of a known version", source="drift")

    assert kinds(w.timeline(drift=drift)) == ["serving_change"]


def test_unknown_endpoint_is_not_found_but_a_deleted_one_still_has_its_history():
    w = World()
    with pytest.raises(NotFound):
        timeline("nope", T0, at(60), history=w.history, audit=w.audit, registry=w.registry, serving=w.serving)
    w.history.record(ServedState("gone", at(5), "3", actor="alice"))
    events = timeline("gone", T0, at(60), history=w.history, audit=w.audit, registry=w.registry, serving=w.serving)
    assert [(e.kind, e.title) for e in events] == [("serving_change", "serving stable v3 (first recorded state) "
                                                                      "by alice")]


def test_a_broken_port_in_the_facade_is_a_marker():
    w = World()

    def broken():
        raise Unavailable("cannot build the KServe client", source="KServe")

    inc = Incidents(history=lambda: w.history, audit=lambda: w.audit, registry=lambda: w.registry, serving=broken)
    events = inc.timeline(EP, T0, at(60))
    assert [(e.kind, e.source) for e in events] == [("source_unavailable", "serving"),
                                                    ("serving_change", "serving history")]


# -- what served at T ---------------------------------------------------------------------------------------------
def test_served_at_before_between_at_and_after_changes():
    w = World()
    w.clock.now = at(10)
    w.act("alice", "start_canary", "try", version="2", weight=20)
    w.clock.now = at(40)
    w.act("alice", "abort_canary", "errors")
    before = served_at(w.history, w.serving, EP, at(-1))
    assert (before["known"], before["stable_version"], before["change_before"]) == (False, None, None)
    assert before["change_after"]["at"].startswith("2026-11-26T12:00:00") and "first recorded" in before["note"]
    mid = served_at(w.history, w.serving, EP, at(25))
    assert (mid["stable_version"], mid["canary_version"], mid["canary_weight"], mid["stable_weight"]) == (
        "1", "2", 20, 80)
    assert (mid["change_before"]["actor"], mid["change_before"]["what"]) == ("alice", "canary v2 started at 20 %")
    assert mid["change_after"]["what"] == "canary v2 removed" and mid["change_after"]["at"].startswith(
        "2026-11-26T12:40")
    exactly = served_at(w.history, w.serving, EP, at(40))
    assert (exactly["canary_version"], exactly["change_after"]) == (None, None), "at a change, that change is in force"
    with pytest.raises(NotFound):
        served_at(w.history, w.serving, "nope", at(25))


def test_served_at_counts_the_requests_around_and_names_a_few():
    w = World()
    w.clock.now = at(10)
    w.act("alice", "start_canary", version="2", weight=50)
    log = FakePredictionLog()
    rows = [PredictionRow(f"r{i}", 0, EP, at(20) + timedelta(seconds=10 * i), "2" if i % 2 else "1",
                          "canary" if i % 2 else "stable", M, status=500 if i % 2 else 200) for i in range(-40, 40)]
    log.write(rows)
    out = served_at(w.history, w.serving, EP, at(20), predictions=log)
    assert {(t["version"], t["role"]): (t["requests"], t["errors"]) for t in out["traffic"]} == {
        ("1", "stable"): (30, 0), ("2", "canary"): (30, 30)}, "whole minutes of [T − 5 min, T + 5 min)"
    assert [r["request_id"] for r in out["requests"]] == ["r-2", "r0", "r2", "r-3", "r-1", "r1"], \
        "three per version, the closest to T (ties by request id), in time order"
    assert out["requests"][0]["link"] == {"page": "explain", "endpoint": EP, "request_id": "r-2"}
    log.fail["served"] = Unavailable("down", source="prediction log")
    assert served_at(w.history, w.serving, EP, at(20), predictions=log)["warnings"] == ["prediction log: down"]


# -- suspects -------------------------------------------------------------------------------------------------
class Metrics:
    """A metrics source whose canary (or new stable) errs as told."""

    def __init__(self, bad: dict[str, float]):
        self.bad = bad
        self.calls = []

    def aggregates(self, endpoint, start, end):
        self.calls.append((start, end))
        return [Aggregate("1", "stable", count=2000, errors=20),
                *[Aggregate(v, "canary", count=2000, errors=2000 * r) for v, r in self.bad.items()]]


def test_suspects_rank_by_closeness_then_by_the_metric():
    t = T0
    change = dict(kind="serving_change", source="serving history", endpoint=EP)
    far = Event(t + timedelta(minutes=10), title="canary v2 started", versions=("1", "2"),
                details={"before": {"stable_version": "1"}, "after": {"stable_version": "1", "canary_version": "2",
                                                                      "canary_weight": 10}}, **change)
    near = Event(t + timedelta(minutes=100), kind="registration", source="MLflow registry", title="v3 registered",
                 endpoint=EP, versions=("3",))
    outside = Event(t - timedelta(minutes=30), title="old", **change)
    alert = Event(t + timedelta(minutes=110), kind="alert_fired", source="alerts", title="canary errors",
                  endpoint=EP, details={"rule": "canary-errors"})
    # without metrics: score = weight × (closeness + ½ closeness) / 2; the registration (10 min before) beats
    # the canary (100 min)
    ranked = suspects([outside, far, near, alert], alert)
    assert [(s["event"]["title"], s["closeness"], s["score"], s["evidence"]) for s in ranked] == [
        ("v3 registered", 0.9167, round(0.3 * 0.75 * (1 - 10 / 120), 4), None),
        ("canary v2 started", 0.1667, round(0.75 * (1 - 100 / 120), 4), None)], \
        "the change before the window and the alert itself are no suspects"
    assert [s["minutes_before"] for s in ranked] == [10, 100]
    # with metrics: the canary errs 10 × more than stable -> it is the suspect
    m = Metrics({"2": 0.10})
    ranked = suspects([outside, far, near], alert, metrics=m)
    assert [s["event"]["title"] for s in ranked] == ["canary v2 started", "v3 registered"]
    top = ranked[0]
    assert top["test"]["metric"] == "error_rate" and top["test"]["worse"] and top["evidence"] > 0.99
    assert "worse than v1 on error rate" in top["why"] and top["rank"] == 1
    assert m.calls == [(far.at, alert.at + timedelta(minutes=5))]
    # a canary that is not worse is no evidence
    ranked = suspects([far, near], alert, metrics=Metrics({"2": 0.01}))
    assert [(s["event"]["title"], s["evidence"]) for s in ranked] == [("v3 registered", None),
                                                                      ("canary v2 started", 0.0)]
    assert "is not worse than v1" in ranked[1]["why"]


def test_an_action_and_its_serving_change_are_one_suspect():
    w = World()
    w.clock.now = at(10)
    w.act("alice", "start_canary", "try", version="2", weight=20)
    w.clock.now = at(20)
    with pytest.raises(Exception):  # noqa: B017,PT011 - carol is a viewer: refused, changes nothing
        w.act("carol", "abort_canary")
    w.audit.append(actor="bob", action="acknowledge_alert", target=EP, result="ok", reason="on it",
                   details={"alert_id": "a1", "rule": "canary-errors"})
    events = w.timeline()
    assert [(e.kind, e.title) for e in events if e.at == at(20)] == [
        ("action", "REFUSED: Abort canary — permission_denied: policy: carol (viewer) may not abort canary on "
                   "screening; needs one of: operator by carol"),
        ("action", "alert canary-errors acknowledged by bob: “on it”")]
    ranked = suspects(events, Alert(1, EP, "canary-errors", "page", "firing", at(30)))
    assert [s["event"]["kind"] for s in ranked] == ["serving_change"], "the first recorded state is no change"
    assert ranked[0]["action"]["details"]["action"] == "start_canary" and "through start_canary by alice" in \
        ranked[0]["why"]


# -- report ---------------------------------------------------------------------------------------------------
def test_report_markdown_and_data():
    w = World()
    w.clock.now = at(10)
    w.act("alice", "start_canary", "try | pipe", version="2", weight=20)
    events = w.timeline(alerts=Alerts(Alert(3, EP, "canary-errors", "page", "firing", at(20), summary="bad")))
    served = served_at(w.history, w.serving, EP, at(20))
    window = {"versions": [{"version": "1", "role": "stable", "requests": 100.0, "errors": 1.0, "error_rate": 0.01,
                            "latency_p50_ms": 5.0, "latency_p95_ms": 9.0, "latency_p99_ms": 12.0}],
              "tests": [{"candidate": "2", "baseline": "1", "metric": "error_rate", "test": "z", "p_value": 0.001}]}
    md, data = report(EP, T0, at(60), events, served, window)
    assert md.startswith(f"# Incident report: {EP}\n")
    assert ("| 2026-11-26 12:10:00 | serving change | serving history | canary v2 started at 20 % by alice "
            "| alice |") in md
    assert "try \\| pipe" in md, "a pipe in a reason does not break the table"
    assert "- stable v1 at 80 %, canary v2 at 20 %" in md and "first alert: page alert canary-errors fired" in md
    assert "## Actions taken\n\n- 2026-11-26 12:10:00 UTC — Start canary v2 at 20 % by alice" in md
    assert "| v1 | stable | 100 | 1 | 1.00% | 5.0 | 9.0 | 12.0 |" in md and "p-value 0.001" in md
    assert data["counts"] == {"serving_change": 2, "action": 1, "alert_fired": 1}
    assert [a["details"]["action"] for a in data["actions"]] == ["start_canary"]
    json.dumps(data)
