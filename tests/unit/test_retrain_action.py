"""``retrain`` as a guarded action (services/actions/retrain.py) on fakes: the dry run says exactly what would
happen and starts nothing, confirming starts one run with one audit entry, at most one open retraining per
endpoint, roles and approval come from the policy, bad input changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.actions import Actions
from services.actions.catalog import VOCABULARY
from services.errors import Conflict, Invalid, PermissionDenied, PreconditionFailed, Unavailable
from services.identity import Actor
from services.policy import Policy
from services.predictions import PredictionRow
from tests.fakes import (
    FakeApprovals,
    FakeAuditTrail,
    FakeClock,
    FakePredictionLog,
    FakeRegistry,
    FakeRetrainer,
    FakeServing,
    FakeServingHistory,
)

EP, M = "screening", "clf"
ALICE = Actor("alice", ("operator", "requester"))
BOB = Actor("bob", ("approver",))
CAROL = Actor("carol", ("viewer",))
RITA = Actor("rita", ("requester",))


class World:
    def __init__(self, policy: dict | None = None, states=("running", "succeeded"), retrainer=True):
        self.clock = FakeClock()
        self.registry = FakeRegistry()
        for v in ("1", "2", "3"):
            self.registry.add(M, v, metrics={"accuracy": 0.9})
        self.registry.alias_map[M]["champion"] = "2"
        self.serving = FakeServing(clock=self.clock)
        self.serving.add(EP, M, "2", "3", 10)
        self.audit = FakeAuditTrail(self.clock)
        self.approvals = FakeApprovals(self.clock)
        self.log = FakePredictionLog(self.clock)
        now = self.clock()
        self.log.write([PredictionRow(f"r{i}", 0, EP, now - timedelta(hours=1), "2", "stable", M, {"x": 1.0},
                                      prediction=1, latency_ms=4.0) for i in range(4)])
        self.log.add_labels([("r0", 0, 1), ("r1", 0, 0)])
        self.retrainer = FakeRetrainer(states=states)
        self.actions = Actions(registry=self.registry, serving=self.serving, audit=self.audit,
                               approvals=self.approvals, history=FakeServingHistory(),
                               policy=Policy.from_dict(policy or {"defaults": {"require_approval": ["promote"]}},
                                                       VOCABULARY),
                               clock=self.clock, approval_ttl=timedelta(hours=24),
                               retrainer=(lambda: self.retrainer) if retrainer else None,
                               predictions=lambda: self.log)

    def trail(self):
        return [(e.actor, e.action, e.result) for e in reversed(self.audit.entries(limit=None))]


def test_the_dry_run_says_what_would_happen_and_starts_nothing():
    w = World()
    plan = w.actions.plan(ALICE, "retrain", EP, days=3, evidence='{"ticket": 7}')
    r = plan.retraining
    assert (plan.action, plan.kind, plan.change, plan.needs_approval) == ("retrain", "retrain", None, False)
    assert (r["endpoint"], r["model"], r["parent_version"], r["champion"], r["retrainer"]) == (EP, M, "2", "2",
                                                                                              "fake")
    now = w.clock()
    assert r["window"] == {"start": (now - timedelta(days=3)).isoformat(), "end": now.isoformat()}
    assert r["evidence"]["given"] == {"ticket": 7}
    assert r["evidence"]["live"] == [{"version": "2", "role": "stable", "requests": 4, "errors": 0, "labelled": 2,
                                      "accuracy": 0.5, "mae": 0.5}]
    sent = plan.backend_preview["request"]  # what the retrainer would be sent: its payload
    assert (sent["endpoint"], sent["model"], sent["version"], sent["trigger"]) == (EP, M, "2", "alice")
    assert sent["evidence"]["ticket"] == 7 and sent["window"]["start"] == r["window"]["start"]
    assert any("alias challenger" in s for s in plan.steps) and any("nothing that serves" in s for s in plan.steps)
    assert plan.params == {"start": r["window"]["start"], "end": r["window"]["end"], "evidence": {"ticket": 7}}
    assert w.retrainer.requests == [] and w.trail() == []


def test_confirming_starts_one_run_with_one_audit_entry():
    w = World()
    plan = w.actions.plan(ALICE, "retrain", EP)
    out = w.actions.execute(plan, ALICE, "labels say v2 slips")
    assert (out.status, out.run.run_id, out.run.state) == ("applied", "fake-1", "queued")
    assert "run fake-1 queued" in out.message
    (req,) = w.retrainer.requests
    assert (req.version, req.trigger, req.reason) == ("2", "alice", "labels say v2 slips")
    assert req.window_end - req.window_start == timedelta(days=7)
    assert w.trail() == [("alice", "retrain", "ok")], "one entry per attempt: the use case's"
    entry = w.audit.entries(limit=1)[0]
    assert entry.after == {"run_id": "fake-1", "state": "queued", "new_version": None}
    assert entry.details["plan_hash"] == plan.plan_hash and entry.details["window"]["start"] == plan.params["start"]
    assert w.serving.get_endpoint(EP).stable_version == "2", "nothing that serves changed"


def test_at_most_one_open_retraining_per_endpoint():
    w = World(states=("running", "succeeded"))  # what the retrainer says at each read of the run
    w.actions.execute(w.actions.plan(ALICE, "retrain", EP), ALICE, "first")
    with pytest.raises(PreconditionFailed, match="run fake-1 of screening is still running: at most one open"):
        w.actions.plan(ALICE, "retrain", EP)
    assert w.trail()[-1] == ("alice", "retrain", "refused") and len(w.retrainer.requests) == 1
    plan = w.actions.plan(ALICE, "retrain", EP)  # the retrainer now says it succeeded
    assert plan.retraining["parent_version"] == "2"


def test_a_run_opened_after_the_dry_run_refuses_the_confirmation():
    w = World(states=("running", "running", "running"))
    plan = w.actions.plan(ALICE, "retrain", EP)
    w.actions.execute(w.actions.plan(ALICE, "retrain", EP), ALICE, "someone else first")
    with pytest.raises(Conflict, match="still running"):
        w.actions.execute(plan, ALICE, "me too")
    assert len(w.retrainer.requests) == 1 and w.trail()[-1] == ("alice", "retrain", "conflict")


def test_the_stable_version_moving_after_the_dry_run_refuses_the_confirmation():
    w = World()
    plan = w.actions.plan(ALICE, "retrain", EP)
    w.serving.add(EP, M, "3")
    with pytest.raises(Conflict, match="serves v3 as stable, not v2"):
        w.actions.execute(plan, ALICE, "why")
    assert w.retrainer.requests == [] and w.trail() == [("alice", "retrain", "conflict")]


def test_roles_come_from_the_policy():
    w = World()
    for who in (CAROL, BOB, RITA):
        with pytest.raises(PermissionDenied, match=f"{who.name} .* may not retrain on screening"):
            w.actions.plan(who, "retrain", EP)
    assert [t[2] for t in w.trail()] == ["refused"] * 3
    assert w.actions.permissions(CAROL, EP)["retrain"] and w.actions.permissions(ALICE, EP)["retrain"] is None
    w = World({"defaults": {"roles": {"retrain": ["requester"]}}})
    with pytest.raises(PermissionDenied):
        w.actions.plan(Actor("olga", ("operator",)), "retrain", EP)  # an operator, but the policy names requesters
    out = w.actions.execute(w.actions.plan(RITA, "retrain", EP), RITA, "the policy lets requesters retrain")
    assert out.run.request.trigger == "rita" and w.trail()[-1] == ("rita", "retrain", "ok")


def test_where_the_policy_requires_approval_a_request_is_filed_and_another_person_approves_it():
    w = World({"defaults": {"require_approval": ["promote", "retrain"]}})
    plan = w.actions.plan(ALICE, "retrain", EP)
    assert plan.needs_approval
    out = w.actions.execute(plan, ALICE, "drift on x")
    assert out.status == "pending_approval" and w.retrainer.requests == []
    assert w.trail() == [("alice", "retrain", "requested")]
    (pending,) = w.actions.requests(status="pending")
    assert (pending["action"], pending["params"]) == ("retrain", plan.params)
    with pytest.raises(PermissionDenied, match="cannot approve"):
        w.actions.approve(ALICE, out.request_id, "me")
    done = w.actions.approve(BOB, out.request_id, "evidence is clear")
    assert done.status == "applied" and done.run.run_id == "fake-1" and done.request_id == out.request_id
    (req,) = w.retrainer.requests
    assert req.trigger == "alice" and req.reason.startswith(f"request #{out.request_id}: drift on x")
    assert w.approvals.get(out.request_id).status == "approved"
    assert w.trail()[-3:] == [("alice", "approve", "refused"), ("alice", "retrain", "ok"), ("bob", "approve", "ok")]
    retrain = w.audit.entries(limit=1, action="retrain", result="ok")[0]
    assert retrain.details["approved_by"] == "bob" and retrain.details["request_id"] == out.request_id
    with pytest.raises(PreconditionFailed, match="not pending"):
        w.actions.approve(BOB, out.request_id, "again")
    assert len(w.retrainer.requests) == 1


def test_a_filed_retraining_is_void_once_the_stable_version_moves_and_a_failed_one_is_marked_failed():
    w = World({"defaults": {"require_approval": ["retrain"]}})
    out = w.actions.execute(w.actions.plan(ALICE, "retrain", EP), ALICE, "why")
    w.serving.add(EP, M, "3")
    (req,) = w.actions.requests()
    assert req["status"] == "void" and "stable version 2 → 3" in req["decision_reason"]
    with pytest.raises(PreconditionFailed):
        w.actions.approve(BOB, out.request_id, "ok")
    w.serving.add(EP, M, "2", "3", 10)
    out = w.actions.execute(w.actions.plan(ALICE, "retrain", EP), ALICE, "again")
    w.retrainer.fail["trigger"] = Unavailable("pipeline down", source="Airflow http://af")
    with pytest.raises(Unavailable, match="pipeline down"):
        w.actions.approve(BOB, out.request_id, "go")
    assert w.approvals.get(out.request_id).status == "failed"
    assert w.trail()[-2:] == [("alice", "retrain", "failed"), ("bob", "approve", "failed")]


@pytest.mark.parametrize("params, message", [
    ({"days": 0}, "number of days"), ({"days": "a week"}, "number of days"), ({"days": 400}, "number of days"),
    ({"evidence": "{not json"}, "not JSON"), ({"evidence": "[1]"}, "JSON object"),
    ({"start": "2026-11-27T00:00:00+00:00", "end": "2026-11-26T00:00:00+00:00"}, "starts"),
    ({"version": "3"}, "does not take these parameters"),
])
def test_bad_input_is_refused_clearly_and_changes_nothing(params, message):
    w = World()
    with pytest.raises(Invalid, match=message):
        w.actions.plan(ALICE, "retrain", EP, **params)
    assert w.retrainer.requests == [] and w.trail() == [("alice", "retrain", "refused")]


def test_a_missing_reason_or_another_persons_plan_is_refused_and_audited_once():
    w = World()
    plan = w.actions.plan(ALICE, "retrain", EP)
    with pytest.raises(Invalid, match="reason is required"):
        w.actions.execute(plan, ALICE, "  ")
    with pytest.raises(PermissionDenied, match="whoever planned it"):
        w.actions.execute(plan, Actor("dana", ("admin",)), "mine now")
    assert w.retrainer.requests == [] and [t[2] for t in w.trail()] == ["refused", "refused"]


def test_without_a_retrainer_or_a_stable_version_it_says_why():
    with pytest.raises(Unavailable, match="not configured"):
        World(retrainer=False).actions.plan(ALICE, "retrain", EP)
    w = World()
    w.serving.add("empty", M, None)
    with pytest.raises(PreconditionFailed, match="no stable version"):
        w.actions.plan(ALICE, "retrain", "empty")


class Killed(BaseException):
    """The process stops here (nothing in the console catches a BaseException, as ``os._exit`` would leave it)."""


def approval_killed(w: World, *, after_the_run: bool) -> int:
    """alice files a retraining, bob approves it, and the process stops: before the retrainer is asked, or after
    the run started (and its ``retrain`` entry was written) but before the request is marked approved."""
    rid = w.actions.execute(w.actions.plan(ALICE, "retrain", EP), ALICE, "drift on x").request_id
    real = w.approvals.transition

    def transition(request_id, **kw):
        if kw["to_status"] == "approved":
            raise Killed("before the request is marked approved")
        return real(request_id, **kw)

    w.approvals.transition = transition
    if not after_the_run:
        w.retrainer.trigger = lambda request: (_ for _ in ()).throw(Killed("before the retrainer is asked"))
    with pytest.raises(Killed):
        w.actions.approve(BOB, rid, "go")
    del w.approvals.transition  # the next process works
    if not after_the_run:
        del w.retrainer.trigger
    return rid


@pytest.mark.parametrize("after_the_run", [False, True])
def test_an_approval_stopped_half_way_is_left_applying_then_repaired_by_what_started(after_the_run):
    w = World({"defaults": {"require_approval": ["retrain"]}})
    rid = approval_killed(w, after_the_run=after_the_run)
    assert w.approvals.get(rid).status == "applying"  # never "approved" with no run
    assert len(w.retrainer.requests) == int(after_the_run)
    w.clock.advance(minutes=29)  # a local retraining may still be training: not for repair yet
    assert w.actions.needs_repair() == []
    w.clock.advance(minutes=2)
    (f,) = w.actions.needs_repair()
    assert "lease 30 min" in f.summary
    if after_the_run:
        assert "its retraining WAS started: run fake-1" in f.summary and f.outcomes == ("applied",)
    else:
        assert "no retraining was started" in f.summary and f.outcomes == ("not_applied",)
    before = (w.serving.get_endpoint(EP).state(), w.registry.aliases(M))
    out = w.actions.execute(w.actions.plan(ALICE, "repair", EP), ALICE, "unstick")
    req = w.approvals.get(rid)
    assert req.status == ("approved" if after_the_run else "failed"), req
    assert ("run fake-1" in req.decision_reason) == after_the_run and "repair by alice" in req.decision_reason
    assert len(w.retrainer.requests) == int(after_the_run)  # the repair starts nothing
    assert (w.serving.get_endpoint(EP).state(), w.registry.aliases(M)) == before  # nor changes what serves
    assert w.trail()[-1] == ("alice", "repair", "ok") and out.status == "applied"
    assert w.actions.needs_repair() == []


def test_a_retraining_approval_still_starting_is_not_for_repair():
    w = World({"defaults": {"require_approval": ["retrain"]}})
    rid = w.actions.execute(w.actions.plan(ALICE, "retrain", EP), ALICE, "drift on x").request_id
    req = w.approvals.get(rid)
    assert w.approvals.transition(rid, from_status="pending", to_status="applying", row_version=req.row_version,
                                  by="bob", reason="go")  # another process claimed it a moment ago
    w.clock.advance(minutes=5)
    assert w.actions.needs_repair() == []
    with pytest.raises(PreconditionFailed, match="needs no repair.*is being applied right now"):
        w.actions.plan(ALICE, "repair", EP)  # refused: nothing changes
    assert w.approvals.get(rid).status == "applying" and w.retrainer.requests == []
    (r,) = w.actions.requests(status="applying")
    assert r["applying_now"].startswith("being applied right now")
