"""Executing a plan: role and gates again, then either file it for approval or apply it with compare-and-set
on the state it showed, move the registry alias with it, record the serving history and the audit entry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from services.actions.catalog import ACTIONS
from services.actions.inputs import parse_reason
from services.actions.plan import SOURCE, Outcome, Plan, applied_but, result_of, state_of, what_changed
from services.actions.planning import Planning
from services.actions.recording import Recorder
from services.approvals import ApprovalRepository
from services.clock import Clock
from services.errors import Conflict, ConsoleError, PermissionDenied, PreconditionFailed, Unavailable
from services.history.serving import ServedState, ServingHistory
from services.identity import Actor
from services.serving import Change, Endpoint, VersionRef


@dataclass
class Executor:
    planning: Planning
    approvals: ApprovalRepository
    history: ServingHistory
    recorder: Recorder
    clock: Clock
    approval_ttl: timedelta

    @property
    def serving(self):
        return self.planning.serving

    @property
    def registry(self):
        return self.planning.registry

    def execute(self, plan: Plan, actor: Actor, reason: Any, *, override_reason: str | None = None,
                context: dict | None = None) -> Outcome:
        """Apply a plan (or file it for approval). Audits every attempt; ``context`` (e.g. the alert an
        on-call engineer acted on) is recorded with the entry."""
        target = plan.endpoint
        audit = {"before": plan.before, "gates": plan.gates, "model": plan.model}
        extra = {"context": context} if context else {}
        try:
            if actor.subject != plan.actor:
                raise PermissionDenied("a plan can only be executed by whoever planned it", source=SOURCE)
            reason = parse_reason(reason)
            self.planning.require_role(actor, plan.action, target)
            overridden = self.check_gates(plan, actor, override_reason)
            if plan.needs_approval:
                self.check_fresh(plan)
                req = self.approvals.create(endpoint=target, model=plan.model, action=plan.action, params=plan.params,
                                            requester=actor.subject, reason=reason, plan_hash=plan.plan_hash,
                                            plan=plan.as_dict(), ttl=self.approval_ttl)
                entry = self.recorder.record(
                    actor, plan.action, target, "requested", reason=reason, after=plan.after, **audit,
                    details={"request_id": req.id, "plan_hash": plan.plan_hash, "params": plan.params,
                             "overridden_gates": overridden, "override_reason": override_reason, **extra})
                return Outcome("pending_approval", plan.action, target,
                               f"request #{req.id} filed: another person with the approver role must approve it "
                               f"before {req.expires_at:%Y-%m-%d %H:%M} UTC", request_id=req.id,
                               audit_seq=entry.seq, overridden_gates=overridden)
            ep_after = self.apply(plan, actor, reason)
        except ConsoleError as exc:
            self.recorder.quietly(actor, plan.action, target, result_of(exc),
                                  reason=reason if isinstance(reason, str) else "", error=exc, after=plan.after,
                                  details={"plan_hash": plan.plan_hash, "params": plan.params, **extra}, **audit)
            raise
        after = state_of(ep_after, plan.after.get("champion"))
        try:
            entry = self.recorder.record(
                actor, plan.action, target, "ok", reason=reason, after=after, **audit,
                details={"plan_hash": plan.plan_hash, "params": plan.params, "overridden_gates": overridden,
                         "override_reason": override_reason, "backend": plan.backend, **extra})
        except ConsoleError as exc:
            raise applied_but(f"{plan.label} on {target}", "writing its audit entry", exc) from exc
        return Outcome("applied", plan.action, target, f"{plan.label} on {target}: done", audit_seq=entry.seq,
                       endpoint_after=after, overridden_gates=overridden)

    @staticmethod
    def check_gates(plan: Plan, actor: Actor, override_reason: str | None) -> list[str]:
        failing = plan.failing_gates
        if not failing:
            return []
        names = "; ".join(f"{g.name}: {g.detail}" for g in failing)
        if not actor.is_admin:
            raise PreconditionFailed(f"evidence gates failed: {names}", source="policy")
        if not (override_reason or "").strip():
            raise PreconditionFailed(f"evidence gates failed: {names}. An admin may override with a reason",
                                     source="policy")
        return [g.name for g in failing]

    def check_fresh(self, plan: Plan) -> Plan:
        """Re-plan from the current state; refuse if the change is no longer the one shown."""
        current = self.replan(plan)
        if current.plan_hash != plan.plan_hash:
            raise Conflict(f"{plan.endpoint} changed since the plan was made: {what_changed(plan, current)}",
                           source=SOURCE)
        return current

    def replan(self, plan: Plan) -> Plan:
        spec = ACTIONS[plan.action]
        try:
            return spec.planner(self.planning, spec, Actor(plan.actor, ()), plan.endpoint, **plan.params)
        except PreconditionFailed as exc:
            raise Conflict(f"{plan.endpoint} changed since the plan was made: {exc.message}", source=SOURCE) from exc

    def apply(self, plan: Plan, actor: Actor, reason: str, *, approved_by: str | None = None) -> Endpoint:
        # The registry part of the state must still be what the plan showed.
        if plan.model and plan.registry_changes:
            champion = self.planning.champion(plan.model)
            if champion != plan.before.get("champion"):
                raise Conflict(f"the champion alias of {plan.model} moved from v{plan.before.get('champion')} to "
                               f"v{champion} since the plan was made", source=self.registry.source)
        # The endpoint write is the lock: compare-and-set on the resource version shown.
        try:
            ep_after = self.serving.apply(plan.endpoint, plan.change, actor=actor.subject, note=reason,
                                          approved_by=approved_by)
        except Conflict as exc:
            raise Conflict(f"{plan.endpoint} changed since the plan was made: {self._changes_since(plan)}",
                           source=exc.source, detail=exc.message) from exc
        self._record_history(ep_after, actor.subject, approved_by, reason)
        for rc in plan.registry_changes:
            try:
                self.registry.set_alias(rc["model"], rc["alias"], rc["to"])
            except ConsoleError as exc:
                restored = self._compensate(plan, ep_after, actor)
                raise Unavailable(
                    f"the endpoint changed but moving {rc['alias']} to v{rc['to']} failed ({exc.message}); "
                    + ("the endpoint was restored" if restored else "the endpoint could NOT be restored: "
                       "fix it by hand"), source=exc.source, detail=exc.detail) from exc
        return ep_after

    def _record_history(self, ep: Endpoint, actor: str, approved_by: str | None, note: str) -> None:
        """Backends that keep no history in their own write get it recorded here, right after it."""
        if self.serving.records_history:
            return
        try:
            self.history.record(ServedState(ep.name, self.clock(), ep.stable_version, ep.canary_version,
                                            ep.canary_weight, actor, approved_by, note[:500], "console"))
        except ConsoleError as exc:
            raise applied_but(f"the change on {ep.name}", "recording it in the serving history", exc) from exc

    def _changes_since(self, plan: Plan) -> str:
        try:
            ep = self.serving.get_endpoint(plan.endpoint)
        except ConsoleError:
            return "it could not be re-read"
        now = {**ep.state().as_dict(), "resource_version": ep.resource_version}
        parts = [f"{k.replace('_', ' ')} {plan.before.get(k)} → {now[k]}"
                 for k in ("stable_version", "canary_version", "canary_weight") if plan.before.get(k) != now[k]]
        return ", ".join(parts) or f"state version {plan.before.get('resource_version')} → {ep.resource_version}"

    def _compensate(self, plan: Plan, ep_after: Endpoint, actor: Actor) -> bool:
        before = plan.before
        note = "compensation: registry update failed"
        try:
            model = plan.model or ""
            if not before.get("stable_version"):
                return False
            ref = self._with_uri(VersionRef(model, before["stable_version"]))
            ep = self.serving.apply(plan.endpoint, Change("set_stable", ep_after.resource_version, version=ref),
                                    actor=actor.subject, note=note)
            if before.get("canary_version"):
                cref = self._with_uri(VersionRef(model, before["canary_version"]))
                ep = self.serving.apply(plan.endpoint, Change("start_canary", ep.resource_version, version=cref,
                                                              weight=before["canary_weight"]),
                                        actor=actor.subject, note=note)
        except ConsoleError:
            return False
        try:
            self._record_history(ep, actor.subject, None, note)
        except ConsoleError:
            pass  # restored all the same; the error the caller raises says what failed first
        return True

    def _with_uri(self, ref: VersionRef) -> VersionRef:
        if not self.serving.needs_storage_uri:
            return ref
        return replace(ref, storage_uri=self.registry.storage_uri(ref.model, ref.version))
