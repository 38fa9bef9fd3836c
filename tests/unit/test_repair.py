"""Nothing half-done, on in-memory fakes: a process stopping at the exact point (a ``BaseException`` nothing in the
console catches, as ``os._exit`` would leave it), how the next reader tells it from an action still running, the
exact difference it shows, and the repair action (roles, dry run, compare-and-set, audit). A lost answer to the
endpoint write is re-read. The same with real processes and databases: tests/integration/test_repair.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.actions.intents import ABANDONED, DONE, NOT_APPLIED, REPAIRED, Owner
from services.actions.stalled import NOT_APPLIED as STATE_NOT_APPLIED
from services.actions.stalled import SUPERSEDED, Stalled, assess
from services.errors import Conflict, PermissionDenied, PreconditionFailed, Unavailable
from tests.unit.test_actions_usecases import EP, M, World


@pytest.fixture
def w():
    return World()


class Killed(BaseException):
    """The process stops here: nothing after this line of the action runs (nothing catches a BaseException)."""


def kill_at(obj, method: str):
    """Make ``obj.method`` stop the process when called (after the original ran, for ``after=True``)."""
    def boom(*a, **kw):
        raise Killed(method)
    setattr(obj, method, boom)


def approved_but_killed_before_the_alias(w: World) -> int:
    """alice asks v2, bob approves; the process dies after the endpoint write, before @champion moves."""
    rid = w.act("alice", "request_promotion", version="2").request_id
    kill_at(w.registry, "set_alias")
    with pytest.raises(Killed):
        w.actions.approve(w.who("bob"), rid, "ship it")
    del w.registry.set_alias  # the next process has a working registry
    return rid


def dead(w: World) -> None:
    """The process that applied it is gone: its intents name a pid that no longer runs on this machine."""
    me = Owner.current()
    for i in list(w.actions.intents.rows.values()):
        w.actions.intents.rows[i.id] = replace(i, owner=replace(me, pid=2**22 + 17, started="1"))


def test_a_process_killed_between_the_endpoint_write_and_the_alias_move_is_found_and_shown_exactly(w):
    rid = approved_but_killed_before_the_alias(w)
    assert w.state() == ("2", None, 0, "1"), "the endpoint serves v2, the registry still says v1"
    assert w.approvals.get(rid).status == "applying"
    # the process is alive (it is this one) and within its lease: being applied right now, not stuck
    assert w.actions.needs_repair() == [] and [s.request_id for s in w.actions.in_progress()] == [rid]
    (req,) = w.actions.requests(status="applying")
    assert "being applied right now" in req["applying_now"] and "needs_repair" not in req
    with pytest.raises(PreconditionFailed, match="needs no repair.*being applied right now"):
        w.actions.plan(w.who("alice"), "repair", EP)
    dead(w)
    (f,) = w.actions.needs_repair()
    assert f.lines[0] == "endpoint screening serves v2 as stable, registry champion is v1"
    assert (f"request #{rid} (promote version v2, requested by alice) applying since 2026-11-26 12:00:00 UTC by bob"
            in f.lines[1])
    assert "stopped; the last step it recorded: endpoint written" in f.lines[1]
    assert "its endpoint change WAS applied, the champion was NOT moved (still v1, should be v2)" in f.lines[1]
    (req,) = w.actions.requests(status="applying")
    assert req["needs_repair"].startswith(f"request #{rid}") and "repair --endpoint screening" in req["needs_repair"]


def test_the_lease_is_the_rule_where_the_process_cannot_be_asked(w):
    approved_but_killed_before_the_alias(w)
    for i in list(w.actions.intents.rows.values()):  # another host: only the lease can tell
        w.actions.intents.rows[i.id] = replace(i, owner=Owner("console-7f9c", 41, "another-boot", "9"))
    w.clock.advance(minutes=1)
    assert w.actions.needs_repair() == []
    w.clock.advance(minutes=1, seconds=1)
    (f,) = w.actions.needs_repair()
    assert "gave no sign of life since 2026-11-26 12:00:00 UTC (its lease ran out at 2026-11-26 12:02:00 UTC)" in (
        f.summary)


def test_repair_dry_runs_then_finishes_forward_with_compare_and_set_and_one_audit_entry(w):
    rid = approved_but_killed_before_the_alias(w)
    dead(w)
    alice = w.who("alice")
    plan = w.actions.plan(alice, "repair", EP)
    assert plan.registry_changes == [{"model": M, "alias": "champion", "from": "1", "to": "2"}]
    assert not any(r["changed"] for r in plan.endpoint_diff) and plan.change is None and not plan.needs_approval
    assert plan.steps[0].startswith(f"move {M}@champion from v1 to v2")
    assert f"mark request #{rid} approved (its change is live; finished by a repair" in plan.steps[1]
    assert w.state() == ("2", None, 0, "1"), "a dry run changes nothing"
    out = w.actions.execute(plan, alice, f"finish #{rid}")
    assert out.status == "applied" and "moved cls@champion from v1 to v2" in out.message
    assert w.state() == ("2", None, 0, "2")
    req = w.approvals.get(rid)
    assert (req.status, req.decided_by) == ("approved", "bob") and "repair by alice" in req.decision_reason
    assert [i.state for i in w.actions.intents.rows.values()] == [REPAIRED]
    assert w.actions.needs_repair() == [] and w.actions.requests(status="applying") == []
    entry = w.audit.entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.result) == ("alice", "repair", "ok")
    assert entry.before["champion"] == "1" and entry.after["champion"] == "2"
    assert entry.details["finished"][0]["request_id"] == rid and entry.details["finished"][0]["outcome"] == "applied"
    assert w.audit.verify().ok
    with pytest.raises(PreconditionFailed, match="needs no repair"):
        w.actions.plan(alice, "repair", EP)


def test_only_operators_and_admins_repair_and_a_stale_repair_plan_is_a_conflict(w):
    approved_but_killed_before_the_alias(w)
    dead(w)
    for name in ("carol", "bob"):
        with pytest.raises(PermissionDenied, match="may not repair"):
            w.actions.plan(w.who(name), "repair", EP)
    first, second = w.actions.plan(w.who("dana"), "repair", EP), w.actions.plan(w.who("alice"), "repair", EP)
    w.actions.execute(first, w.who("dana"), "mine")
    with pytest.raises(PreconditionFailed, match="needs no repair"):
        w.actions.execute(second, w.who("alice"), "me too")  # the re-plan finds nothing left to repair
    assert [r for _, a, r in w.trail() if a == "repair"][-4:] == ["refused", "refused", "ok", "refused"]


def test_a_champion_moved_meanwhile_makes_the_repair_plan_stale(w):
    approved_but_killed_before_the_alias(w)
    dead(w)
    plan = w.actions.plan(w.who("alice"), "repair", EP)
    w.registry.alias_map[M]["champion"] = "3"  # someone moved it in the registry by hand
    with pytest.raises(Conflict, match="changed since the repair was planned"):
        w.actions.execute(plan, w.who("alice"), "late")
    assert w.state() == ("2", None, 0, "3") and w.trail()[-1] == ("alice", "repair", "conflict")
    again = w.actions.plan(w.who("alice"), "repair", EP)
    assert again.registry_changes == [] and "moved to v3 by someone else since: left as it is" in again.notes[1]


def test_killed_before_the_endpoint_write_nothing_changed_and_the_request_fails(w):
    rid = w.act("alice", "request_promotion", version="2").request_id
    kill_at(w.serving, "apply")
    with pytest.raises(Killed):
        w.actions.approve(w.who("bob"), rid, "ok")
    del w.serving.apply
    dead(w)
    (f,) = w.actions.needs_repair()
    assert f.outcomes == (STATE_NOT_APPLIED,) and "the endpoint was not changed" in f.lines[1]
    plan = w.actions.plan(w.who("alice"), "repair", EP)
    assert plan.registry_changes == []
    w.actions.execute(plan, w.who("alice"), "clean up")
    req = w.approvals.get(rid)
    assert req.status == "failed" and "stopped before the endpoint changed: nothing changed" in req.decision_reason
    assert w.state() == ("1", "2", 20, "1")


def test_a_direct_action_killed_half_way_is_repaired_too():
    w = World(policy={"defaults": {"require_approval": []}})
    kill_at(w.registry, "set_alias")
    with pytest.raises(Killed):
        w.act("alice", "promote_canary", "ship")
    del w.registry.set_alias
    dead(w)
    (f,) = w.actions.needs_repair()
    assert "alice's promote canary v2 started 2026-11-26 12:00:00 UTC" in f.lines[1]
    w.actions.execute(w.actions.plan(w.who("dana"), "repair", EP), w.who("dana"), "finish")
    assert w.state() == ("2", None, 0, "2")


def test_a_request_left_applying_without_any_intent_is_found_after_the_lease(w):
    """An older version (or a stop between the claim and anything else) left only the request."""
    rid = w.act("alice", "request_promotion", version="2").request_id
    req = w.approvals.get(rid)
    assert w.approvals.transition(rid, from_status="pending", to_status="applying", row_version=req.row_version,
                                  by="bob", reason="ok")
    assert w.actions.needs_repair() == []
    w.clock.advance(minutes=3)
    (f,) = w.actions.needs_repair()
    assert "nothing has worked on it since 2026-11-26 12:00:00 UTC" in f.summary and f.outcomes == (STATE_NOT_APPLIED,)
    w.actions.execute(w.actions.plan(w.who("alice"), "repair", EP), w.who("alice"), "unstick")
    assert w.approvals.get(rid).status == "failed"


def test_other_actions_on_an_endpoint_that_needs_repair_warn_first(w):
    approved_but_killed_before_the_alias(w)
    dead(w)
    plan = w.actions.plan(w.who("alice"), "start_canary", EP, version="3", weight=5)
    assert plan.warnings[0].startswith("screening NEEDS REPAIR: request #1")


def test_a_lost_answer_that_was_applied_is_finished():
    w = World(policy={"defaults": {"require_approval": []}})
    real = w.serving.apply

    def applied_then_dropped(*a, **kw):
        real(*a, **kw)
        raise Unavailable("patching: cannot reach the Kubernetes API (ProtocolError)", source="fake serving")

    w.serving.apply = applied_then_dropped
    out = w.act("alice", "promote_canary", "ship")
    assert "The answer to the endpoint write was lost" in out.message and "WAS applied" in out.message
    assert w.state() == ("2", None, 0, "2")
    assert [i.state for i in w.actions.intents.rows.values()] == [DONE]
    assert w.audit.entries(limit=1)[0].details["notes"][0].startswith("The answer to the endpoint write was lost")


def test_a_lost_answer_that_changed_nothing_says_so(w):
    def dropped(*a, **kw):
        raise Unavailable("patching: cannot reach the Kubernetes API", source="fake serving")

    w.serving.apply = dropped
    rid = w.act("alice", "request_promotion", version="2").request_id
    with pytest.raises(Unavailable, match="re-read screening: nothing changed"):
        w.actions.approve(w.who("bob"), rid, "ok")
    assert w.approvals.get(rid).status == "failed" and w.state() == ("1", "2", 20, "1")
    assert [i.state for i in w.actions.intents.rows.values()] == [NOT_APPLIED]


def test_a_lost_answer_that_cannot_be_re_read_is_left_for_repair_at_once(w):
    real = w.serving.apply
    rid = w.act("alice", "request_promotion", version="2").request_id

    def applied_then_gone(*a, **kw):
        real(*a, **kw)
        w.serving.fail["get_endpoint"] = Unavailable("API server gone", source="fake serving")
        raise Unavailable("patching: no answer", source="fake serving")

    w.serving.apply = applied_then_gone
    with pytest.raises(Unavailable, match="UNKNOWN whether the change was applied.*needs repair") as info:
        w.actions.approve(w.who("bob"), rid, "ok")
    assert info.value.needs_repair
    assert w.approvals.get(rid).status == "applying", "repair decides it, not a guess"
    assert [i.state for i in w.actions.intents.rows.values()] == [ABANDONED]
    del w.serving.fail["get_endpoint"]
    (f,) = w.actions.needs_repair()  # given up: found at once, no lease to wait for
    assert "gave up half-way" in f.summary
    w.actions.execute(w.actions.plan(w.who("alice"), "repair", EP), w.who("alice"), "finish")
    assert w.state() == ("2", None, 0, "2") and w.approvals.get(rid).status == "approved"


def test_an_alias_move_that_fails_with_a_failed_restore_is_left_for_repair(w):
    rid = w.act("alice", "request_promotion", version="2").request_id
    w.registry.fail["set_alias"] = Unavailable("registry down", source="fake registry")
    real = w.serving.apply
    calls = []

    def second_write_fails(*a, **kw):
        calls.append(a)
        if len(calls) > 1:
            raise Conflict("moved", source="fake serving")
        return real(*a, **kw)

    w.serving.apply = second_write_fails
    with pytest.raises(Unavailable, match="could NOT be restored.*needs repair"):
        w.actions.approve(w.who("bob"), rid, "ok")
    assert w.approvals.get(rid).status == "applying"
    del w.registry.fail["set_alias"]
    w.actions.execute(w.actions.plan(w.who("alice"), "repair", EP), w.who("alice"), "registry is back")
    assert w.state() == ("2", None, 0, "2") and w.approvals.get(rid).status == "approved"


def test_a_serving_history_not_written_is_recorded_by_the_repair():
    w = World(records_history=False)
    rid = w.act("alice", "request_promotion", version="2").request_id
    w.history.fail["record"] = Unavailable("db hiccup", source="fake history")
    with pytest.raises(Unavailable, match="WAS APPLIED.*needs repair"):
        w.actions.approve(w.who("bob"), rid, "ok")
    del w.history.fail["record"]
    plan = w.actions.plan(w.who("alice"), "repair", EP)
    assert any(s.startswith("record in the serving history that screening serves v2 as stable") for s in plan.steps)
    w.actions.execute(plan, w.who("alice"), "finish")
    last = w.history.changes(EP)[-1]
    assert (last.stable_version, last.actor, last.approved_by) == ("2", "alice", "bob")
    assert w.state() == ("2", None, 0, "2")


def test_assess_leaves_a_superseded_change_alone():
    item = Stalled(EP, M, "start_canary", "Start canary", {"version": "3"}, "alice", None, None, None, None,
                   __import__("datetime").datetime(2026, 1, 1), {"stable_version": "1", "canary_version": None,
                                                                 "canary_weight": 0},
                   {"stable_version": "1", "canary_version": "3", "canary_weight": 5}, [], "it stopped")
    f = assess(EP, M, {"stable_version": "2", "canary_version": None, "canary_weight": 0, "champion": "2"}, [item])
    assert f.outcomes == (SUPERSEDED,) and f.registry_changes == [] and f.decisions == []
    assert "the endpoint has changed since (it set out to serve v1 as stable and canary v3 at 5%)" in f.lines[1]
