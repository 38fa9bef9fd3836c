"""The guarded-action use cases against in-memory fakes of every port (milliseconds each). The same
behaviour is tested with the real adapters in tests/integration/test_actions*.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.actions import ACTIONS, PLANNED, Actions
from services.actions.catalog import VOCABULARY
from services.errors import Conflict, Invalid, NotFound, PermissionDenied, PreconditionFailed, Unavailable
from services.history.serving import ServedState
from services.identity import Actor, Directory
from services.policy import Policy
from services.settings import DEFAULT_IDENTITIES
from tests.fakes import (
    FakeApprovals,
    FakeAuditTrail,
    FakeClock,
    FakeLiveMetrics,
    FakeRegistry,
    FakeServing,
    FakeServingHistory,
)

EP, M = "screening", "cls"
POLICY = {"defaults": {"require_approval": ["promote"]},
          "endpoints": {EP: {"gates": {"offline": [{"metric": "accuracy", "direction": "higher",
                                                    "max_regression": 0.05}]}}}}


class World:
    def __init__(self, *, records_history: bool = True, policy: dict | None = None, live: dict | None = None):
        self.clock = FakeClock()
        self.registry = FakeRegistry()
        for v, acc in (("1", 0.90), ("2", 0.93), ("3", 0.70)):
            self.registry.add(M, v, metrics={"accuracy": acc},
                              inputs=(("x", "double"),) + ((("ratio", "double"),) if v == "3" else ()))
        self.registry.add(M, "4", metrics={"accuracy": 0.95}, files=False)
        self.registry.alias_map[M]["champion"] = "1"
        self.history = FakeServingHistory()
        self.serving = FakeServing(history=self.history if records_history else None, clock=self.clock,
                                   needs_storage_uri=not records_history)
        self.serving.add(EP, M, "1", "2", 20)
        if not records_history:  # what the console recorded when it set the endpoint up
            self.history.record(ServedState(EP, self.clock(), "1", "2", 20, "seed"))
        self.audit = FakeAuditTrail(self.clock)
        self.approvals = FakeApprovals(self.clock)
        self.live = FakeLiveMetrics(live)
        self.directory = Directory(DEFAULT_IDENTITIES)
        self.actions = Actions(registry=self.registry, serving=self.serving, audit=self.audit,
                               approvals=self.approvals, history=self.history,
                               policy=Policy.from_dict(policy or POLICY, VOCABULARY), clock=self.clock,
                               approval_ttl=timedelta(hours=24), live_metrics=self.live)

    def who(self, name: str) -> Actor:
        return self.directory.get(name)

    def state(self):
        ep = self.serving.get_endpoint(EP)
        return ep.stable_version, ep.canary_version, ep.canary_weight, self.registry.alias_map[M].get("champion")

    def act(self, name: str, action: str, reason: str = "r", **params):
        return self.actions.execute(self.actions.plan(self.who(name), action, EP, **params), self.who(name), reason)

    def trail(self):
        return [(e.actor, e.action, e.result) for e in reversed(self.audit.entries(limit=None))]


@pytest.fixture
def w():
    return World()


def test_every_planned_action_is_declared_once_with_a_planner_and_the_policy_reads_the_catalog():
    assert set(PLANNED) == {n for n, s in ACTIONS.items() if s.planner} and len(PLANNED) == 9
    assert {"approve", "reject"} <= set(ACTIONS) and ACTIONS["approve"].planner is None
    assert set(VOCABULARY.default_roles) == set(ACTIONS)
    assert all(s.label and s.default_roles for s in ACTIONS.values())


def test_set_weight_applies_records_history_and_audits(w):
    out = w.act("alice", "set_canary_weight", "ramp", weight=50)
    assert out.status == "applied" and w.state() == ("1", "2", 50, "1")
    assert w.history.served_at(EP, w.clock()).canary_weight == 50
    assert w.trail() == [("alice", "set_canary_weight", "ok")]
    assert w.audit.verify().ok


def test_promotion_is_requested_then_approved_by_another_person(w):
    out = w.act("alice", "request_promotion", "v2 is better", version="2")
    assert out.status == "pending_approval" and w.state() == ("1", "2", 20, "1")
    with pytest.raises(PermissionDenied, match="cannot approve"):
        w.actions.approve(w.who("alice"), out.request_id, "self")
    with pytest.raises(PermissionDenied):
        w.actions.approve(w.who("carol"), out.request_id, "viewer")
    done = w.actions.approve(w.who("bob"), out.request_id, "ok")
    assert done.status == "applied" and w.state() == ("2", None, 0, "2")
    last = w.history.served_at(EP, w.clock())
    assert (last.stable_version, last.actor, last.approved_by) == ("2", "alice", "bob")
    assert w.trail() == [("alice", "request_promotion", "requested"), ("alice", "approve", "refused"),
                         ("carol", "approve", "refused"), ("bob", "approve", "ok")]


def test_identity_is_compared_by_subject_not_by_display_name(w):
    alice = Actor("Alice Liddell", ("operator", "requester"), subject_id="sub-alice")
    same_name = Actor("Alice Liddell", ("approver",), subject_id="sub-other")
    plan = w.actions.plan(alice, "request_promotion", EP, version="2")
    assert plan.actor == "sub-alice"
    out = w.actions.execute(plan, alice, "r")
    with pytest.raises(PermissionDenied, match="whoever planned"):
        w.actions.execute(plan, Actor("Alice Liddell", alice.roles, subject_id="sub-impostor"), "r")
    assert w.approvals.get(out.request_id).requester == "sub-alice"
    w.actions.approve(same_name, out.request_id, "a different person with the same name")
    entry = w.audit.entries(limit=1)[0]
    assert entry.actor == "sub-other" and entry.details["actor_name"] == "Alice Liddell"


def test_a_stale_request_is_void_in_every_view_and_cannot_be_approved(w):
    out = w.act("alice", "request_promotion", version="2")
    w.act("alice", "set_canary_weight", weight=40)
    assert w.actions.requests(status="pending") == []
    (void,) = w.actions.requests(status="void")
    assert void["id"] == out.request_id and "canary weight 20 → 40" in void["decision_reason"]
    with pytest.raises(PreconditionFailed, match="is void"):
        w.actions.approve(w.who("bob"), out.request_id, "too late")
    assert w.actions.decision_refusal(w.who("bob"), void, "approve") == f"request #{out.request_id} is void"


def test_an_expired_request_is_marked_expired(w):
    out = w.act("alice", "request_promotion", version="2")
    w.clock.advance(hours=25)
    with pytest.raises(PreconditionFailed, match="expired"):
        w.actions.approve(w.who("bob"), out.request_id, "late")
    assert w.approvals.get(out.request_id).status == "expired"


def test_rollback_only_to_a_version_that_served_as_stable_here(w):
    with pytest.raises(PreconditionFailed, match="never the stable version.*request its promotion"):
        w.actions.plan(w.who("alice"), "rollback", EP, to_version="3")
    out = w.act("alice", "request_promotion", version="2")
    w.actions.approve(w.who("bob"), out.request_id, "ok")
    plan = w.actions.plan(w.who("alice"), "rollback", EP)
    assert plan.params == {"to_version": "1"} and plan.registry_changes[0]["to"] == "1"
    w.actions.execute(plan, w.who("alice"), "incident")
    assert w.state() == ("1", None, 0, "1")


def test_on_a_backend_without_its_own_history_the_use_case_records_it():
    w = World(records_history=False)
    out = w.act("alice", "request_promotion", version="2")
    w.actions.approve(w.who("bob"), out.request_id, "ok")
    assert [(e.stable_version, e.approved_by, e.source) for e in w.history.changes(EP)] == [
        ("1", None, "console"), ("2", "bob", "console")]
    assert w.actions.plan(w.who("alice"), "rollback", EP).params == {"to_version": "1"}
    assert w.serving.applied[-1][1].version.storage_uri == "memory://cls/2", "the backend needs the location"


def test_a_refusal_for_an_unknown_endpoint_is_audited(w):
    with pytest.raises(NotFound):
        w.actions.plan(w.who("alice"), "abort_canary", "nope")
    with pytest.raises(Invalid, match="does not take"):
        w.actions.plan(w.who("alice"), "abort_canary", EP, weight=3)
    with pytest.raises(Invalid, match="unknown action"):
        w.actions.plan(w.who("alice"), "teleport", EP)
    assert [r for _, _, r in w.trail()] == ["refused"] * 3


def test_live_gates_apply_to_the_actions_they_name():
    policy = {"defaults": {"gates": {"live": [{"metric": "error_rate", "max_value": 0.05}]}}}
    w = World(policy=policy, live={(EP, "2", "error_rate"): 0.2})
    w.act("alice", "abort_canary")
    start = w.actions.plan(w.who("alice"), "start_canary", EP, version="2", weight=5)
    assert start.gates == [] and w.live.asked == [], "starting a canary has no live data yet"
    w.actions.execute(start, w.who("alice"), "try")
    promote = w.actions.plan(w.who("alice"), "promote_canary", EP)
    assert [g.passed for g in promote.gates] == [False] and w.live.asked == [(EP, "2", "error_rate")]
    with pytest.raises(PreconditionFailed, match="evidence gates failed"):
        w.actions.execute(promote, w.who("alice"), "go")


def test_the_endpoint_is_restored_when_the_alias_move_fails(w):
    out = w.act("alice", "request_promotion", version="2")
    w.registry.fail["set_alias"] = Unavailable("registry down", source="fake registry")
    with pytest.raises(Unavailable, match="the endpoint was restored"):
        w.actions.approve(w.who("bob"), out.request_id, "ok")
    assert w.state() == ("1", "2", 20, "1")
    assert w.approvals.get(out.request_id).status == "failed"


def test_an_audit_failure_after_the_change_says_it_was_applied(w):
    plan = w.actions.plan(w.who("alice"), "set_canary_weight", EP, weight=60)
    w.audit.fail["append"] = Unavailable("disk full", source="fake audit")
    with pytest.raises(Unavailable, match="WAS APPLIED"):
        w.actions.execute(plan, w.who("alice"), "r")
    assert w.state()[2] == 60


def test_a_stale_plan_is_a_conflict_and_changes_nothing(w):
    plan = w.actions.plan(w.who("alice"), "set_canary_weight", EP, weight=60)
    w.act("alice", "set_canary_weight", weight=30)
    with pytest.raises(Conflict, match="changed since the plan was made"):
        w.actions.execute(plan, w.who("alice"), "r")
    assert w.state()[2] == 30 and w.trail()[-1] == ("alice", "set_canary_weight", "conflict")


def test_permissions_for_buttons(w):
    carol = w.actions.permissions(w.who("carol"), EP)
    assert all(carol[a] for a in ACTIONS) and "carol (viewer) may not" in carol["rollback"]
    alice = w.actions.permissions(w.who("alice"), EP)
    assert alice["rollback"] is None and alice["approve"] is not None
    out = w.act("alice", "request_promotion", version="2")
    (req,) = w.actions.requests(status="pending")
    assert "another approver" in w.actions.decision_refusal(w.who("dana"), {**req, "requester": "dana"}, "approve")
    assert w.actions.decision_refusal(w.who("bob"), req, "approve") is None
    assert req["id"] == out.request_id


def test_two_approvers_racing_one_wins(w, monkeypatch):
    out = w.act("alice", "request_promotion", version="2")
    seen = w.approvals.get(out.request_id)  # both approvers read it pending ...
    assert w.approvals.transition(seen.id, from_status="pending", to_status="applying", row_version=seen.row_version)
    monkeypatch.setattr(w.approvals, "get", lambda rid: seen)  # ... the other one claimed it first
    with pytest.raises(Conflict, match="someone else"):
        w.actions.approve(w.who("bob"), out.request_id, "me too")
    assert w.state() == ("1", "2", 20, "1") and w.trail()[-1] == ("bob", "approve", "conflict")


def test_every_planned_action_has_a_cli_command_with_its_planner_parameters():
    from services.actions.commands import COMMANDS
    from services.cli import ACTION_COMMANDS, build_parser

    commands = {**ACTION_COMMANDS, **COMMANDS}  # repair's command lives with it (services.actions.commands)
    assert sorted(a for acts in commands.values() for a in acts) == sorted(PLANNED)
    assert set(commands) <= set(build_parser()._subparsers._group_actions[0].choices)
    args = build_parser().parse_args(["rollback", "--endpoint", EP, "--to-version", "3", "--reason", "r"])
    assert args.to_version == "3"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["request-promotion", "--endpoint", EP, "--reason", "r"])  # --version required


def test_the_context_of_an_action_is_kept_in_its_audit_entry(w):
    plan = w.actions.plan(w.who("alice"), "abort_canary", EP)
    context = {"alert": {"id": "a-1", "rule": "canary-errors"}}
    w.actions.execute(plan, w.who("alice"), "canary errors at 30 %", context=context)
    entry = w.audit.entries(limit=1)[0]
    assert (entry.action, entry.result) == ("abort_canary", "ok") and entry.details["context"] == context
    plain = w.actions.plan(w.who("alice"), "start_canary", EP, version="2", weight=10)
    w.actions.execute(plain, w.who("alice"), "again")
    assert "context" not in w.audit.entries(limit=1)[0].details


def test_a_write_that_was_never_sent_changes_nothing_and_needs_no_repair(w):
    """A backend that knows its write never left (refused before sending, no connection) says so: the action fails
    plainly — no re-read, no 'unknown, needs repair' — even when the endpoint cannot be read either."""
    plan = w.actions.plan(w.who("alice"), "set_canary_weight", EP, weight=60)
    unsent = Unavailable("the API server is resting after a timeout", source="fake serving")
    unsent.write_sent = False
    w.serving.fail["apply"] = unsent
    w.serving.fail["get_endpoint"] = Unavailable("still down", source="fake serving")
    with pytest.raises(Unavailable, match="resting after a timeout") as info:
        w.actions.execute(plan, w.who("alice"), "r")
    assert not getattr(info.value, "needs_repair", False)
    w.serving.fail.clear()
    assert w.state()[2] == 20 and w.actions.needs_repair() == []
    assert w.trail()[-1] == ("alice", "set_canary_weight", "failed")


def test_an_attempt_the_audit_trail_cannot_record_says_so(w):
    """Refused while the audit store is down too: the person's error says the attempt is NOT in the trail."""
    w.audit.fail["append"] = Unavailable("database is locked", source="fake audit")
    with pytest.raises(PermissionDenied, match="could NOT be written to the audit trail: database is locked"):
        w.actions.plan(w.who("carol"), "set_canary_weight", EP, weight=60)
