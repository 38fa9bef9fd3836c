"""What serves where, and whether the registry agrees."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.compat import input_warnings
from services.errors import ConsoleError
from services.registry import CHAMPION, ModelRegistry
from services.serving import Endpoint, ServingBackend


@dataclass(frozen=True)
class EndpointView:
    endpoint: Endpoint
    champion: str | None
    warnings: list[str] = field(default_factory=list)
    input_warnings: list[str] = field(default_factory=list)  # a running canary that cannot take the clients' input

    @property
    def agrees(self) -> bool:
        return not self.warnings


def agreement_warnings(ep: Endpoint, champion: str | None, registry_error: str | None = None) -> list[str]:
    """Pure: where the registry's champion and the endpoint disagree."""
    out = []
    if ep.model is None:
        out.append("the endpoint serves a model the registry does not know (no annotations, no matching "
                   "storage URI)")
        return out
    if registry_error:
        out.append(f"could not read the registry for {ep.model}: {registry_error}")
        return out
    if champion is None:
        out.append(f"{ep.model} has no champion alias; the endpoint serves v{ep.stable_version}")
    elif champion != ep.stable_version:
        out.append(f"the registry's champion of {ep.model} is v{champion}, but the endpoint's stable version "
                   f"is v{ep.stable_version}")
    if not ep.ready:
        out.append("the endpoint is not ready")
    return out


def serving_overview(serving: ServingBackend, registry: ModelRegistry) -> list[EndpointView]:
    eps = serving.list_endpoints()
    aliases: dict[str, dict | str] = {}
    for ep in eps:
        if ep.model and ep.model not in aliases:
            try:
                aliases[ep.model] = registry.aliases(ep.model)
            except ConsoleError as exc:
                aliases[ep.model] = exc.message
    out = []
    for ep in eps:
        a = aliases.get(ep.model) if ep.model else None
        err = a if isinstance(a, str) else None
        champion = a.get(CHAMPION) if isinstance(a, dict) else None
        out.append(EndpointView(ep, champion, agreement_warnings(ep, champion, err)))
    return out


def endpoint_view(serving: ServingBackend, registry: ModelRegistry, name: str) -> EndpointView:
    """One endpoint with the registry's view of it; while a canary runs, whether it accepts what the stable
    version's clients send."""
    ep = serving.get_endpoint(name)
    champion, err = None, None
    if ep.model:
        try:
            champion = registry.aliases(ep.model).get(CHAMPION)
        except ConsoleError as exc:
            err = exc.message
    inputs = []
    if ep.model and ep.canary_version and ep.canary_weight > 0 and not err:
        inputs = input_warnings(registry, ep.model, ep.stable_version, ep.canary_version, "Canary")
    return EndpointView(ep, champion, agreement_warnings(ep, champion, err), inputs)
