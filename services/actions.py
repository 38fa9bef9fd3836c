"""Guarded actions on serving endpoints: plan (dry run), then execute.

Every action is two steps:

1. ``plan_*`` checks the actor's role and the current state, evaluates the
   evidence gates and returns a :class:`Plan`: exactly what will change on the
   endpoint and in the registry, with the gate numbers. Nothing changes.
2. :meth:`Actions.execute` applies the plan with a compare-and-set on the
   state it showed (or, when the policy says so, files an approval request
   bound to the plan's hash). Approving a request re-plans against the
   current state; a different hash means the request is void.

Every attempt that gets as far as ``execute``/``approve``/``reject``, and every
refusal while planning, writes one audit entry.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from services.audit import canonical
from services.compat import input_warnings
from services.errors import (
    Conflict,
    ConsoleError,
    Invalid,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unavailable,
)
from services.identity import Actor
from services.policy import EndpointPolicy, GateResult, evaluate_live, evaluate_offline
from services.registry import CHAMPION
from services.serving import Change, Endpoint, ServingState, VersionRef

if TYPE_CHECKING:  # pragma: no cover
    from services.composition import Container

SOURCE = "actions"
MAX_REASON = 2000

# action -> approval kind
KIND = {
    "request_promotion": "promote",
    "promote_canary": "promote",
    "start_canary": "start_canary",
    "set_canary_weight": "set_canary_weight",
    "abort_canary": "abort_canary",
    "rollback": "rollback",
}
LABEL = {
    "request_promotion": "Promote version",
    "promote_canary": "Promote canary",
    "start_canary": "Start canary",
    "set_canary_weight": "Set canary weight",
    "abort_canary": "Abort canary",
    "rollback": "Roll back",
}


# -- input validation (pure) ------------------------------------------------
def parse_weight(value: Any) -> int:
    """An integer percent 0..100; refuses fractions, booleans and text."""
    msg = f"canary weight must be a whole number from 0 to 100, got {value!r}"
    if isinstance(value, bool) or value is None:
        raise Invalid(msg, source=SOURCE)
    if isinstance(value, int):
        w = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise Invalid(msg, source=SOURCE)
        w = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"-?[0-9]+", text):
            raise Invalid(msg, source=SOURCE)
        w = int(text)
    else:
        raise Invalid(msg, source=SOURCE)
    if not 0 <= w <= 100:
        raise Invalid(msg, source=SOURCE)
    return w


def parse_version(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise Invalid(f"version must be a positive whole number, got {value!r}", source=SOURCE)
    return str(int(text))


def parse_reason(value: Any) -> str:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        raise Invalid("a reason is required", source=SOURCE)
    if len(text) > MAX_REASON:
        raise Invalid(f"a reason is at most {MAX_REASON} characters", source=SOURCE)
    return text


# -- plain data ---------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    action: str
    kind: str
    endpoint: str
    model: str | None
    actor: str
    params: dict
    change: Change
    before: dict
    after: dict
    endpoint_diff: list[dict]
    registry_changes: list[dict]
    gates: list[GateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    needs_approval: bool = False
    backend: str = ""
    backend_preview: Any = None
    plan_hash: str = ""

    @property
    def failing_gates(self) -> list[GateResult]:
        return [g for g in self.gates if g.passed is False]

    @property
    def label(self) -> str:
        return LABEL.get(self.action, self.action)

    def bound_part(self) -> dict:
        """What an approval is bound to: the change and the state it was planned on."""
        return {"action": self.action, "endpoint": self.endpoint, "model": self.model, "params": self.params,
                "before": self.before, "after": self.after, "registry_changes": self.registry_changes}

    def as_dict(self) -> dict:
        d = asdict(self)
        d["change"] = {"op": self.change.op, "expected_resource_version": self.change.expected_resource_version,
                       "version": self.change.version.version if self.change.version else None,
                       "weight": self.change.weight}
        return d


@dataclass(frozen=True)
class Outcome:
    status: str  # applied | pending_approval | rejected
    action: str
    endpoint: str
    message: str
    request_id: int | None = None
    audit_seq: int | None = None
    endpoint_after: dict | None = None
    overridden_gates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def plan_hash(bound: dict) -> str:
    return hashlib.sha256(canonical(bound).encode()).hexdigest()


def _state(ep: Endpoint, champion: str | None) -> dict:
    return {**ep.state().as_dict(), "resource_version": ep.resource_version, "champion": champion}


def _diff(before: ServingState, after: ServingState, ep: Endpoint) -> list[dict]:
    rows = []
    for f in ("stable_version", "canary_version", "canary_weight"):
        b, a = getattr(before, f), getattr(after, f)
        rows.append({"field": f, "before": b, "after": a, "changed": b != a})
    bt = Endpoint(ep.name, ep.model, before.stable_version, before.canary_version, before.canary_weight).traffic()
    at = Endpoint(ep.name, ep.model, after.stable_version, after.canary_version, after.canary_weight).traffic()
    fmt = lambda t: ", ".join(f"v{v}: {p}%" for v, p in t.items()) or "none"  # noqa: E731
    rows.append({"field": "traffic", "before": fmt(bt), "after": fmt(at), "changed": bt != at})
    return rows


class Actions:
    def __init__(self, c: Container):
        self.c = c

    # -- helpers ------------------------------------------------------------
    def _policy(self, endpoint: str) -> EndpointPolicy:
        return self.c.policy.for_endpoint(endpoint)

    def _require_role(self, actor: Actor, action: str, endpoint: str) -> None:
        roles = self._policy(endpoint).roles_for(action)
        if not actor.has_any(roles):
            raise PermissionDenied(
                f"{actor.name} ({', '.join(actor.roles) or 'no roles'}) may not {action.replace('_', ' ')} "
                f"on {endpoint}; needs one of: {', '.join(roles) or 'admin'}", source="policy")

    def _endpoint(self, name: str) -> Endpoint:
        if not isinstance(name, str) or not name.strip():
            raise Invalid("an endpoint name is required", source=SOURCE)
        return self.c.serving.get_endpoint(name)

    def _champion(self, model: str) -> str | None:
        return self.c.registry.aliases(model).get(CHAMPION)

    def _ref(self, model: str, version: str) -> VersionRef:
        v = self.c.registry.get_version(model, version)  # NotFound for unknown versions
        uri = ""
        if self.c.serving.name != "local":
            uri = self.c.registry.storage_uri(model, version)
        return VersionRef(model=model, version=v.version, run_id=v.run_id, storage_uri=uri)

    def _gates(self, ep: Endpoint, kind: str, candidate: str | None, champion: str | None) -> list[GateResult]:
        pol = self._policy(ep.name)
        if kind not in pol.gate_actions or candidate is None or ep.model is None:
            return []
        cand = self.c.registry.get_version(ep.model, candidate).metrics
        champ = None
        if champion and champion != candidate:
            try:
                champ = self.c.registry.get_version(ep.model, champion).metrics
            except NotFound:
                champ = None
        results = evaluate_offline(pol.offline_gates, cand, champ)
        if pol.live_gates:
            values: dict[str, float | None] = {}
            source = self.c.live_metrics
            for g in pol.live_gates:
                values[g.metric] = source.current(ep.name, candidate, g.metric) if source else None
            results += evaluate_live(pol.live_gates, values)
        return results

    def _finish(self, action: str, actor: Actor, ep: Endpoint, change: Change, params: dict,
                candidate: str | None, champion: str | None, new_champion: str | None,
                warnings: list[str] | None = None) -> Plan:
        if ep.read_only:
            raise PermissionDenied(f"endpoint {ep.name} is read-only: {ep.read_only_reason}",
                                   source=self.c.serving.source)
        before_state = ep.state()
        after_state = change.target_state(before_state)
        kind = KIND[action]
        registry_changes = []
        if new_champion and new_champion != champion and ep.model:
            registry_changes.append({"model": ep.model, "alias": CHAMPION, "from": champion, "to": new_champion})
        before = _state(ep, champion)
        after = {**after_state.as_dict(), "champion": new_champion or champion}
        bound = {"action": action, "endpoint": ep.name, "model": ep.model, "params": params, "before": before,
                 "after": after, "registry_changes": registry_changes}
        return Plan(
            action=action, kind=kind, endpoint=ep.name, model=ep.model, actor=actor.subject, params=params,
            change=change, before=before, after=after, endpoint_diff=_diff(before_state, after_state, ep),
            registry_changes=registry_changes, gates=self._gates(ep, kind, candidate, champion),
            warnings=list(warnings or []), needs_approval=self._policy(ep.name).needs_approval(kind),
            backend=self.c.serving.name, backend_preview=self.c.serving.preview(ep, change),
            plan_hash=plan_hash(bound),
        )

    def _audited(self, actor: Actor, action: str, target: str, params: dict, fn):
        """Run a planning step; audit a refusal, then re-raise it."""
        try:
            return fn()
        except ConsoleError as exc:
            self._audit_quietly(actor, action, target, _result_of(exc), error=exc,
                                details={"params": params, "stage": "plan"}, model=self._model_of(target))
            raise

    def _audit_quietly(self, *args, **kwargs) -> None:
        try:
            self._audit(*args, **kwargs)
        except ConsoleError:
            pass  # the caller is already raising the error that matters

    def _audit(self, actor: Actor, action: str, target: str, result: str, *, reason: str = "",
               error: ConsoleError | str | None = None, before=None, after=None, gates=None, details=None,
               model: str | None = None):
        err = ""
        if isinstance(error, ConsoleError):
            err = f"{error.kind}: {error.source}: {error.message}"
        elif error:
            err = str(error)
        details = {**(details or {}), "model": model, "versions": _versions_of(before, after, details)}
        return self.c.audit.append(actor=actor.name, action=action, target=target, result=result,
                                   reason=reason, error=err, before=before, after=after,
                                   gates=[g.as_dict() if isinstance(g, GateResult) else g for g in gates or []],
                                   details=details)

    def audit_refusal(self, who: str, action: str, target: str, error: ConsoleError) -> None:
        """Record an attempt refused before it reached a use case (e.g. by an unknown identity)."""
        self._audit_quietly(Actor(str(who)[:255], ()), str(action)[:64], str(target)[:512], _result_of(error),
                            error=error, details={"stage": "identity"}, model=self._model_of(target))

    def _model_of(self, endpoint: str) -> str | None:
        """For the audit entry of a refusal: which model the endpoint serves, if it can be read."""
        try:
            return self.c.serving.get_endpoint(endpoint).model
        except (ConsoleError, TypeError, ValueError):
            return None

    # -- planning (dry run) -------------------------------------------------
    def _builders(self) -> dict:
        return {
            "request_promotion": self._plan_promotion,
            "promote_canary": self._plan_promote_canary,
            "start_canary": self._plan_start_canary,
            "set_canary_weight": self._plan_set_weight,
            "abort_canary": self._plan_abort,
            "rollback": self._plan_rollback,
        }

    def plan(self, actor: Actor, action: str, endpoint: str, **params) -> Plan:
        builders = self._builders()
        target = str(endpoint)
        if action not in builders:
            err = Invalid(f"unknown action {action!r}", source=SOURCE)
            self._audit(actor, str(action)[:64], target, "refused", error=err, details={"stage": "plan"})
            raise err
        target = str(endpoint)

        def run():
            self._require_role(actor, action, target)
            return builders[action](actor, endpoint, **params)

        given = {k: str(v) for k, v in params.items() if v not in (None, "")}
        return self._audited(actor, action, target, given, run)

    def _plan_promotion(self, actor: Actor, endpoint: str, version: Any) -> Plan:
        ep = self._endpoint(endpoint)
        version = parse_version(version)
        self._need_model(ep)
        champion = self._champion(ep.model)
        if version == ep.stable_version and not ep.canary_version:
            raise PreconditionFailed(f"v{version} already serves 100% on {ep.name}", source=SOURCE)
        ref = self._ref(ep.model, version)
        warnings = []
        if ep.canary_version == version:
            change = Change("promote", ep.resource_version, version=ref,
                            previous_stable=VersionRef(ep.model, ep.stable_version) if ep.stable_version else None)
        else:
            change = Change("set_stable", ep.resource_version, version=ref,
                            previous_stable=VersionRef(ep.model, ep.stable_version) if ep.stable_version else None)
            warnings += _ends_canary(ep, f"promoting v{version}")
        warnings += input_warnings(self.c.registry, ep.model, ep.stable_version, version, "New stable")
        return self._finish("request_promotion", actor, ep, change, {"version": version}, version, champion,
                            version, warnings)

    def _plan_promote_canary(self, actor: Actor, endpoint: str, version: Any = None) -> Plan:
        ep = self._endpoint(endpoint)
        self._need_model(ep)
        if not ep.canary_version:
            raise PreconditionFailed(f"{ep.name} has no canary to promote", source=SOURCE)
        self._same_canary(ep, version)
        champion = self._champion(ep.model)
        ref = self._ref(ep.model, ep.canary_version)
        change = Change("promote", ep.resource_version, version=ref,
                        previous_stable=VersionRef(ep.model, ep.stable_version) if ep.stable_version else None)
        warnings = input_warnings(self.c.registry, ep.model, ep.stable_version, ep.canary_version, "New stable")
        return self._finish("promote_canary", actor, ep, change, {"version": ep.canary_version},
                            ep.canary_version, champion, ep.canary_version, warnings)

    def _plan_start_canary(self, actor: Actor, endpoint: str, version: Any, weight: Any) -> Plan:
        ep = self._endpoint(endpoint)
        version = parse_version(version)
        weight = parse_weight(weight)
        self._need_model(ep)
        if ep.canary_version:
            raise PreconditionFailed(f"{ep.name} already runs canary v{ep.canary_version}; promote or abort it "
                                     "first", source=SOURCE)
        if version == ep.stable_version:
            raise PreconditionFailed(f"v{version} is already the stable version of {ep.name}", source=SOURCE)
        ref = self._ref(ep.model, version)
        champion = self._champion(ep.model)
        change = Change("start_canary", ep.resource_version, version=ref, weight=weight,
                        previous_stable=VersionRef(ep.model, ep.stable_version) if ep.stable_version else None)
        warnings = input_warnings(self.c.registry, ep.model, ep.stable_version, version, "Canary")
        return self._finish("start_canary", actor, ep, change, {"version": version, "weight": weight}, version,
                            champion, None, warnings)

    def _plan_set_weight(self, actor: Actor, endpoint: str, weight: Any) -> Plan:
        ep = self._endpoint(endpoint)
        weight = parse_weight(weight)
        if not ep.canary_version:
            raise PreconditionFailed(f"{ep.name} has no canary; start one first", source=SOURCE)
        if weight == ep.canary_weight:
            raise PreconditionFailed(f"the canary of {ep.name} already gets {weight}%", source=SOURCE)
        champion = self._champion(ep.model) if ep.model else None
        change = Change("set_weight", ep.resource_version, weight=weight,
                        version=VersionRef(ep.model or "", ep.canary_version))
        warnings = (input_warnings(self.c.registry, ep.model, ep.stable_version, ep.canary_version, "Canary")
                    if ep.model and weight > 0 else [])
        return self._finish("set_canary_weight", actor, ep, change, {"weight": weight}, None, champion, None,
                            warnings)

    def _plan_abort(self, actor: Actor, endpoint: str, version: Any = None) -> Plan:
        """The emergency exit: needs the registry only where the backend needs a storage URI."""
        ep = self._endpoint(endpoint)
        if not ep.canary_version:
            raise PreconditionFailed(f"{ep.name} has no canary to abort", source=SOURCE)
        self._same_canary(ep, version)
        warnings = []
        try:
            champion = self._champion(ep.model) if ep.model else None
        except Unavailable as exc:
            champion = None
            warnings.append(f"the registry is unreachable ({exc.message}); aborting does not need it")
        stable = None
        if ep.model and ep.stable_version:
            stable = (self._ref(ep.model, ep.stable_version) if self.c.serving.name != "local"
                      else VersionRef(ep.model, ep.stable_version))
        change = Change("abort", ep.resource_version, previous_stable=stable)
        return self._finish("abort_canary", actor, ep, change, {"version": ep.canary_version}, None, champion,
                            None, warnings)

    @staticmethod
    def _same_canary(ep: Endpoint, version: Any) -> None:
        """When the caller names the canary version it means, the running canary must be that one."""
        if version not in (None, "") and parse_version(version) != ep.canary_version:
            raise PreconditionFailed(f"the canary of {ep.name} is v{ep.canary_version}, not v{parse_version(version)}",
                                     source=SOURCE)

    def rollback_targets(self, ep: Endpoint) -> list[str]:
        """Versions that were stable on this endpoint before, the one just before first: from the backend's
        serving history, then from the changes the console itself recorded (KServe keeps no history of its own
        beyond the revisions it still runs). Rolling back is the fast path to one of these; any other version
        is a promotion."""
        seen: list[str] = []
        for rev in ep.revisions:  # newest first
            seen.append(rev.stable_version)
        for e in self.c.audit.entries(limit=500, target_contains=ep.name, result="ok"):  # newest first
            if e.target == ep.name:
                seen += [s.get("stable_version") for s in (e.after, e.before) if isinstance(s, dict)]
        out: list[str] = []
        for v in seen:
            if v and v != ep.stable_version and v not in out:
                out.append(str(v))
        return out

    def rollback_target(self, ep: Endpoint) -> str | None:
        """The most recent earlier stable version recorded for the endpoint."""
        targets = self.rollback_targets(ep)
        return targets[0] if targets else None

    def _plan_rollback(self, actor: Actor, endpoint: str, to_version: Any = None) -> Plan:
        ep = self._endpoint(endpoint)
        self._need_model(ep)
        if to_version in (None, ""):
            target = self.rollback_target(ep)
            if target is None:
                raise PreconditionFailed(f"{ep.name} has no earlier stable version on record; choose one",
                                         source=SOURCE)
        else:
            target = parse_version(to_version)
        if target == ep.stable_version and not ep.canary_version:
            raise PreconditionFailed(f"v{target} is already the stable version of {ep.name}", source=SOURCE)
        allowed = self.rollback_targets(ep)
        if target != ep.stable_version and target not in allowed:
            earlier = ", ".join(f"v{v}" for v in allowed) or "none on record"
            raise PreconditionFailed(
                f"v{target} was never the stable version of {ep.name}, so this is not a rollback: request its "
                f"promotion instead (with its gates and approval). Earlier stable versions: {earlier}",
                source=SOURCE)
        # preflight
        ref = self._ref(ep.model, target)  # exists, else NotFound
        if not self.c.registry.artifact_available(ep.model, target):
            raise PreconditionFailed(f"the model files of {ep.model} v{target} are missing; cannot roll back to it",
                                     source=self.c.registry.source)
        warnings = _ends_canary(ep, f"rolling back to v{target}") if target != ep.stable_version else []
        warnings += input_warnings(self.c.registry, ep.model, ep.stable_version, target, "Rollback target")
        champion = self._champion(ep.model)
        change = Change("set_stable", ep.resource_version, version=ref,
                        previous_stable=VersionRef(ep.model, ep.stable_version) if ep.stable_version else None)
        return self._finish("rollback", actor, ep, change, {"to_version": target}, target, champion, target,
                            warnings)

    @staticmethod
    def _need_model(ep: Endpoint) -> None:
        if not ep.model:
            raise PreconditionFailed(f"{ep.name} serves a model the registry does not know; act on it in the "
                                     "serving system", source=SOURCE)

    # -- execution ------------------------------------------------------------
    def execute(self, plan: Plan, actor: Actor, reason: Any, *, override_reason: str | None = None) -> Outcome:
        """Apply a plan (or file it for approval). Audits every attempt."""
        target = plan.endpoint
        try:
            if actor.subject != plan.actor:
                raise PermissionDenied("a plan can only be executed by whoever planned it", source=SOURCE)
            reason = parse_reason(reason)
            self._require_role(actor, plan.action, target)
            overridden = self._check_gates(plan, actor, override_reason)
            if plan.needs_approval:
                self._check_fresh(plan)
                ttl = timedelta(minutes=self.c.settings.approval_ttl_minutes)
                req = self.c.approvals.create(endpoint=target, model=plan.model, action=plan.action,
                                              params=plan.params, requester=actor.subject, reason=reason,
                                              plan_hash=plan.plan_hash, plan=plan.as_dict(), ttl=ttl)
                entry = self._audit(actor, plan.action, target, "requested", reason=reason, before=plan.before,
                                    after=plan.after, gates=plan.gates, model=plan.model,
                                    details={"request_id": req.id, "plan_hash": plan.plan_hash, "params": plan.params,
                                             "overridden_gates": overridden, "override_reason": override_reason})
                return Outcome("pending_approval", plan.action, target,
                               f"request #{req.id} filed: another person with the approver role must approve it "
                               f"before {req.expires_at:%Y-%m-%d %H:%M} UTC", request_id=req.id,
                               audit_seq=entry.seq, overridden_gates=overridden)
            ep_after = self._apply(plan, actor, reason)
        except ConsoleError as exc:
            self._audit_quietly(actor, plan.action, target, _result_of(exc),
                                reason=reason if isinstance(reason, str) else "", error=exc, before=plan.before,
                                after=plan.after, gates=plan.gates,
                                details={"plan_hash": plan.plan_hash, "params": plan.params},
                                model=plan.model)
            raise
        try:
            entry = self._audit(actor, plan.action, target, "ok", reason=reason, before=plan.before,
                                after=_state(ep_after, plan.after.get("champion")), gates=plan.gates, model=plan.model,
                                details={"plan_hash": plan.plan_hash, "params": plan.params,
                                         "overridden_gates": overridden, "override_reason": override_reason,
                                         "backend": plan.backend})
        except ConsoleError as exc:
            raise _applied_but(f"{plan.label} on {target}", "writing its audit entry", exc) from exc
        return Outcome("applied", plan.action, target, f"{plan.label} on {target}: done", audit_seq=entry.seq,
                       endpoint_after=_state(ep_after, plan.after.get("champion")), overridden_gates=overridden)

    def _check_gates(self, plan: Plan, actor: Actor, override_reason: str | None) -> list[str]:
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

    def _check_fresh(self, plan: Plan) -> Plan:
        """Re-plan from the current state; refuse if the change is no longer the one shown."""
        current = self._replan(plan)
        if current.plan_hash != plan.plan_hash:
            raise Conflict(f"{plan.endpoint} changed since the plan was made: {_what_changed(plan, current)}",
                           source=SOURCE)
        return current

    def _replan(self, plan: Plan) -> Plan:
        builder = self._builders()[plan.action]
        actor = Actor(plan.actor, ())
        try:
            return builder(actor, plan.endpoint, **plan.params)
        except PreconditionFailed as exc:
            raise Conflict(f"{plan.endpoint} changed since the plan was made: {exc.message}", source=SOURCE) from exc

    def _apply(self, plan: Plan, actor: Actor, reason: str, *, approved_by: str | None = None) -> Endpoint:
        # The registry part of the state must still be what the plan showed.
        if plan.model and plan.registry_changes:
            champion = self._champion(plan.model)
            if champion != plan.before.get("champion"):
                raise Conflict(f"the champion alias of {plan.model} moved from v{plan.before.get('champion')} to "
                               f"v{champion} since the plan was made", source=self.c.registry.source)
        # The endpoint write is the lock: compare-and-set on the resource version shown.
        try:
            ep_after = self.c.serving.apply(plan.endpoint, plan.change, actor=actor.name, note=reason,
                                            approved_by=approved_by)
        except Conflict as exc:
            raise Conflict(f"{plan.endpoint} changed since the plan was made: {self._changes_since(plan)}",
                           source=exc.source, detail=exc.message) from exc
        for rc in plan.registry_changes:
            try:
                self.c.registry.set_alias(rc["model"], rc["alias"], rc["to"])
            except ConsoleError as exc:
                restored = self._compensate(plan, ep_after, actor)
                raise Unavailable(
                    f"the endpoint changed but moving {rc['alias']} to v{rc['to']} failed ({exc.message}); "
                    + ("the endpoint was restored" if restored else "the endpoint could NOT be restored: "
                       "fix it by hand"), source=exc.source, detail=exc.detail) from exc
        return ep_after

    def _changes_since(self, plan: Plan) -> str:
        try:
            ep = self.c.serving.get_endpoint(plan.endpoint)
        except ConsoleError:
            return "it could not be re-read"
        now = {**ep.state().as_dict(), "resource_version": ep.resource_version}
        parts = [f"{k.replace('_', ' ')} {plan.before.get(k)} → {now[k]}"
                 for k in ("stable_version", "canary_version", "canary_weight") if plan.before.get(k) != now[k]]
        return ", ".join(parts) or f"state version {plan.before.get('resource_version')} → {ep.resource_version}"

    def _compensate(self, plan: Plan, ep_after: Endpoint, actor: Actor) -> bool:
        before = plan.before
        try:
            model = plan.model or ""
            ref = VersionRef(model, before["stable_version"]) if before.get("stable_version") else None
            if ref is None:
                return False
            if self.c.serving.name != "local":
                ref = replace(ref, storage_uri=self.c.registry.storage_uri(model, ref.version))
            ep = self.c.serving.apply(plan.endpoint, Change("set_stable", ep_after.resource_version, version=ref),
                                      actor=actor.name, note="compensation: registry update failed")
            if before.get("canary_version"):
                cref = VersionRef(model, before["canary_version"])
                if self.c.serving.name != "local":
                    cref = replace(cref, storage_uri=self.c.registry.storage_uri(model, cref.version))
                self.c.serving.apply(plan.endpoint, Change("start_canary", ep.resource_version, version=cref,
                                                           weight=before["canary_weight"]),
                                     actor=actor.name, note="compensation: registry update failed")
            return True
        except ConsoleError:
            return False

    # -- approvals --------------------------------------------------------------
    def approve(self, actor: Actor, request_id: Any, reason: Any = "approved", *,
                override_reason: str | None = None) -> Outcome:
        rid = None
        target = f"request #{request_id}"
        req = None
        try:
            rid = _request_id(request_id)
            req = self.c.approvals.get(rid)
            target = req.endpoint
            if actor.subject == req.requester:
                raise PermissionDenied(f"{actor.name} requested #{rid} and cannot approve it; another approver must",
                                       source="policy")
            self._require_role(actor, "approve", req.endpoint)
            reason = parse_reason(reason)
            if req.status != "pending":
                raise PreconditionFailed(f"request #{rid} is {req.status}, not pending", source=SOURCE)
            now = self.c.clock()
            if req.is_expired(now):
                self.c.approvals.transition(rid, from_status="pending", to_status="expired",
                                            row_version=req.row_version, by="system", reason="expired")
                raise PreconditionFailed(f"request #{rid} expired at {req.expires_at:%Y-%m-%d %H:%M} UTC",
                                         source=SOURCE)
            stored = _plan_from(req)
            try:
                plan = self._replan(stored)
            except Conflict as exc:
                self.c.approvals.transition(rid, from_status="pending", to_status="void",
                                            row_version=req.row_version, by="system", reason=exc.message)
                raise PreconditionFailed(f"request #{rid} is void: {exc.message}", source=SOURCE) from exc
            if plan.plan_hash != req.plan_hash:
                why = _what_changed(stored, plan)
                self.c.approvals.transition(rid, from_status="pending", to_status="void",
                                            row_version=req.row_version, by="system", reason=why)
                raise PreconditionFailed(f"request #{rid} is void: the state it was made against changed ({why})",
                                         source=SOURCE)
            overridden = self._check_gates(plan, actor, override_reason)
            if not self.c.approvals.transition(rid, from_status="pending", to_status="applying",
                                               row_version=req.row_version):
                raise Conflict(f"request #{rid} was decided by someone else at the same moment", source=SOURCE)
            try:
                ep_after = self._apply(plan, Actor(req.requester, ()), f"request #{rid}: {req.reason} — approved: "
                                       f"{reason}", approved_by=actor.name)
            except Exception as exc:  # noqa: BLE001 - never leave a claimed request in "applying"
                self.c.approvals.transition(rid, from_status="applying", to_status="failed",
                                            row_version=req.row_version + 1, by=actor.name,
                                            reason=getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
                raise
            try:
                recorded = self.c.approvals.transition(rid, from_status="applying", to_status="approved",
                                                       row_version=req.row_version + 1, by=actor.name,
                                                       reason=reason)
            except ConsoleError as exc:
                recorded, record_error = False, exc
            else:
                record_error = None
            if not recorded:
                err = _applied_but(f"request #{rid}", "marking the request approved", record_error)
                self._audit_quietly(actor, "approve", req.endpoint, "ok", reason=reason, error=err,
                                    before=plan.before, after=plan.after, details={"request_id": rid},
                                    model=req.model)
                raise err
        except ConsoleError as exc:
            if getattr(exc, "applied", False):
                raise
            self._audit_quietly(actor, "approve", target, _result_of(exc),
                                reason=reason if isinstance(reason, str) else "", error=exc,
                                before=req.plan.get("before") if req else None,
                                after=req.plan.get("after") if req else None,
                                details={"request_id": rid, "params": req.params if req else None},
                                model=req.model if req else None)
            raise
        after = _state(ep_after, plan.after.get("champion"))
        try:
            entry = self._audit(actor, "approve", req.endpoint, "ok", reason=reason, before=plan.before,
                                after=after, gates=plan.gates, model=req.model,
                                details={"request_id": rid, "requester": req.requester, "request_action": req.action,
                                         "params": req.params,
                                         "plan_hash": plan.plan_hash, "overridden_gates": overridden,
                                         "override_reason": override_reason})
        except ConsoleError as exc:
            raise _applied_but(f"request #{rid}", "writing its audit entry", exc) from exc
        return Outcome("applied", "approve", req.endpoint, f"request #{rid} approved and applied on {req.endpoint}",
                       request_id=rid, audit_seq=entry.seq, endpoint_after=after, overridden_gates=overridden)

    def _staleness(self, req) -> tuple[str | None, list[str]]:
        """Why approving ``req`` would be refused now (None when it still applies), and its failing gates.
        Raises Unavailable when a source needed to decide cannot be read."""
        if req.is_expired(self.c.clock()):
            return f"it expired at {req.expires_at:%Y-%m-%d %H:%M} UTC", []
        stored = _plan_from(req)
        try:
            plan = self._replan(stored)
        except Conflict as exc:
            return exc.message, []
        if plan.plan_hash != req.plan_hash:
            return f"the state it was made against changed ({_what_changed(stored, plan)})", []
        return None, [f"{g.name}: {g.detail}" for g in plan.failing_gates]

    def _settle(self, req):
        """A pending request that can no longer apply is marked so (expired or void) for everyone, at once."""
        if req.status != "pending":
            return req
        why, _ = self._staleness(req)
        if why is None:
            return req
        to = "expired" if req.is_expired(self.c.clock()) else "void"
        self.c.approvals.transition(req.id, from_status="pending", to_status=to, row_version=req.row_version,
                                    by="system", reason=why)
        return self.c.approvals.get(req.id)  # ours, or whatever a concurrent decision made of it

    def request_freshness(self, request_id: Any) -> dict:
        """Would approving this request still apply the change it shows? A request that can no longer apply is
        marked expired or void (for every view) as a side effect; nothing else changes and nothing is audited."""
        rid = _request_id(request_id)
        req = self._settle(self.c.approvals.get(rid))
        if req.status != "pending":
            why = f"request #{rid} is {req.status}" + (f": {req.decision_reason}" if req.decision_reason else "")
            return {"fresh": False, "why": why}
        _, failing = self._staleness(req)
        return {"fresh": True, "why": "", "failing_gates": failing}

    def reject(self, actor: Actor, request_id: Any, reason: Any) -> Outcome:
        rid = None
        req = None
        target = f"request #{request_id}"
        try:
            rid = _request_id(request_id)
            req = self.c.approvals.get(rid)
            target = req.endpoint
            self._require_role(actor, "reject", req.endpoint)
            reason = parse_reason(reason)
            if req.status != "pending":
                raise PreconditionFailed(f"request #{rid} is {req.status}, not pending", source=SOURCE)
            if not self.c.approvals.transition(rid, from_status="pending", to_status="rejected",
                                               row_version=req.row_version, by=actor.name, reason=reason):
                raise Conflict(f"request #{rid} was decided by someone else at the same moment", source=SOURCE)
        except ConsoleError as exc:
            self._audit_quietly(actor, "reject", target, _result_of(exc),
                                reason=reason if isinstance(reason, str) else "", error=exc,
                                details={"request_id": rid, "params": req.params if req else None},
                                model=req.model if req else None)
            raise
        entry = self._audit(actor, "reject", req.endpoint, "ok", reason=reason, model=req.model,
                            details={"request_id": rid, "requester": req.requester, "params": req.params})
        return Outcome("rejected", "reject", req.endpoint, f"request #{rid} rejected", request_id=rid,
                       audit_seq=entry.seq)

    def requests(self, status: str | None = None, endpoint: str | None = None) -> list[dict]:
        """Approval requests as plain dicts, newest first. Pending ones are checked against the current state
        first: one that expired or whose endpoint or champion moved is marked expired or void, so every view
        (pages, CLI, counts) says the same. A pending request whose state cannot be read stays pending with
        ``freshness_unknown`` set."""
        query_status = None if status in ("expired", "void") else status
        out = []
        for r in self.c.approvals.list(status=query_status, endpoint=endpoint):
            extra: dict = {}
            if r.status == "pending":
                try:
                    r = self._settle(r)
                    if r.status == "pending":
                        extra["failing_gates"] = self._staleness(r)[1]
                except ConsoleError as exc:
                    extra["freshness_unknown"] = f"{exc.source}: {exc.message}"
            d = {**r.as_dict(), **extra}
            if status and d["status"] != status:
                continue
            out.append(d)
        return out

    def permissions(self, actor: Actor, endpoint: str) -> dict[str, str | None]:
        """For showing buttons: per action, None when ``actor``'s roles allow it on ``endpoint``, else the reason.
        (The use cases check again; this only keeps people from buttons that will refuse them.)"""
        pol = self._policy(endpoint)
        out: dict[str, str | None] = {}
        for action in (*KIND, "approve", "reject"):
            roles = pol.roles_for(action)
            out[action] = None if actor.has_any(roles) else (
                f"{actor.name} ({', '.join(actor.roles) or 'no roles'}) may not {action.replace('_', ' ')} here; "
                f"needs {' or '.join(roles) or 'admin'}")
        return out

    def decision_refusal(self, actor: Actor, request: dict, decision: str) -> str | None:
        """For showing Approve/Reject: why ``actor`` may not take ``decision`` on ``request`` (None: may)."""
        if request.get("status") != "pending":
            return f"request #{request.get('id')} is {request.get('status')}"
        if decision == "approve" and actor.subject == request.get("requester"):
            return "you requested this; another approver must decide it"
        return self.permissions(actor, request["endpoint"])[decision]


def _ends_canary(ep: Endpoint, doing: str) -> list[str]:
    if not ep.canary_version:
        return []
    return [f"{doing} ENDS the running canary v{ep.canary_version} ({ep.canary_weight}% of the traffic): it is "
            "removed from the endpoint and its evaluation stops"]


def _versions_of(before: Any, after: Any, details: dict | None) -> list[str]:
    """Every model version an audit entry is about (states before and after, and the parameters)."""
    found: set[str] = set()
    for st in (before, after):
        if isinstance(st, dict):
            found.update(str(st[k]) for k in ("stable_version", "canary_version", "champion") if st.get(k))
    params = (details or {}).get("params")
    if isinstance(params, dict):
        found.update(str(params[k]) for k in ("version", "to_version") if params.get(k) not in (None, ""))
    return sorted(found, key=lambda v: (len(v), v))


def _applied_but(what: str, step: str, exc: ConsoleError | None) -> ConsoleError:
    """The change is live but a bookkeeping step failed: say so loudly, never as a plain failure."""
    err = Unavailable(f"{what} WAS APPLIED, but {step} failed"
                      + (f" ({exc.message})" if exc else " (the record changed meanwhile)")
                      + "; do not retry: check the endpoint and record the change by hand",
                      source=exc.source if exc else SOURCE, detail=exc.detail if exc else None)
    err.applied = True
    return err


def _result_of(exc: ConsoleError) -> str:
    """Audit result of a failed attempt: refused (a rule said no), conflict (state moved), failed (a source broke)."""
    if isinstance(exc, Conflict):
        return "conflict"
    if isinstance(exc, Invalid | NotFound | PermissionDenied | PreconditionFailed):
        return "refused"
    return "failed"


def _request_id(value: Any) -> int:
    text = str(value).strip().lstrip("#") if value is not None else ""
    if not text.isascii() or not text.isdigit():
        raise Invalid(f"a request id is a whole number, got {value!r}", source=SOURCE)
    return int(text)


def _plan_from(req) -> Plan:
    p = req.plan
    ch = p["change"]
    return Plan(action=p["action"], kind=p["kind"], endpoint=p["endpoint"], model=p["model"], actor=p["actor"],
                params=p["params"], change=Change(ch["op"], ch["expected_resource_version"]), before=p["before"],
                after=p["after"], endpoint_diff=p["endpoint_diff"], registry_changes=p["registry_changes"],
                plan_hash=p["plan_hash"])


def _what_changed(old: Plan, new: Plan) -> str:
    parts = []
    for k in ("stable_version", "canary_version", "canary_weight", "champion", "resource_version"):
        a, b = old.before.get(k), new.before.get(k)
        if a != b:
            parts.append(f"{k.replace('_', ' ')} {'—' if a is None else a} → {'—' if b is None else b}")
    return ", ".join(parts) or "the planned change differs"
