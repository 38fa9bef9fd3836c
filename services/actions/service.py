"""``Actions``: the use cases of guarded actions, built from the ports they use (explicit arguments; the
composition root passes the adapters)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from services.actions.catalog import ACTIONS, PLANNED
from services.actions.decisions import Decisions
from services.actions.execute import Executor
from services.actions.inputs import parse_request_id
from services.actions.intents import LEASE, IntentStore, MemoryIntents
from services.actions.plan import SOURCE, Outcome, Plan
from services.actions.planning import Planning, RetrainPorts
from services.actions.recording import Recorder
from services.actions.repair import Repairer, findings
from services.actions.retrain import Retraining
from services.actions.stalled import Finding, Stalled, Stalls
from services.approvals import ApprovalRepository
from services.audit import AuditTrail
from services.clock import Clock, utcnow
from services.errors import ConsoleError, Invalid
from services.history.serving import ServingHistory
from services.identity import Actor
from services.metrics import LiveMetrics
from services.policy import Policy
from services.registry import ModelRegistry
from services.serving import Endpoint, ServingBackend


class Actions:
    """Plan (dry run) → execute (apply with compare-and-set, or file for approval) → decide requests.
    Every attempt, refused or not, is one audit entry."""

    def __init__(self, *, registry: ModelRegistry, serving: ServingBackend, audit: AuditTrail,
                 approvals: ApprovalRepository, history: ServingHistory, policy: Policy, clock: Clock = utcnow,
                 approval_ttl: timedelta = timedelta(hours=24), live_metrics: LiveMetrics | None = None,
                 intents: IntentStore | None = None, lease: timedelta = LEASE,
                 retrainer: Callable[[], Any] | None = None, predictions: Callable[[], Any] | None = None,
                 retrain_leases: Callable[[], Any] | None = None):
        """``retrainer``/``predictions``: built on first use (the ``retrain`` action; without a retrainer it says
        retraining is not configured)."""
        self.intents = intents if intents is not None else MemoryIntents()
        self.stalls = Stalls(self.intents, approvals, clock, lease)
        ports = None if retrainer is None else (
            lambda: RetrainPorts(retrainer(), audit, predictions() if predictions else None, clock,
                                 retrain_leases() if retrain_leases else None))
        self.planning = Planning(registry, serving, policy, history, live_metrics, stalled=self.stalls.find,
                                 retraining=ports)
        self.recorder = Recorder(audit, serving)
        self.executor = Executor(self.planning, approvals, history, self.recorder, clock, approval_ttl,
                                 self.intents, lease)
        self.retraining = Retraining(self.planning, approvals, self.recorder, self.executor.replan)
        self.decisions = Decisions(self.executor, self.stalls)
        self.repairer = Repairer(self.planning, self.stalls, approvals, history, self.recorder, clock)

    # -- plan and execute ---------------------------------------------------------
    def plan(self, actor: Actor, action: str, endpoint: str, **params) -> Plan:
        """The dry run of ``action``: nothing changes; a refusal is audited and raised."""
        target = str(endpoint)
        given = {k: str(v) for k, v in params.items() if v not in (None, "")}
        try:
            if action not in PLANNED:
                raise Invalid(f"unknown action {action!r}; one of {', '.join(PLANNED)}", source=SOURCE)
            spec = ACTIONS[action]
            try:
                inspect.signature(spec.planner).bind(self.planning, spec, actor, endpoint, **params)
            except TypeError as exc:
                raise Invalid(f"{action} does not take these parameters ({exc})", source=SOURCE) from None
            self.planning.require_role(actor, action, target)
            return spec.planner(self.planning, spec, actor, endpoint, **params)
        except ConsoleError as exc:
            self.recorder.refusal(actor, action, target, exc, stage="plan", params=given)
            raise

    def execute(self, plan: Plan, actor: Actor, reason: Any, *, override_reason: str | None = None,
                context: dict | None = None) -> Outcome:
        """``context``: what the action answers (e.g. ``{"alert": {"id": …, "rule": …}}``), kept in its audit entry."""
        if plan.action == "repair":
            return self.repairer.execute(plan, actor, reason, context=context)
        if plan.action == "retrain" and not plan.needs_approval:  # filing its request is the executor's, as for all
            return self.retraining.execute(plan, actor, reason, context=context)
        return self.executor.execute(plan, actor, reason, override_reason=override_reason, context=context)

    # -- what stopped processes left half-done ------------------------------------------
    def needs_repair(self, endpoint: str | None = None) -> list[Finding]:
        """Endpoints (or ``endpoint``) with an action a stopped process left half-done: the exact difference
        (``lines``, ``summary``) and what a repair does (``steps``). Reads only; nothing is repaired here."""
        return findings(self.planning, self.stalls, endpoint)

    def in_progress(self, endpoint: str | None = None) -> list[Stalled]:
        """Actions being applied right now (their process is alive and within its lease)."""
        return [s for s in self.stalls.find(endpoint) if not s.stopped]

    # -- requests -----------------------------------------------------------------
    def approve(self, actor: Actor, request_id: Any, reason: Any = "approved", *,
                override_reason: str | None = None) -> Outcome:
        req = self._retrain_request(request_id)
        if req is not None:  # a retraining: approving starts the run (services.actions.retrain)
            return self.retraining.approve(actor, req, reason)
        return self.decisions.approve(actor, request_id, reason, override_reason=override_reason)

    def _retrain_request(self, request_id: Any):
        try:
            req = self.decisions.approvals.get(parse_request_id(request_id))
        except ConsoleError:
            return None  # said (and audited) by the usual path
        return req if req.action == "retrain" else None

    def reject(self, actor: Actor, request_id: Any, reason: Any) -> Outcome:
        return self.decisions.reject(actor, request_id, reason)

    def requests(self, status: str | None = None, endpoint: str | None = None) -> list[dict]:
        """Approval requests as plain dicts, newest first. Pending ones are checked against the current state
        first: one that expired or whose endpoint or champion moved is marked expired or void, so every view
        (pages, CLI, counts) says the same. A pending request whose state cannot be read stays pending with
        ``freshness_unknown`` set; one that still applies carries its ``failing_gates``."""
        return self.decisions.requests(status, endpoint)

    def request_freshness(self, request_id: Any) -> dict:
        """Would approving this request still apply the change it shows? A request that can no longer apply is
        marked expired or void (for every view) as a side effect; nothing else changes and nothing is audited."""
        return self.decisions.freshness(request_id)

    # -- for showing what a person may do -------------------------------------------------
    def permissions(self, actor: Actor, endpoint: str) -> dict[str, str | None]:
        """Per action, None when ``actor``'s roles allow it on ``endpoint``, else the reason. (The use cases
        check again; this only keeps people from buttons that will refuse them.)"""
        pol = self.planning.policy_for(endpoint)
        out: dict[str, str | None] = {}
        for action in ACTIONS:
            roles = pol.roles_for(action)
            out[action] = None if actor.has_any(roles) else (
                f"{actor.name} ({', '.join(actor.roles) or 'no roles'}) may not {action.replace('_', ' ')} here; "
                f"needs {' or '.join(roles) or 'admin'}")
        return out

    def decision_refusal(self, actor: Actor, request: dict, decision: str) -> str | None:
        """Why ``actor`` may not take ``decision`` (approve/reject) on ``request`` (None: may)."""
        if request.get("status") != "pending":
            return f"request #{request.get('id')} is {request.get('status')}"
        if decision == "approve" and actor.subject == request.get("requester"):
            return "you requested this; another approver must decide it"
        return self.permissions(actor, request["endpoint"])[decision]

    def rollback_targets(self, ep: Endpoint) -> list[str]:
        return self.planning.rollback_targets(ep)

    def audit_refusal(self, who: str, action: str, target: str, error: ConsoleError) -> None:
        """Record an attempt refused before it reached a use case (e.g. by an unknown identity)."""
        self.recorder.refusal(Actor(str(who)[:255], ()), action, target, error, stage="identity")
