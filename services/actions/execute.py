"""Executing a plan: role and gates again, then either file it for approval or apply it with compare-and-set
on the state it showed, move the registry alias with it, record the serving history and the audit entry.

Before the endpoint write the action's *intent* is recorded (:mod:`services.actions.intents`), each step renews
it, and it is closed last: a process that stops half-way leaves it behind as the evidence "needs repair" shows.
An error that leaves the change live (or its fate unknown) gives the intent up at once (``needs_repair`` on the
error): the endpoint shows as needing repair without waiting for the lease."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from services.actions.catalog import ACTIONS
from services.actions.inputs import parse_reason
from services.actions.intents import DONE, LEASE, NOT_APPLIED, IntentStore, MemoryIntents, Owner, Progress
from services.actions.plan import (
    SOURCE,
    Outcome,
    Plan,
    applied_but,
    left_for_repair,
    result_of,
    state_of,
    what_changed,
)
from services.actions.planning import Planning
from services.actions.recording import Recorder
from services.actions.stalled import STATE_KEYS, describe
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
    intents: IntentStore = field(default_factory=MemoryIntents)
    lease: timedelta = LEASE

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
        progress = None
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
            progress = self.begin(plan, actor.subject)
            ep_after, notes = self.apply(plan, actor, reason, progress=progress)
        except ConsoleError as exc:
            if progress is not None and not getattr(exc, "needs_repair", False):
                progress.close(NOT_APPLIED, exc.message)
            self.recorder.quietly(actor, plan.action, target, "ok" if getattr(exc, "applied", False) else
                                  result_of(exc), reason=reason if isinstance(reason, str) else "", error=exc,
                                  after=plan.after, details={"plan_hash": plan.plan_hash, "params": plan.params,
                                                             **extra}, **audit)
            raise
        after = state_of(ep_after, plan.after.get("champion"))
        if "scaling" in plan.after:  # set_scaling: the bounds as the backend shows them after the write
            after["scaling"] = ep_after.scaling.as_dict() if ep_after.scaling else None
        try:
            entry = self.recorder.record(
                actor, plan.action, target, "ok", reason=reason, after=after, **audit,
                details={"plan_hash": plan.plan_hash, "params": plan.params, "overridden_gates": overridden,
                         "override_reason": override_reason, "backend": plan.backend, **extra}
                | ({"notes": notes} if notes else {}))
        except ConsoleError as exc:
            raise left_for_repair(progress, applied_but(f"{plan.label} on {target}", "writing its audit entry", exc),
                                  target, f"writing the audit entry failed: {exc.message}") from exc
        progress.close(DONE)
        return Outcome("applied", plan.action, target, " ".join([f"{plan.label} on {target}: done.", *notes]),
                       audit_seq=entry.seq, endpoint_after=after, overridden_gates=overridden)

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

    def begin(self, plan: Plan, actor: str, *, approved_by: str | None = None,
              request_id: int | None = None) -> Progress:
        """Record what the action is about to do, before it touches anything (its intent)."""
        now = self.clock()
        i = self.intents.open(endpoint=plan.endpoint, model=plan.model, action=plan.action, actor=actor,
                              approved_by=approved_by, request_id=request_id, plan_hash=plan.plan_hash,
                              plan={"label": plan.label, "params": plan.params, "before": plan.before,
                                    "after": plan.after, "registry_changes": plan.registry_changes},
                              owner=Owner.current(), now=now, lease_until=now + self.lease)
        return Progress(self.intents, self.clock, self.lease, i.id, i.row_version)

    def apply(self, plan: Plan, actor: Actor, reason: str, *, progress: Progress,
              approved_by: str | None = None) -> tuple[Endpoint, list[str]]:
        """The endpoint write, its serving history and the registry moves. Returns the endpoint as written and
        notes worth telling (a lost answer that turned out applied). An error with ``needs_repair`` gave the
        intent up (the change is live, or its fate unknown); any other error changed nothing."""
        notes: list[str] = []
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
        except Unavailable as exc:
            if exc.write_sent is False:  # never sent (or refused with an answer): nothing changed
                raise
            ep_after = self._after_lost_answer(plan, exc, progress)
            notes.append(f"The answer to the endpoint write was lost ({exc.message}); re-reading {plan.endpoint} "
                         "showed the change WAS applied, so it was finished.")
        progress.step("endpoint written")
        self._record_history(ep_after, actor.subject, approved_by, reason, progress=progress)
        for rc in plan.registry_changes:
            try:
                self.registry.set_alias(rc["model"], rc["alias"], rc["to"])
            except ConsoleError as exc:
                if self._compensate(plan, ep_after, actor):
                    raise Unavailable(f"the endpoint changed but moving {rc['alias']} to v{rc['to']} failed "
                                      f"({exc.message}); the endpoint was restored", source=exc.source,
                                      detail=exc.detail) from exc
                err = Unavailable(f"the endpoint changed but moving {rc['alias']} to v{rc['to']} failed "
                                  f"({exc.message}) and the endpoint could NOT be restored", source=exc.source,
                                  detail=exc.detail)
                err.applied = True
                raise left_for_repair(progress, err, plan.endpoint, f"moving {rc['alias']} to v{rc['to']} failed "
                                      f"({exc.message}) and restoring the endpoint failed") from exc
            progress.step(f"{rc['alias']} moved")
        return ep_after, notes

    def _after_lost_answer(self, plan: Plan, exc: Unavailable, progress: Progress) -> Endpoint:
        """The endpoint write failed without an answer (e.g. the connection dropped): it may have been applied.
        Re-read (the backend's timeout holds) and return the endpoint when it WAS applied; else raise saying
        that nothing changed, or leave the intent for repair when it cannot be told."""
        doing = f"{plan.label} on {plan.endpoint}"
        try:
            ep = self.serving.get_endpoint(plan.endpoint)
        except ConsoleError as again:
            raise left_for_repair(progress, Unavailable(
                f"{doing}: the endpoint write got no answer ({exc.message}) and re-reading the endpoint failed "
                f"({again.message}): it is UNKNOWN whether the change was applied", source=exc.source,
                detail=exc.detail), plan.endpoint, "the endpoint write got no answer and the endpoint could not "
                f"be re-read ({again.message})") from exc
        now = ep.state().as_dict()
        keys = STATE_KEYS
        if "scaling" in plan.after:  # set_scaling: what serves stays; its bounds tell whether it was applied
            now["scaling"], keys = (ep.scaling.as_dict() if ep.scaling else None), (*STATE_KEYS, "scaling")
        if now == {k: plan.after.get(k) for k in keys}:
            return ep
        if now == {k: plan.before.get(k) for k in keys}:
            raise Unavailable(f"{exc.message}; re-read {plan.endpoint}: nothing changed (it serves {describe(now)}, "
                              "as before)", source=exc.source, detail=exc.detail) from exc
        raise left_for_repair(progress, Unavailable(
            f"{doing}: the endpoint write got no answer ({exc.message}) and {plan.endpoint} now serves "
            f"{describe(now)}: neither the state it was planned on nor the one it set out to make, so whether "
            "this change was applied is unknown", source=exc.source, detail=exc.detail), plan.endpoint,
            f"the endpoint write got no answer and the endpoint now serves {describe(now)}") from exc

    def _record_history(self, ep: Endpoint, actor: str, approved_by: str | None, note: str, *,
                        progress: Progress | None = None) -> None:
        """Backends that keep no history in their own write get it recorded here, right after it."""
        if self.serving.records_history:
            return
        try:
            self.history.record(ServedState(ep.name, self.clock(), ep.stable_version, ep.canary_version,
                                            ep.canary_weight, actor, approved_by, note[:500], "console"))
        except ConsoleError as exc:
            err = applied_but(f"the change on {ep.name}", "recording it in the serving history", exc,
                              endpoint=ep.name)
            if progress is None:
                raise err from exc
            raise left_for_repair(progress, err, ep.name, f"recording the serving history failed: {exc.message}"
                                  ) from exc
        if progress is not None:
            progress.step("history recorded")

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
