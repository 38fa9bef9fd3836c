"""Deciding requests: approve (re-plan against the current state, then apply at once), reject, and keeping
every view honest about which requests can still apply (expired and void ones are marked so)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.actions.execute import Executor
from services.actions.inputs import parse_reason, parse_request_id
from services.actions.intents import DONE, NOT_APPLIED
from services.actions.plan import (
    SOURCE,
    Outcome,
    Plan,
    applied_but,
    left_for_repair,
    plan_from_request,
    repair_hint,
    result_of,
    state_of,
    what_changed,
)
from services.actions.stalled import Stalls
from services.errors import Conflict, ConsoleError, PermissionDenied, PreconditionFailed
from services.identity import Actor


@dataclass
class Decisions:
    executor: Executor
    stalls: Stalls | None = None  # what stopped processes left applying (services.actions.stalled)

    @property
    def approvals(self):
        return self.executor.approvals

    @property
    def recorder(self):
        return self.executor.recorder

    def approve(self, actor: Actor, request_id: Any, reason: Any = "approved", *,
                override_reason: str | None = None) -> Outcome:
        """Claim the request (pending → applying), apply it, mark it approved. Its intent is recorded before the
        claim and closed last, so a process stopping anywhere in between leaves evidence for repair; an error
        that leaves the change live (or its fate unknown) leaves the request ``applying`` for repair to decide."""
        rid, req, progress, audited = None, None, None, False
        target = f"request #{request_id}"
        try:
            rid = parse_request_id(request_id)
            req = self.approvals.get(rid)
            target = req.endpoint
            if actor.subject == req.requester:
                raise PermissionDenied(f"{actor.name} requested #{rid} and cannot approve it; another approver must",
                                       source="policy")
            self.executor.planning.require_role(actor, "approve", req.endpoint)
            reason = parse_reason(reason)
            if req.status != "pending":
                raise PreconditionFailed(f"request #{rid} is {req.status}, not pending", source=SOURCE)
            settled, plan = self.settle(req)
            if settled.status != "pending" or plan is None:
                raise PreconditionFailed(f"request #{rid} is {settled.status}: {settled.decision_reason}",
                                         source=SOURCE)
            overridden = self.executor.check_gates(plan, actor, override_reason)
            progress = self.executor.begin(plan, req.requester, approved_by=actor.subject, request_id=rid)
            if not self.approvals.transition(rid, from_status="pending", to_status="applying",
                                             row_version=req.row_version, by=actor.subject, reason=reason):
                raise Conflict(f"request #{rid} was decided by someone else at the same moment", source=SOURCE)
            try:
                ep_after, notes = self.executor.apply(plan, Actor(req.requester, ()),
                                                      f"request #{rid}: {req.reason} — approved: {reason}",
                                                      approved_by=actor.subject, progress=progress)
            except Exception as exc:  # noqa: BLE001 - never leave a claimed request in "applying" unless repair must decide it
                if not getattr(exc, "needs_repair", False):
                    self.approvals.transition(rid, from_status="applying", to_status="failed",
                                              row_version=req.row_version + 1, by=actor.subject,
                                              reason=getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
                raise
            progress.step("champion moved" if plan.registry_changes else "endpoint written")
            try:
                recorded = self.approvals.transition(rid, from_status="applying", to_status="approved",
                                                     row_version=req.row_version + 1, by=actor.subject, reason=reason)
                record_error = None
            except ConsoleError as exc:
                recorded, record_error = False, exc
            if not recorded:
                err = left_for_repair(progress, applied_but(f"request #{rid}", "marking the request approved",
                                                            record_error, endpoint=req.endpoint),
                                      req.endpoint, "marking the request approved failed")
                self.recorder.quietly(actor, "approve", req.endpoint, "ok", reason=reason, error=err,
                                      before=plan.before, after=plan.after, details={"request_id": rid},
                                      model=req.model)
                audited = True
                raise err
        except ConsoleError as exc:
            if progress is not None and not getattr(exc, "needs_repair", False):
                progress.close(NOT_APPLIED, exc.message)
            if audited:
                raise
            self.recorder.quietly(actor, "approve", target, "ok" if getattr(exc, "applied", False) else
                                  result_of(exc), reason=reason if isinstance(reason, str) else "", error=exc,
                                  before=req.plan.get("before") if req else None,
                                  after=req.plan.get("after") if req else None,
                                  details={"request_id": rid, "params": req.params if req else None},
                                  model=req.model if req else None)
            raise
        after = state_of(ep_after, plan.after.get("champion"))
        try:
            entry = self.recorder.record(
                actor, "approve", req.endpoint, "ok", reason=reason, before=plan.before, after=after, gates=plan.gates,
                model=req.model, details={"request_id": rid, "requester": req.requester, "request_action": req.action,
                                          "params": req.params, "plan_hash": plan.plan_hash,
                                          "overridden_gates": overridden, "override_reason": override_reason}
                | ({"notes": notes} if notes else {}))
        except ConsoleError as exc:
            raise left_for_repair(progress, applied_but(f"request #{rid}", "writing its audit entry", exc),
                                  req.endpoint, f"writing the audit entry failed: {exc.message}") from exc
        progress.close(DONE)
        return Outcome("applied", "approve", req.endpoint, " ".join(
            [f"request #{rid} approved and applied on {req.endpoint}.", *notes]), request_id=rid,
            audit_seq=entry.seq, endpoint_after=after, overridden_gates=overridden)

    def reject(self, actor: Actor, request_id: Any, reason: Any) -> Outcome:
        rid, req = None, None
        target = f"request #{request_id}"
        try:
            rid = parse_request_id(request_id)
            req = self.approvals.get(rid)
            target = req.endpoint
            self.executor.planning.require_role(actor, "reject", req.endpoint)
            reason = parse_reason(reason)
            if req.status != "pending":
                raise PreconditionFailed(f"request #{rid} is {req.status}, not pending", source=SOURCE)
            if not self.approvals.transition(rid, from_status="pending", to_status="rejected",
                                             row_version=req.row_version, by=actor.subject, reason=reason):
                raise Conflict(f"request #{rid} was decided by someone else at the same moment", source=SOURCE)
        except ConsoleError as exc:
            self.recorder.quietly(actor, "reject", target, result_of(exc),
                                  reason=reason if isinstance(reason, str) else "", error=exc,
                                  details={"request_id": rid, "params": req.params if req else None},
                                  model=req.model if req else None)
            raise
        entry = self.recorder.record(actor, "reject", req.endpoint, "ok", reason=reason, model=req.model,
                                     details={"request_id": rid, "requester": req.requester, "params": req.params})
        return Outcome("rejected", "reject", req.endpoint, f"request #{rid} rejected", request_id=rid,
                       audit_seq=entry.seq)

    # -- which requests can still apply -----------------------------------------
    def staleness(self, req) -> tuple[str | None, Plan | None]:
        """Why approving ``req`` would be refused now (None when it still applies), and the plan it would apply.
        Raises Unavailable when a source needed to decide cannot be read."""
        if req.is_expired(self.executor.clock()):
            return f"it expired at {req.expires_at:%Y-%m-%d %H:%M} UTC", None
        stored = plan_from_request(req)
        try:
            plan = self.executor.replan(stored)
        except Conflict as exc:
            return exc.message, None
        if plan.plan_hash != req.plan_hash:
            return f"the state it was made against changed ({what_changed(stored, plan)})", None
        return None, plan

    def settle(self, req) -> tuple[Any, Plan | None]:
        """A pending request that can no longer apply is marked so (expired or void) for everyone, at once.
        Returns the request as it is now and, while it still applies, the plan approving it would apply."""
        if req.status != "pending":
            return req, None
        why, plan = self.staleness(req)
        if why is None:
            return req, plan
        to = "expired" if req.is_expired(self.executor.clock()) else "void"
        self.approvals.transition(req.id, from_status="pending", to_status=to, row_version=req.row_version,
                                  by="system", reason=why)
        return self.approvals.get(req.id), None  # ours, or whatever a concurrent decision made of it

    def freshness(self, request_id: Any) -> dict:
        rid = parse_request_id(request_id)
        req, plan = self.settle(self.approvals.get(rid))
        if req.status != "pending" or plan is None:
            why = f"request #{rid} is {req.status}" + (f": {req.decision_reason}" if req.decision_reason else "")
            return {"fresh": False, "why": why}
        return {"fresh": True, "why": "", "failing_gates": _failing(plan)}

    def requests(self, status: str | None = None, endpoint: str | None = None) -> list[dict]:
        query_status = None if status in ("expired", "void") else status
        out = []
        stalled = None
        for r in self.approvals.list(status=query_status, endpoint=endpoint):
            extra: dict = {}
            if r.status == "applying":
                if stalled is None:
                    stalled = self._stalled(endpoint)
                extra.update(stalled.get(r.id) or stalled.get(None) or {})
            if r.status == "pending":
                try:
                    r, plan = self.settle(r)
                    if plan is not None:
                        extra["failing_gates"] = _failing(plan)
                except ConsoleError as exc:
                    extra["freshness_unknown"] = f"{exc.source}: {exc.message}"
            d = {**r.as_dict(), **extra}
            if status and d["status"] != status:
                continue
            out.append(d)
        return out

    def _stalled(self, endpoint: str | None) -> dict[int | None, dict]:
        """Per request left applying: ``needs_repair`` (what stopped, where to repair) or ``applying_now``; under
        None, what to say of every one when that cannot be read."""
        if self.stalls is None:
            return {}
        try:
            found = self.stalls.find(endpoint)
        except ConsoleError as exc:
            return {None: {"freshness_unknown": f"whether it is still being applied cannot be told: {exc.message}"}}
        out: dict[int | None, dict] = {}
        for s in found:
            if s.request_id is None or s.request_row_version is None:
                continue
            out[s.request_id] = ({"needs_repair": f"{s.what} — {s.stopped}. {repair_hint(s.endpoint)}"}
                                 if s.stopped else {"applying_now": f"being applied right now: {s.what}"})
        return out


def _failing(plan: Plan) -> list[str]:
    return [f"{g.name}: {g.detail}" for g in plan.failing_gates]
