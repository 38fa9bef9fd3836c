"""The incident timeline and "what served at T" over the real adapters (the local backend, the SQL serving
history and audit trail, a real MLflow store) on SQLite and PostgreSQL, through real guarded actions; and the
``timeline`` / ``served-at`` commands with their exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from services.cli import main
from services.predictions import PredictionRow
from tests.conftest import ENDPOINT, MODEL

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # the container fixture's clock: the endpoint is created then


def act(c, name, action, reason="r", **params):
    who = c.directory.get(name)
    return c.actions.execute(c.actions.plan(who, action, ENDPOINT, **params), who, reason)


def scripted(c, clock):
    """12:00 v1 + canary v2 at 20 % (the fixture); 12:10 canary aborted; 12:20 canary v2 at 30 %;
    12:30 promotion of v2 requested; 12:35 approved: v2 stable, champion v2."""
    clock.advance(minutes=10)
    act(c, "alice", "abort_canary", "errors up")
    clock.advance(minutes=10)
    act(c, "alice", "start_canary", "second try", version="2", weight=30)
    clock.advance(minutes=10)
    out = act(c, "alice", "request_promotion", "v2 holds", version="2")
    clock.advance(minutes=5)
    c.actions.approve(c.directory.get("bob"), out.request_id, "ok")
    clock.advance(minutes=5)
    return out.request_id


def test_timeline_lists_the_canary_start_before_the_promotion(container, clock):
    c = container
    rid = scripted(c, clock)
    events = c.incidents.timeline(ENDPOINT, T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    got = [(e.kind, round((e.at - T0).total_seconds() / 60), e.actor) for e in events]
    assert got == [
        ("serving_change", 10, "alice"), ("action", 10, "alice"),
        ("serving_change", 20, "alice"), ("action", 20, "alice"),
        ("approval", 30, "alice"),
        ("serving_change", 35, "alice"), ("alias_move", 35, "bob"), ("approval", 35, "bob")]
    titles = [e.title for e in events]
    assert titles[0].startswith("canary v2 removed by alice") and titles[2].startswith("canary v2 started at 30 %")
    assert titles[5].startswith("canary v2 promoted to stable (was v1) by alice, approved by bob")
    assert events[4].link == {"page": "approvals", "request": rid}
    assert events[6].details["from"] == "1" and events[6].details["to"] == "2"
    assert [e.source for e in events] == ["serving history", "audit trail"] * 2 + ["audit trail", "serving history",
                                                                                   "audit trail", "audit trail"]
    assert events[2].link == {"page": "models", "model": MODEL, "compare": "1,2"}
    # the window is half-open and the first change knows what it changed
    edge = c.incidents.timeline(ENDPOINT, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert [(e.kind, e.at - T0) for e in edge] == [("serving_change", timedelta(minutes=10)),
                                                   ("action", timedelta(minutes=10))]
    assert edge[0].details["before"] == {"stable_version": "1", "canary_version": "2", "canary_weight": 20}


def test_registrations_come_from_mlflow_with_their_creation_time(container):
    c = container
    now = datetime.now(UTC)
    events = c.incidents.timeline(ENDPOINT, now - timedelta(days=1), now + timedelta(minutes=1))
    regs = [e for e in events if e.kind == "registration"]
    assert [e.versions for e in regs] == [("1",), ("2",), ("3",), ("4",)]
    assert all(e.source == "MLflow registry" and e.link == {"page": "models", "model": MODEL, "version": e.versions[0]}
               for e in regs)
    assert not [e for e in events if e.kind == "source_unavailable"], "no traffic: no drift alarm and no marker"


def test_served_at_names_the_canary_in_between_and_the_requests_it_answered(container, clock):
    c = container
    scripted(c, clock)
    t = T0 + timedelta(minutes=25)
    c.predictions.write([PredictionRow(f"q{i}", 0, ENDPOINT, t + timedelta(seconds=i), "2" if i % 3 == 0 else "1",
                                       "canary" if i % 3 == 0 else "stable", MODEL, status=200) for i in range(30)])
    out = c.incidents.served_at(ENDPOINT, t)
    assert (out["stable_version"], out["canary_version"], out["canary_weight"], out["stable_weight"]) == (
        "1", "2", 30, 70)
    assert out["change_before"]["what"] == "canary v2 started at 30 %" and out["change_before"]["actor"] == "alice"
    assert out["change_before"]["at"] == "2026-11-26T12:20:00.000000Z"
    assert out["change_after"]["what"] == "canary v2 promoted to stable (was v1)"
    assert out["change_after"]["approved_by"] == "bob"
    assert {(r["version"], r["role"], r["requests"]) for r in out["traffic"]} == {("1", "stable", 20),
                                                                                  ("2", "canary", 10)}
    assert [r["request_id"] for r in out["requests"]] == ["q1", "q2", "q4", "q0", "q3", "q6"]
    before = c.incidents.served_at(ENDPOINT, T0 - timedelta(seconds=1))
    assert before["known"] is False and before["change_after"]["at"] == "2026-11-26T12:00:00.000000Z"


def run(c, capsys, *argv):
    code = main(list(argv), container=c)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_timeline_and_served_at(container, clock, capsys):
    c = container
    scripted(c, clock)
    code, out, _ = run(c, capsys, "timeline", "--endpoint", ENDPOINT, "--from", "2026-11-26T12:15",
                       "--to", "2026-11-26T12:32", "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["from"], doc["to"]) == ("2026-11-26T12:15:00.000000Z", "2026-11-26T12:32:00.000000Z")
    assert [(e["at"], e["kind"], e["source"]) for e in doc["events"]] == [
        ("2026-11-26T12:20:00.000000Z", "serving_change", "serving history"),
        ("2026-11-26T12:20:00.000000Z", "action", "audit trail"),
        ("2026-11-26T12:30:00.000000Z", "approval", "audit trail")]
    assert doc["events"][1]["details"]["reason"] == "second try" and doc["events"][1]["actor"] == "alice"
    code, out, _ = run(c, capsys, "timeline", "--endpoint", ENDPOINT, "--from=-1h")  # clock: 12:40
    assert code == 0 and "canary v2 started at 30 % by alice" in out and "    note: second try" in out
    assert out.index("canary v2 removed") < out.index("canary v2 started at 30 %")
    code, out, _ = run(c, capsys, "served-at", "--endpoint", ENDPOINT, "--at", "2026-11-26T12:25", "--json")
    doc = json.loads(out)
    assert code == 0 and (doc["stable_version"], doc["canary_version"], doc["canary_weight"]) == ("1", "2", 30)
    code, out, _ = run(c, capsys, "served-at", "--endpoint", ENDPOINT, "--at=-15m")  # 12:25
    assert code == 0 and "stable v1 at 70%, canary v2 at 30%" in out and "change before" in out


def test_cli_refuses_bad_input_and_unknown_endpoints(container, capsys):
    c = container
    for argv, code, word in (
            (["timeline", "--endpoint", ENDPOINT, "--from", "yesterday"], 2, "--from"),
            (["timeline", "--endpoint", ENDPOINT, "--from", "2026-11-27", "--to", "2026-11-26"], 2, "before --to"),
            (["served-at", "--endpoint", ENDPOINT, "--at", "noon"], 2, "--at"),
            (["timeline", "--endpoint", "nope"], 4, "no endpoint named 'nope'"),
            (["served-at", "--endpoint", "nope", "--at", "now"], 4, "nope")):
        got, _, err = run(c, capsys, *argv)
        assert (got, word in err) == (code, True), (argv, err)
    got, out, _ = run(c, capsys, "timeline", "--endpoint", "nope", "--json")
    assert got == 4 and json.loads(out)["error"] == "not_found"


def test_a_scripted_incident_with_the_real_alert_store_and_metrics(container, clock):
    """A canary that errs: the alert (the real SQL alert store) fires after the canary start, the timeline
    lists the start first, and the canary start is the first suspect (the rollups' two-proportion test)."""
    from dataclasses import replace

    from services.alerts import AlertRule
    from services.alerts.sql import SqlAlertStore

    c = container
    clock.advance(minutes=10)
    act(c, "alice", "abort_canary", "quiet")  # 12:10
    clock.advance(minutes=10)
    act(c, "alice", "start_canary", "second try", version="2", weight=30)  # 12:20
    start = T0 + timedelta(minutes=20)
    c.predictions.write([PredictionRow(f"p{i}", 0, ENDPOINT, start + timedelta(seconds=2 * i),
                                       "2" if i % 3 == 0 else "1", "canary" if i % 3 == 0 else "stable", MODEL,
                                       status=500 if i % 3 == 0 and i % 2 == 0 else 200) for i in range(300)])
    store = SqlAlertStore(c.engine, clock=clock)
    rule = AlertRule("canary-errors", "error_rate", timedelta(minutes=1), above=0.1, role="canary", severity="page")
    alert = store.fire(ENDPOINT, rule, T0 + timedelta(minutes=25), 0.5, rule.condition)
    store.resolve(ENDPOINT, rule.name, T0 + timedelta(minutes=45))
    store.fire(ENDPOINT, replace(rule, name="other"), T0 + timedelta(hours=2), 0.5, "later: out of the window")
    incidents = replace(c.incidents, alerts=lambda: store)
    events = incidents.timeline(ENDPOINT, T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    assert [(e.kind, (e.at - T0).total_seconds() / 60) for e in events] == [
        ("serving_change", 10), ("action", 10), ("serving_change", 20), ("action", 20), ("alert_fired", 25),
        ("alert_resolved", 45)]
    assert events[4].details["id"] == alert.id and "canary-errors" in events[4].title
    ranked = incidents.suspects(events, alert)
    assert [(s["event"]["kind"], s["minutes_before"]) for s in ranked] == [("serving_change", 5),
                                                                           ("serving_change", 15)]
    top = ranked[0]
    assert top["test"]["metric"] == "error_rate" and top["test"]["worse"] and top["test"]["p_value"] < 1e-6
    assert (top["test"]["candidate"], top["test"]["baseline"]) == ("2", "1")
    assert ranked[1]["test"] is None, "after the abort no canary served: nothing to compare"
    md, data = incidents.report(ENDPOINT, T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    assert "## What served at 2026-11-26T12:25:00.000000Z" in md and "canary v2 at 30 %" in md, \
        "the report's moment is the first alert"
    assert {(v["version"], v["role"]) for v in data["metrics"]["versions"]} == {("1", "stable"), ("2", "canary")}
