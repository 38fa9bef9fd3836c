"""``retrain``: a person retrains what an endpoint serves as stable — a guarded action like the others (roles and
approval from the policy, a dry run, one audit entry per attempt), run through the retraining use case
(:func:`services.retraining.usecases.request_retraining`), which writes that entry (action ``retrain``).

The dry run says exactly what would happen: the endpoint, the parent version (what serves as stable), the model,
the data window, the retrainer (``local``/``webhook``/``airflow``) and what it would be sent, and the evidence (the
window's live traffic per version). It is refused while a retraining of the endpoint is still open (queued or
running): at most one open retraining per endpoint. Nothing is written to the serving backend, so there is no
compare-and-set and no intent: what a request is bound to is the parent version, the window, the retrainer and
the evidence the person gave. Where the policy requires approval for the kind ``retrain``, confirming files a
request (:mod:`services.actions.execute`); approving it starts the retraining as the requester, ``approved_by``
the approver, in the ``retrain`` entry, and the approver's decision is the ``approve`` entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.actions.inputs import parse_reason
from services.actions.plan import SOURCE, Outcome, Plan, plan_hash, result_of
from services.actions.planning import Planning
from services.actions.recording import Recorder
from services.approvals import ApprovalRepository
from services.errors import Conflict, ConsoleError, Invalid, PermissionDenied, PreconditionFailed, Unavailable
from services.identity import Actor
from services.retraining import RetrainRequest, payload
from services.retraining.usecases import DEFAULT_WINDOW, live_evidence, open_run, request_retraining

MAX_DAYS = 365
REASON_LATER = "<the reason given when confirming>"


def _when(value: Any, now: datetime, what: str, *, end: bool = False) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise Invalid(f"the window's {what} needs a time zone", source=SOURCE)
        return value
    from services.metrics import parse_time

    return parse_time(str(value), now=now, end=end, what=f"the window's {what}")


def _days(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = float("nan")
    if isinstance(value, bool) or not 0 < days <= MAX_DAYS:
        raise Invalid(f"the window is a number of days above 0 and at most {MAX_DAYS}, got {value!r}", source=SOURCE)
    return days


def _evidence(value: Any) -> dict:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise Invalid(f"the evidence is not JSON: {exc}", source=SOURCE) from None
    if not isinstance(value, dict):
        raise Invalid("the evidence must be a JSON object", source=SOURCE)
    return json.loads(json.dumps(value, default=str))


def plan_retrain(p: Planning, spec, actor: Actor, endpoint: str, start: Any = None, end: Any = None,
                 days: Any = None, evidence: Any = None) -> Plan:
    """Retrain what ``endpoint`` serves as stable on its training data plus the labelled window ``start``..``end``
    (default: the ``days`` — 7 — before now)."""
    if p.retraining is None:
        raise Unavailable("retraining is not configured in this console", source="retraining")
    ports = p.retraining()
    ep = p.endpoint(endpoint)
    p.need_model(ep)
    if not ep.stable_version:
        raise PreconditionFailed(f"{ep.name} serves no stable version to retrain", source=SOURCE)
    now = ports.clock()
    stop = _when(end, now, "end", end=True) or now
    span = _days(days)
    begin = _when(start, now, "start") or stop - (timedelta(days=span) if span else DEFAULT_WINDOW)
    if begin >= stop:
        raise Invalid(f"the window starts ({begin:%Y-%m-%d %H:%M}) after it ends ({stop:%Y-%m-%d %H:%M})",
                      source=SOURCE)
    given = _evidence(evidence)
    still = open_run(ports.retrainer, ports.audit, ep.name)
    if still is not None:
        raise PreconditionFailed(f"retraining run {still[0]} of {ep.name} is still {still[1]}: at most one open "
                                 "retraining per endpoint; wait for it to end (retrain-status)", source="retraining")
    warnings = [*p.repair_warnings(ep.name)]
    live: list[dict] = []
    if ports.predictions is not None:
        try:
            live = live_evidence(ports.predictions, ep.name, begin, stop)
        except ConsoleError as exc:
            warnings.append(f"the window's live evidence cannot be read ({exc.source}: {exc.message}); retraining "
                            "does not need it")
    if not any(r.get("labelled") for r in live):
        warnings.append(f"no labelled requests in the window on {ep.name}: the new version learns nothing from "
                        "live traffic (the local retrainer refits on the training data alone)")
    try:
        champion = p.champion(ep.model)
    except Unavailable as exc:
        champion = None
        warnings.append(f"the registry is unreachable ({exc.message})")
    retrainer = ports.retrainer
    request = RetrainRequest(endpoint=ep.name, model=ep.model, version=ep.stable_version, reason=REASON_LATER,
                             trigger=actor.subject, evidence={**given, "live": live}, window_start=begin,
                             window_end=stop)
    params = {"start": begin.isoformat(), "end": stop.isoformat(), **({"evidence": given} if given else {})}
    before = {"model": ep.model, "version": ep.stable_version, "stable_version": ep.stable_version,
              "canary_version": ep.canary_version, "champion": champion}
    after = {"retraining": "started", "parent_version": ep.stable_version, "retrainer": retrainer.backend}
    bound = {"action": spec.name, "endpoint": ep.name, "model": ep.model, "params": params,
             "parent": ep.stable_version, "retrainer": retrainer.backend}
    window = {"start": begin.isoformat(), "end": stop.isoformat()}
    steps = [f"retrain {ep.model} v{ep.stable_version} (what {ep.name} serves as stable) with the "
             f"{retrainer.backend} retrainer on its training data plus the labelled rows of {begin:%Y-%m-%d %H:%M} → "
             f"{stop:%Y-%m-%d %H:%M} UTC",
             f"hand the request to the {retrainer.backend} pipeline, which trains and registers the new version"
             if retrainer.backend in ("webhook", "airflow") else
             "register the result as a new version with the alias challenger (champion does not move)",
             "write one audit entry (action retrain): who, why, the window, the evidence, the run; the endpoint's "
             "timeline shows it", "change nothing on the endpoint and nothing that serves"]
    traffic = ", ".join(f"v{v}: {w}%" for v, w in ep.traffic().items()) or "none"
    return Plan(action=spec.name, kind=spec.kind, endpoint=ep.name, model=ep.model, actor=actor.subject,
                params=params, change=None, before=before, after=after,
                endpoint_diff=[{"field": "traffic", "before": traffic, "after": traffic, "changed": False}],
                registry_changes=[], warnings=warnings,
                needs_approval=p.policy_for(ep.name).needs_approval(spec.kind), backend=retrainer.backend,
                backend_preview=retrainer.preview(request), plan_hash=plan_hash(bound), label=spec.label,
                steps=steps, retraining={"endpoint": ep.name, "model": ep.model, "parent_version": ep.stable_version,
                                         "champion": champion, "window": window, "retrainer": retrainer.backend,
                                         "payload": payload(request), "evidence": {"given": given, "live": live}})


@dataclass
class Retraining:
    """Executing a ``retrain`` plan (one that needs no approval) and approving a filed one."""

    planning: Planning
    approvals: ApprovalRepository
    recorder: Recorder
    replan: Callable[[Plan], Plan]  # services.actions.execute.Executor.replan

    def _fresh(self, plan: Plan) -> None:
        now = self.replan(plan)  # a refusal now (e.g. a run still open) is a Conflict: it changed since
        if now.plan_hash != plan.plan_hash:
            was, is_ = plan.before.get("version"), now.before.get("version")
            raise Conflict(f"{plan.endpoint} changed since the plan was made: " + (
                f"it serves v{is_} as stable, not v{was}" if was != is_ else "the retrainer or window differs"),
                source=SOURCE)

    def _run(self, plan: Plan, actor: Actor, reason: str, extra: dict):
        ports = self.planning.retraining()
        params = plan.params
        return request_retraining(
            ports.retrainer, ports.audit, self.planning.serving, actor, plan.endpoint, reason,
            start=datetime.fromisoformat(params["start"]), end=datetime.fromisoformat(params["end"]),
            evidence=params.get("evidence"), predictions=ports.predictions, clock=ports.clock,
            roles=None, extra={"plan_hash": plan.plan_hash, "params": params, **extra}, leases=ports.leases)

    def execute(self, plan: Plan, actor: Actor, reason: Any, *, context: dict | None = None) -> Outcome:
        """Check again (who, why, the plan still the one shown), then retrain: the use case writes the audit entry
        (refused, failed or ok); a refusal before it is recorded here — one entry per attempt either way."""
        extra = {"context": context} if context else {}
        try:
            if actor.subject != plan.actor:
                raise PermissionDenied("a plan can only be executed by whoever planned it", source=SOURCE)
            reason = parse_reason(reason)
            self.planning.require_role(actor, plan.action, plan.endpoint)
            if plan.needs_approval:
                raise PreconditionFailed("this retraining needs approval: file it as a request", source=SOURCE)
            self._fresh(plan)
        except ConsoleError as exc:
            self.recorder.quietly(actor, plan.action, plan.endpoint, result_of(exc), error=exc, before=plan.before,
                                  reason=reason if isinstance(reason, str) else "", model=plan.model,
                                  details={"plan_hash": plan.plan_hash, "params": plan.params, **extra})
            raise
        run = self._run(plan, actor, reason, extra)
        return _outcome(plan, run, f"{plan.label} on {plan.endpoint}: run {run.run_id} {run.state}")

    def approve(self, actor: Actor, req, reason: Any) -> Outcome:
        """Claim the request (pending → applying, compare-and-set: of two approvers one wins), retrain as the
        requester, then mark it approved; a retraining that fails marks it failed. A process that stops in between
        leaves it ``applying``: repair (:mod:`services.actions.stalled`) decides it by whether a run was started
        for it. The ``approve`` entry is the approver's attempt; the ``retrain`` entry (written by the use case)
        records the run, the requester, the approver and the request."""
        rid, plan = req.id, None
        try:
            if actor.subject == req.requester:
                raise PermissionDenied(f"{actor.name} requested #{rid} and cannot approve it; another approver must",
                                       source="policy")
            self.planning.require_role(actor, "approve", req.endpoint)
            reason = parse_reason(reason)
            if req.status != "pending":
                raise PreconditionFailed(f"request #{rid} is {req.status}, not pending", source=SOURCE)
            if req.is_expired(self.planning.retraining().clock()):
                raise PreconditionFailed(f"request #{rid} expired at {req.expires_at:%Y-%m-%d %H:%M} UTC",
                                         source=SOURCE)
            from services.actions.plan import plan_from_request

            plan = plan_from_request(req)
            self._fresh(plan)
            if not self.approvals.transition(rid, from_status="pending", to_status="applying",
                                             row_version=req.row_version, by=actor.subject, reason=reason):
                raise Conflict(f"request #{rid} was decided by someone else at the same moment", source=SOURCE)
        except ConsoleError as exc:
            self.recorder.quietly(actor, "approve", req.endpoint, result_of(exc), error=exc, model=req.model,
                                  reason=reason if isinstance(reason, str) else "",
                                  details={"request_id": rid, "request_action": req.action, "params": req.params})
            raise
        try:
            run = self._run(plan, Actor(req.requester, ()), f"request #{rid}: {req.reason} — approved: "
                            f"{reason}"[:2000], {"request_id": rid, "approved_by": actor.subject})
        except Exception as exc:  # noqa: BLE001 - never leave it applying when no run started: failed, then said
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.approvals.transition(rid, from_status="applying", to_status="failed", row_version=req.row_version + 1,
                                      by=actor.subject, reason=message[:2000])
            if isinstance(exc, ConsoleError):
                self.recorder.quietly(actor, "approve", req.endpoint, result_of(exc), error=exc, model=req.model,
                                      reason=reason, before=plan.before, details={
                                          "request_id": rid, "request_action": req.action, "params": req.params})
            raise
        if not self.approvals.transition(rid, from_status="applying", to_status="approved",
                                         row_version=req.row_version + 1, by=actor.subject, reason=reason):
            raise Conflict(f"request #{rid} was decided by a repair while its retraining started (run {run.run_id} "
                           "runs)", source=SOURCE)
        entry = self.recorder.record(actor, "approve", req.endpoint, "ok", reason=reason, before=plan.before,
                                     model=req.model, after={"run_id": run.run_id, "state": run.state,
                                                             "new_version": run.new_version},
                                     details={"request_id": rid, "requester": req.requester,
                                              "request_action": req.action, "params": req.params,
                                              "plan_hash": plan.plan_hash})
        out = _outcome(plan, run, f"request #{rid} approved: retraining run {run.run_id} {run.state}")
        return Outcome("applied", "approve", req.endpoint, out.message, request_id=rid, audit_seq=entry.seq, run=run)


def _outcome(plan: Plan, run, message: str) -> Outcome:
    if run.new_version:
        message += f"; v{run.new_version} is the challenger"
    return Outcome("applied", plan.action, plan.endpoint, message + ".", run=run,
                   endpoint_after={"run_id": run.run_id, "state": run.state, "new_version": run.new_version})
