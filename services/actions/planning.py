"""What every planner needs: the ports it reads (registry, serving, policy, serving history, live metrics)
and the steps all plans share (read the endpoint, resolve a version, evaluate the gates, finish the plan).
Nothing here writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.actions.plan import SOURCE, Plan, endpoint_diff, plan_hash, state_of
from services.clock import utcnow
from services.errors import ConsoleError, Invalid, NotFound, PermissionDenied, PreconditionFailed
from services.history.serving import ServingHistory
from services.identity import Actor
from services.metrics import LiveMetrics
from services.policy import EndpointPolicy, GateResult, LiveEvidence, Policy, evaluate_live, evaluate_offline
from services.registry import CHAMPION, ModelRegistry
from services.serving import Change, Endpoint, ServingBackend, VersionRef


@dataclass
class RetrainPorts:
    """What the ``retrain`` action needs besides the endpoint: the retrainer (``MLOPS_RETRAINER``), the audit trail
    (where runs are recorded: the open one, the latest), the prediction log (live evidence), clock, leases."""

    retrainer: Any
    audit: Any
    predictions: Any = None
    clock: Callable[[], Any] = utcnow
    leases: Any = None  # services.retraining.leases: one retraining of an endpoint starting at a time


@dataclass
class Planning:
    registry: ModelRegistry
    serving: ServingBackend
    policy: Policy
    history: ServingHistory
    live_metrics: LiveMetrics | None = None
    stalled: Callable[[str], list] | None = None  # unfinished actions on an endpoint (services.actions.stalled)
    retraining: Callable[[], RetrainPorts] | None = None  # what retrain reads and starts (built on first use)

    def policy_for(self, endpoint: str) -> EndpointPolicy:
        return self.policy.for_endpoint(endpoint)

    def require_role(self, actor: Actor, action: str, endpoint: str) -> None:
        roles = self.policy_for(endpoint).roles_for(action)
        if not actor.has_any(roles):
            raise PermissionDenied(
                f"{actor.name} ({', '.join(actor.roles) or 'no roles'}) may not {action.replace('_', ' ')} "
                f"on {endpoint}; needs one of: {', '.join(roles) or 'admin'}", source="policy")

    def endpoint(self, name) -> Endpoint:
        if not isinstance(name, str) or not name.strip():
            raise Invalid("an endpoint name is required", source=SOURCE)
        return self.serving.get_endpoint(name)

    def champion(self, model: str) -> str | None:
        return self.registry.aliases(model).get(CHAMPION)

    def ref(self, model: str, version: str) -> VersionRef:
        """The version as the backend needs it (NotFound for an unknown version)."""
        v = self.registry.get_version(model, version)
        uri = self.registry.storage_uri(model, version) if self.serving.needs_storage_uri else ""
        return VersionRef(model=model, version=v.version, run_id=v.run_id, storage_uri=uri)

    def stable_ref(self, ep: Endpoint) -> VersionRef | None:
        return VersionRef(ep.model, ep.stable_version) if ep.model and ep.stable_version else None

    @staticmethod
    def need_model(ep: Endpoint) -> None:
        if not ep.model:
            raise PreconditionFailed(f"{ep.name} serves a model the registry does not know; act on it in the "
                                     "serving system", source=SOURCE)

    def rollback_targets(self, ep: Endpoint) -> list[str]:
        """Versions that were stable on this endpoint before, the one just before first: the serving history,
        then the backend's own live revisions. Rolling back is the fast path to one of these; any other
        version is a promotion."""
        out = self.history.earlier_stable_versions(ep.name, ep.stable_version)
        for rev in ep.revisions:
            v = rev.stable_version
            if v and v != ep.stable_version and v not in out:
                out.append(v)
        return out

    def repair_warnings(self, endpoint: str) -> list[str]:
        """An action on an endpoint that needs repair goes on (it supersedes what was left half-done), warned."""
        try:
            stopped = [s for s in (self.stalled(endpoint) if self.stalled else []) if s.stopped]
        except ConsoleError:
            return []  # the intents cannot be read: the action's own intent will fail to be written, and say so
        if not stopped:
            return []
        return [f"{endpoint} NEEDS REPAIR: {'; '.join(f'{s.what} — {s.stopped}' for s in stopped)}. Repair it first "
                "(action repair) unless this change is meant to supersede it"]

    def gates(self, ep: Endpoint, action: str, kind: str, candidate: str | None,
              champion: str | None) -> list[GateResult]:
        """Offline gates for the kinds the policy gates; live gates for the actions each one names."""
        pol = self.policy_for(ep.name)
        if candidate is None or ep.model is None:
            return []
        results: list[GateResult] = []
        if kind in pol.gate_actions and pol.offline_gates:
            cand = self.registry.get_version(ep.model, candidate).metrics
            champ = None
            if champion and champion != candidate:
                try:
                    champ = self.registry.get_version(ep.model, champion).metrics
                except NotFound:
                    champ = None
            results += evaluate_offline(pol.offline_gates, cand, champ)
        live = tuple(g for g in pol.live_gates if action in g.applies_to)
        if live:
            source = self.live_metrics
            values: dict[str, LiveEvidence | None] = {}
            baseline = ep.stable_version if ep.stable_version != candidate else None
            samples = (source.current(ep.name, candidate, "requests")
                       if source and any(g.min_samples for g in live) else None)
            for metric in dict.fromkeys(g.metric for g in live):
                if source is None:
                    values[metric] = None
                    continue
                compare = baseline and any(g.compare == "stable" for g in live if g.metric == metric)
                values[metric] = LiveEvidence(
                    source.current(ep.name, candidate, metric),
                    baseline=source.current(ep.name, baseline, metric) if compare else None,
                    p_value=source.p_value(ep.name, candidate, baseline, metric) if compare else None,
                    samples=samples)
            results += evaluate_live(live, values)
        return results

    def finish(self, spec, actor: Actor, ep: Endpoint, change: Change, params: dict, candidate: str | None,
               champion: str | None, new_champion: str | None, warnings: list[str] | None = None) -> Plan:
        """The plan of ``spec`` (its catalog entry) from what the planner decided."""
        if ep.read_only:
            raise PermissionDenied(f"endpoint {ep.name} is read-only: {ep.read_only_reason}",
                                   source=self.serving.source)
        warnings = [*self.repair_warnings(ep.name), *(warnings or [])]
        before_state = ep.state()
        after_state = change.target_state(before_state)
        registry_changes = []
        if new_champion and new_champion != champion and ep.model:
            registry_changes.append({"model": ep.model, "alias": CHAMPION, "from": champion, "to": new_champion})
        before = state_of(ep, champion)
        after = {**after_state.as_dict(), "champion": new_champion or champion}
        bound = {"action": spec.name, "endpoint": ep.name, "model": ep.model, "params": params, "before": before,
                 "after": after, "registry_changes": registry_changes}
        return Plan(
            action=spec.name, kind=spec.kind, endpoint=ep.name, model=ep.model, actor=actor.subject, params=params,
            change=change, before=before, after=after, endpoint_diff=endpoint_diff(before_state, after_state, ep),
            registry_changes=registry_changes, gates=self.gates(ep, spec.name, spec.kind, candidate, champion),
            warnings=warnings, needs_approval=self.policy_for(ep.name).needs_approval(spec.kind),
            backend=self.serving.name, backend_preview=self.serving.preview(ep, change), plan_hash=plan_hash(bound),
            label=spec.label,
        )
