"""One planner per action: read the current state, decide the change, say what to warn about.

Each takes the :class:`~services.actions.planning.Planning` ports, the catalog entry (``spec``), the actor,
the endpoint name and the action's own parameters, and returns a :class:`~services.actions.plan.Plan`
(nothing changes). Refusals are errors from the one vocabulary (``services.errors``).
"""

from __future__ import annotations

from typing import Any

from services.actions.inputs import parse_version, parse_weight
from services.actions.plan import SOURCE, Plan, ends_canary
from services.actions.planning import Planning
from services.compat import input_warnings
from services.errors import PreconditionFailed, Unavailable
from services.identity import Actor
from services.serving import Change, Endpoint


def request_promotion(p: Planning, spec, actor: Actor, endpoint: str, version: Any) -> Plan:
    """Make ``version`` stable at 100 % and move @champion to it (the canary, or any other version)."""
    ep = p.endpoint(endpoint)
    version = parse_version(version)
    p.need_model(ep)
    champion = p.champion(ep.model)
    if version == ep.stable_version and not ep.canary_version:
        raise PreconditionFailed(f"v{version} already serves 100% on {ep.name}", source=SOURCE)
    ref = p.ref(ep.model, version)
    warnings = []
    if ep.canary_version == version:
        change = Change("promote", ep.resource_version, version=ref, previous_stable=p.stable_ref(ep))
    else:
        change = Change("set_stable", ep.resource_version, version=ref, previous_stable=p.stable_ref(ep))
        warnings += ends_canary(ep, f"promoting v{version}")
    warnings += input_warnings(p.registry, ep.model, ep.stable_version, version, "New stable")
    return p.finish(spec, actor, ep, change, {"version": version}, version, champion, version, warnings)


def promote_canary(p: Planning, spec, actor: Actor, endpoint: str, version: Any = None) -> Plan:
    ep = p.endpoint(endpoint)
    p.need_model(ep)
    if not ep.canary_version:
        raise PreconditionFailed(f"{ep.name} has no canary to promote", source=SOURCE)
    _same_canary(ep, version)
    champion = p.champion(ep.model)
    ref = p.ref(ep.model, ep.canary_version)
    change = Change("promote", ep.resource_version, version=ref, previous_stable=p.stable_ref(ep))
    warnings = input_warnings(p.registry, ep.model, ep.stable_version, ep.canary_version, "New stable")
    return p.finish(spec, actor, ep, change, {"version": ep.canary_version}, ep.canary_version, champion,
                    ep.canary_version, warnings)


def start_canary(p: Planning, spec, actor: Actor, endpoint: str, version: Any, weight: Any) -> Plan:
    ep = p.endpoint(endpoint)
    version = parse_version(version)
    weight = parse_weight(weight)
    p.need_model(ep)
    if ep.canary_version:
        raise PreconditionFailed(f"{ep.name} already runs canary v{ep.canary_version}; promote or abort it first",
                                 source=SOURCE)
    if version == ep.stable_version:
        raise PreconditionFailed(f"v{version} is already the stable version of {ep.name}", source=SOURCE)
    ref = p.ref(ep.model, version)
    champion = p.champion(ep.model)
    change = Change("start_canary", ep.resource_version, version=ref, weight=weight, previous_stable=p.stable_ref(ep))
    warnings = input_warnings(p.registry, ep.model, ep.stable_version, version, "Canary")
    return p.finish(spec, actor, ep, change, {"version": version, "weight": weight}, version, champion, None,
                    warnings)


def set_canary_weight(p: Planning, spec, actor: Actor, endpoint: str, weight: Any) -> Plan:
    from services.serving import VersionRef

    ep = p.endpoint(endpoint)
    weight = parse_weight(weight)
    if not ep.canary_version:
        raise PreconditionFailed(f"{ep.name} has no canary; start one first", source=SOURCE)
    if weight == ep.canary_weight:
        raise PreconditionFailed(f"the canary of {ep.name} already gets {weight}%", source=SOURCE)
    champion = p.champion(ep.model) if ep.model else None
    change = Change("set_weight", ep.resource_version, weight=weight, version=VersionRef(ep.model or "",
                                                                                         ep.canary_version))
    warnings = (input_warnings(p.registry, ep.model, ep.stable_version, ep.canary_version, "Canary")
                if ep.model and weight > 0 else [])
    return p.finish(spec, actor, ep, change, {"weight": weight}, None, champion, None, warnings)


def abort_canary(p: Planning, spec, actor: Actor, endpoint: str, version: Any = None) -> Plan:
    """The emergency exit: needs the registry only where the backend needs a storage URI."""
    ep = p.endpoint(endpoint)
    if not ep.canary_version:
        raise PreconditionFailed(f"{ep.name} has no canary to abort", source=SOURCE)
    _same_canary(ep, version)
    warnings = []
    try:
        champion = p.champion(ep.model) if ep.model else None
    except Unavailable as exc:
        champion = None
        warnings.append(f"the registry is unreachable ({exc.message}); aborting does not need it")
    stable = None
    if ep.model and ep.stable_version:
        stable = p.ref(ep.model, ep.stable_version) if p.serving.needs_storage_uri else p.stable_ref(ep)
    change = Change("abort", ep.resource_version, previous_stable=stable)
    return p.finish(spec, actor, ep, change, {"version": ep.canary_version}, None, champion, None, warnings)


def rollback(p: Planning, spec, actor: Actor, endpoint: str, to_version: Any = None) -> Plan:
    """Back to a version that was stable here before (the one just before by default), with a preflight."""
    ep = p.endpoint(endpoint)
    p.need_model(ep)
    allowed = p.rollback_targets(ep)
    if to_version in (None, ""):
        if not allowed:
            raise PreconditionFailed(f"{ep.name} has no earlier stable version on record; request a promotion "
                                     "instead", source=SOURCE)
        target = allowed[0]
    else:
        target = parse_version(to_version)
    if target == ep.stable_version and not ep.canary_version:
        raise PreconditionFailed(f"v{target} is already the stable version of {ep.name}", source=SOURCE)
    if target != ep.stable_version and target not in allowed:
        earlier = ", ".join(f"v{v}" for v in allowed) or "none on record"
        raise PreconditionFailed(
            f"v{target} was never the stable version of {ep.name}, so this is not a rollback: request its "
            f"promotion instead (with its gates and approval). Earlier stable versions: {earlier}", source=SOURCE)
    ref = p.ref(ep.model, target)  # preflight: the version exists ...
    if not p.registry.artifact_available(ep.model, target):  # ... and its files are there
        raise PreconditionFailed(f"the model files of {ep.model} v{target} are missing; cannot roll back to it",
                                 source=p.registry.source)
    warnings = ends_canary(ep, f"rolling back to v{target}") if target != ep.stable_version else []
    warnings += input_warnings(p.registry, ep.model, ep.stable_version, target, "Rollback target")
    champion = p.champion(ep.model)
    change = Change("set_stable", ep.resource_version, version=ref, previous_stable=p.stable_ref(ep))
    return p.finish(spec, actor, ep, change, {"to_version": target}, target, champion, target, warnings)


def _same_canary(ep: Endpoint, version: Any) -> None:
    """When the caller names the canary version it means, the running canary must be that one."""
    if version not in (None, "") and parse_version(version) != ep.canary_version:
        raise PreconditionFailed(f"the canary of {ep.name} is v{ep.canary_version}, not v{parse_version(version)}",
                                 source=SOURCE)
