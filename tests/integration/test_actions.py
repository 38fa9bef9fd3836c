"""Guarded actions against the local backend, a real MLflow store, and SQLite or PostgreSQL."""

from __future__ import annotations

import pytest

from services.errors import Conflict, Invalid, NotFound, PermissionDenied, PreconditionFailed
from services.serving import Change, VersionRef
from tests.conftest import ENDPOINT, MODEL


def actor(c, name):
    return c.directory.get(name)


def state(c):
    ep = c.serving.get_endpoint(ENDPOINT)
    return (ep.stable_version, ep.canary_version, ep.canary_weight,
            c.registry.get_model(MODEL).aliases.get("champion"))


def test_set_canary_weight_applies_and_audits(container):
    c = container
    alice = actor(c, "alice")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=50)
    assert [r for r in plan.endpoint_diff if r["changed"] and r["field"] == "canary_weight"] == [
        {"field": "canary_weight", "before": 20, "after": 50, "changed": True}]
    assert state(c) == ("1", "2", 20, "1"), "a plan changes nothing"
    out = c.actions.execute(plan, alice, "ramp up")
    assert out.status == "applied"
    assert state(c) == ("1", "2", 50, "1")
    e = c.audit.entries(limit=1)[0]
    assert (e.actor, e.action, e.result, e.reason) == ("alice", "set_canary_weight", "ok", "ramp up")
    assert e.before["canary_weight"] == 20 and e.after["canary_weight"] == 50
    assert c.audit.verify().ok


def test_promotion_needs_another_person_and_moves_endpoint_and_champion_together(container):
    c = container
    alice, bob = actor(c, "alice"), actor(c, "bob")
    plan = c.actions.plan(alice, "request_promotion", ENDPOINT, version="2")
    assert plan.needs_approval and plan.registry_changes == [
        {"model": MODEL, "alias": "champion", "from": "1", "to": "2"}]
    assert all(g.passed for g in plan.gates) and plan.gates, "v2 beats the champion"
    out = c.actions.execute(plan, alice, "v2 is better on every metric")
    assert out.status == "pending_approval" and out.request_id
    assert state(c) == ("1", "2", 20, "1"), "a request changes nothing"
    with pytest.raises(PermissionDenied, match="cannot approve"):
        c.actions.approve(alice, out.request_id, "self")
    with pytest.raises(PermissionDenied):
        c.actions.approve(actor(c, "carol"), out.request_id, "viewer")
    done = c.actions.approve(bob, out.request_id, "looks good")
    assert done.status == "applied"
    assert state(c) == ("2", None, 0, "2")
    req = c.approvals.get(out.request_id)
    assert (req.status, req.decided_by) == ("approved", "bob")
    with pytest.raises(PreconditionFailed, match="approved, not pending"):
        c.actions.approve(actor(c, "dana"), out.request_id, "again")
    results = [(e.actor, e.action, e.result) for e in reversed(c.audit.entries())]
    assert results == [("alice", "request_promotion", "requested"), ("alice", "approve", "refused"),
                       ("carol", "approve", "refused"), ("bob", "approve", "ok"), ("dana", "approve", "refused")]
    assert c.audit.verify().ok


def test_expired_request_is_refused_and_marked(container, clock):
    c = container
    out = c.actions.execute(c.actions.plan(actor(c, "alice"), "request_promotion", ENDPOINT, version="2"),
                            actor(c, "alice"), "promote")
    clock.advance(minutes=c.settings.approval_ttl_minutes + 1)
    with pytest.raises(PreconditionFailed, match="expired"):
        c.actions.approve(actor(c, "bob"), out.request_id, "late")
    assert c.approvals.get(out.request_id).status == "expired"
    assert state(c) == ("1", "2", 20, "1")


def test_request_is_void_once_the_state_it_was_made_on_changes(container):
    c = container
    alice = actor(c, "alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "promote")
    c.actions.execute(c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=40), alice, "meanwhile")
    with pytest.raises(PreconditionFailed, match="void"):
        c.actions.approve(actor(c, "bob"), out.request_id, "ok")
    assert c.approvals.get(out.request_id).status == "void"
    assert state(c) == ("1", "2", 40, "1")


def test_champion_moved_elsewhere_voids_the_request(container):
    c = container
    alice = actor(c, "alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "promote")
    c.registry.set_alias(MODEL, "champion", "3")  # someone moved it in MLflow directly
    with pytest.raises(PreconditionFailed, match="champion"):
        c.actions.approve(actor(c, "bob"), out.request_id, "ok")
    assert c.serving.get_endpoint(ENDPOINT).stable_version == "1"


def test_plan_executed_after_a_concurrent_change_is_refused(container):
    c = container
    alice = actor(c, "alice")
    stale = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=30)
    c.actions.execute(c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=70), alice, "first")
    with pytest.raises(Conflict, match="canary weight 20 → 70"):
        c.actions.execute(stale, alice, "second")
    assert state(c) == ("1", "2", 70, "1")
    assert c.audit.entries(limit=1)[0].result == "conflict"


@pytest.mark.parametrize("weight", [-1, 101, 2.5, "abc", "", None, True, "50%", "１０"])
def test_bad_weights_are_refused_and_audited(container, weight):
    c = container
    with pytest.raises(Invalid, match="whole number from 0 to 100"):
        c.actions.plan(actor(c, "alice"), "set_canary_weight", ENDPOINT, weight=weight)
    assert state(c) == ("1", "2", 20, "1")
    e = c.audit.entries(limit=1)[0]
    assert (e.action, e.result) == ("set_canary_weight", "refused") and "whole number" in e.error


def test_unknown_endpoint_version_and_empty_reason(container):
    c = container
    alice = actor(c, "alice")
    with pytest.raises(NotFound):
        c.actions.plan(alice, "set_canary_weight", "no-such-endpoint", weight=10)
    with pytest.raises(NotFound):
        c.actions.plan(alice, "request_promotion", ENDPOINT, version="99")
    with pytest.raises(Invalid):
        c.actions.plan(alice, "request_promotion", ENDPOINT, version="2'; drop")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=10)
    with pytest.raises(Invalid, match="reason is required"):
        c.actions.execute(plan, alice, "   ")
    assert state(c) == ("1", "2", 20, "1")
    assert [e.result for e in c.audit.entries()] == ["refused"] * 4


def test_viewer_can_do_nothing(container):
    c = container
    carol = actor(c, "carol")
    for action, params in [("set_canary_weight", {"weight": 5}), ("promote_canary", {}), ("abort_canary", {}),
                           ("rollback", {}), ("request_promotion", {"version": "2"}),
                           ("start_canary", {"version": "3", "weight": 5})]:
        with pytest.raises(PermissionDenied):
            c.actions.plan(carol, action, ENDPOINT, **params)
    assert state(c) == ("1", "2", 20, "1")
    assert len(c.audit.entries()) == 6


def test_failing_gate_blocks_unless_admin_overrides_with_reason(container):
    c = container
    alice, dana = actor(c, "alice"), actor(c, "dana")
    c.actions.execute(c.actions.plan(alice, "abort_canary", ENDPOINT), alice, "clear")
    plan = c.actions.plan(alice, "start_canary", ENDPOINT, version="3", weight=10)
    failing = plan.failing_gates
    assert failing and failing[0].candidate == pytest.approx(0.70) and failing[0].baseline == pytest.approx(0.90)
    with pytest.raises(PreconditionFailed, match="gates failed"):
        c.actions.execute(plan, alice, "try")
    admin_plan = c.actions.plan(dana, "start_canary", ENDPOINT, version="3", weight=10)
    with pytest.raises(PreconditionFailed, match="override"):
        c.actions.execute(admin_plan, dana, "try")
    out = c.actions.execute(admin_plan, dana, "shadow test", override_reason="needed for an experiment")
    assert out.overridden_gates == [failing[0].name]
    assert state(c) == ("1", "3", 10, "1")
    e = c.audit.entries(limit=1)[0]
    assert e.details["overridden_gates"] and e.details["override_reason"] == "needed for an experiment"


def test_promote_canary_with_policy_without_approval_applies_directly(registry_template, tmp_path, clock):
    from tests.conftest import fresh_registry, make_container

    c = make_container(fresh_registry(registry_template, tmp_path / "r"), f"sqlite:///{tmp_path / 'c.db'}",
                       tmp_path, clock=clock, policy={"defaults": {"require_approval": []}})
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    alice = actor(c, "alice")
    out = c.actions.execute(c.actions.plan(alice, "promote_canary", ENDPOINT), alice, "ship it")
    assert out.status == "applied"
    assert state(c) == ("2", None, 0, "2")


def test_rollback_to_previous_stable_with_preflight(container):
    c = container
    alice = actor(c, "alice")
    with pytest.raises(PreconditionFailed, match="no earlier stable"):
        c.actions.plan(alice, "rollback", ENDPOINT)
    # make v2 stable, then roll back to v1 (the previous stable)
    c.actions.approve(actor(c, "bob"), c.actions.execute(
        c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "go").request_id, "ok")
    plan = c.actions.plan(alice, "rollback", ENDPOINT)
    assert plan.params == {"to_version": "1"} and not plan.warnings
    c.actions.execute(plan, alice, "incident 42")
    assert state(c) == ("1", None, 0, "1")
    # v3 (another input schema) and v4 (files gone) once served as stable, set by hand in the serving system
    for v in ("3", "4", "1"):
        ep = c.serving.get_endpoint(ENDPOINT)
        c.serving.apply(ENDPOINT, Change("set_stable", ep.resource_version, version=VersionRef(MODEL, v)),
                        actor="kubectl")
    # v3 has another input schema: allowed, with a warning naming the exact column
    plan3 = c.actions.plan(alice, "rollback", ENDPOINT, to_version="3")
    assert len(plan3.warnings) == 1 and "ratio (double)" in plan3.warnings[0]
    # v4's files are gone: refused
    with pytest.raises(PreconditionFailed, match="missing"):
        c.actions.plan(alice, "rollback", ENDPOINT, to_version="4")
    assert state(c) == ("1", None, 0, "1")


def test_rollback_only_to_a_version_that_served_as_stable_here(container):
    """A rollback is the fast path back; any other version is a promotion, with its gates and approval."""
    c = container
    alice = actor(c, "alice")
    before = c.audit.count()
    for v in ("3", "2"):  # v3 never served; v2 only ever ran as a canary
        with pytest.raises(PreconditionFailed, match="never the stable version.*request its promotion"):
            c.actions.plan(alice, "rollback", ENDPOINT, to_version=v)
    assert state(c) == ("1", "2", 20, "1")
    refused = c.audit.entries(limit=2)
    assert [(e.action, e.result) for e in refused] == [("rollback", "refused")] * 2
    assert c.audit.count() == before + 2
    assert refused[0].details["model"] == MODEL and "2" in refused[0].details["versions"]
    # the same version as a promotion is gated and needs another person
    plan = c.actions.plan(alice, "request_promotion", ENDPOINT, version="3")
    assert plan.needs_approval and plan.failing_gates


def test_reject(container):
    c = container
    alice, bob = actor(c, "alice"), actor(c, "bob")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "promote")
    with pytest.raises(Invalid):
        c.actions.reject(bob, out.request_id, "")
    c.actions.reject(bob, out.request_id, "not this week")
    assert c.approvals.get(out.request_id).status == "rejected"
    with pytest.raises(PreconditionFailed):
        c.actions.approve(bob, out.request_id, "changed my mind")
    assert state(c) == ("1", "2", 20, "1")
    assert [r["status"] for r in c.actions.requests(status="rejected")] == ["rejected"]


def test_admin_cannot_approve_own_request(container):
    c = container
    dana = actor(c, "dana")
    out = c.actions.execute(c.actions.plan(dana, "request_promotion", ENDPOINT, version="2"), dana, "mine")
    with pytest.raises(PermissionDenied, match="cannot approve"):
        c.actions.approve(dana, out.request_id, "self")
    assert c.approvals.get(out.request_id).status == "pending"


def test_two_approvers_at_the_same_moment_one_wins(container, registry_template, tmp_path, clock):
    import threading

    from services.errors import ConsoleError
    from tests.conftest import make_container

    c = container
    alice = actor(c, "alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "promote")
    other = make_container(c.settings.mlflow_tracking_uri, c.settings.database_url, tmp_path, clock=clock,
                           MLOPS_DEV_IDENTITIES="bob=approver,erin=approver")
    barrier = threading.Barrier(2)
    results = {}

    def decide(cont, name):
        barrier.wait()
        try:
            results[name] = cont.actions.approve(cont.directory.get(name), out.request_id, "ok").status
        except ConsoleError as exc:
            results[name] = exc.kind

    threads = [threading.Thread(target=decide, args=(c, "bob")),
               threading.Thread(target=decide, args=(other, "erin"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results.values()) in (["applied", "conflict"], ["applied", "precondition_failed"])
    assert state(c) == ("2", None, 0, "2")
    assert c.approvals.get(out.request_id).status == "approved"
    assert int(c.serving.get_endpoint(ENDPOINT).resource_version) == 2, "applied exactly once"
    assert c.audit.verify().ok
    other.engine.dispose()


@pytest.mark.parametrize("action", ["promote_canary", "abort_canary"])
def test_canary_actions_that_need_approval_become_requests(registry_template, tmp_path, clock, action):
    from tests.conftest import fresh_registry, make_container

    c = make_container(fresh_registry(registry_template, tmp_path / "r"), f"sqlite:///{tmp_path / 'c.db'}",
                       tmp_path, clock=clock,
                       policy={"defaults": {"require_approval": ["promote", "abort_canary"]}})
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    alice, bob = actor(c, "alice"), actor(c, "bob")
    out = c.actions.execute(c.actions.plan(alice, action, ENDPOINT), alice, "please")
    assert out.status == "pending_approval"
    assert state(c) == ("1", "2", 20, "1")
    c.actions.approve(bob, out.request_id, "ok")
    expected = ("2", None, 0, "2") if action == "promote_canary" else ("1", None, 0, "1")
    assert state(c) == expected


def test_naming_another_canary_than_the_running_one_is_refused(container):
    c = container
    with pytest.raises(PreconditionFailed, match="is v2, not v3"):
        c.actions.plan(actor(c, "alice"), "promote_canary", ENDPOINT, version="3")


def test_request_freshness_tells_the_approver_before_they_try(container, clock):
    c = container
    alice = actor(c, "alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "go")
    assert c.actions.request_freshness(out.request_id) == {"fresh": True, "why": "", "failing_gates": []}
    c.actions.execute(c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=30), alice, "meanwhile")
    f = c.actions.request_freshness(out.request_id)
    assert not f["fresh"] and "canary_weight 20 → 30" in f["why"].replace("canary weight", "canary_weight")
    req = c.approvals.get(out.request_id)
    assert (req.status, req.decided_by) == ("void", "system"), "a request that cannot apply is void for everyone"
    assert "is void" in f["why"]
    assert state(c) == ("1", "2", 30, "1"), "voiding a request changes nothing else"
    again = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "again")
    clock.advance(days=2)
    assert "is expired" in c.actions.request_freshness(again.request_id)["why"]
    assert c.approvals.get(again.request_id).status == "expired"


def test_every_view_of_requests_shows_a_stale_one_as_void(container):
    c = container
    alice = actor(c, "alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "go")
    assert [r["id"] for r in c.actions.requests(status="pending")] == [out.request_id]
    assert c.actions.requests(status="pending")[0]["failing_gates"] == []
    c.actions.execute(c.actions.plan(alice, "abort_canary", ENDPOINT), alice, "meanwhile")
    assert c.actions.requests(status="pending") == []
    void = c.actions.requests(status="void")
    assert [r["id"] for r in void] == [out.request_id]
    assert "canary" in void[0]["decision_reason"] and void[0]["decided_by"] == "system"
    assert c.actions.decision_refusal(actor(c, "bob"), void[0], "approve") == f"request #{out.request_id} is void"


def test_registry_down_after_the_endpoint_moved_restores_the_endpoint(registry_template, tmp_path, clock):
    from services.errors import ConsoleError, Unavailable
    from services.registry.mlflow_registry import MlflowRegistry
    from tests.conftest import fresh_registry, make_container

    class AliasStoreDown(MlflowRegistry):
        """The real adapter whose alias writes fail, as when the MLflow server goes away mid-action."""

        def set_alias(self, name, alias, version):
            raise Unavailable("cannot reach the MLflow server", source="MLflow registry")

    uri = fresh_registry(registry_template, tmp_path / "r")
    c = make_container(uri, f"sqlite:///{tmp_path / 'c.db'}", tmp_path, clock=clock)
    c.overrides["registry"] = AliasStoreDown(uri)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    alice, bob = actor(c, "alice"), actor(c, "bob")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "go")
    with pytest.raises(ConsoleError, match="endpoint was restored"):
        c.actions.approve(bob, out.request_id, "ok")
    ep = c.serving.get_endpoint(ENDPOINT)
    assert (ep.stable_version, ep.canary_version, ep.canary_weight) == ("1", "2", 20)
    assert c.registry.aliases(MODEL)["champion"] == "1"
    assert c.approvals.get(out.request_id).status == "failed"
    last = c.audit.entries(limit=1)[0]
    assert (last.action, last.result) == ("approve", "failed") and "restored" in last.error
    assert [r.note for r in ep.revisions][:2] == ["compensation: registry update failed"] * 2


def test_audit_store_failing_after_the_change_says_it_was_applied(container):
    from services.audit.sql import SqlAuditTrail
    from services.errors import Unavailable

    class AuditDownAfterwards(SqlAuditTrail):
        def append(self, **kw):
            if kw["result"] == "ok":
                raise Unavailable("disk full", source="audit store")
            return super().append(**kw)

    c = container
    c.__dict__["audit"] = AuditDownAfterwards(c.engine, clock=c.clock)
    alice = actor(c, "alice")
    with pytest.raises(Unavailable, match="WAS APPLIED") as info:
        c.actions.execute(c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=35), alice, "ramp")
    assert info.value.applied and "do not retry" in info.value.message
    assert state(c) == ("1", "2", 35, "1")


def test_abort_works_while_the_registry_is_down(registry_template, tmp_path, clock):
    from services.registry.mlflow_registry import MlflowRegistry
    from tests.conftest import free_port, fresh_registry, make_container

    c = make_container(fresh_registry(registry_template, tmp_path / "r"), f"sqlite:///{tmp_path / 'c.db'}",
                       tmp_path, clock=clock)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    c.overrides["registry"] = MlflowRegistry(f"http://127.0.0.1:{free_port()}")
    alice = actor(c, "alice")
    plan = c.actions.plan(alice, "abort_canary", ENDPOINT)
    assert "unreachable" in plan.warnings[0]
    c.actions.execute(plan, alice, "canary is bad and MLflow is down")
    ep = c.serving.get_endpoint(ENDPOINT)
    assert (ep.stable_version, ep.canary_version, ep.canary_weight) == ("1", None, 0)


def test_unknown_action_and_bad_request_ids_are_refused_and_audited(container):
    c = container
    alice, bob = actor(c, "alice"), actor(c, "bob")
    with pytest.raises(Invalid, match="unknown action"):
        c.actions.plan(alice, "teleport", ENDPOINT)
    with pytest.raises(Invalid, match="request id"):
        c.actions.approve(bob, "#x1", "ok")
    with pytest.raises(Invalid, match="request id"):
        c.actions.reject(bob, "", "no")
    assert [(e.action, e.result) for e in reversed(c.audit.entries())] == [
        ("teleport", "refused"), ("approve", "refused"), ("reject", "refused")]
